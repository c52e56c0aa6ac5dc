//! The getdents64(2) fallback's reads, off the runtime thread, queued rather than spawned.
//!
//! A `spawn_blocking` per refill costs a task allocation, a wake of an idle pool thread
//! and a wake back: several microseconds, more than the read of a warm directory, and a
//! walk refills thousands of times a second. Here the reads of one runtime thread go to
//! a queue that a few pool threads ("drainers") empty one read after another, so a busy
//! walk pays a mutex push and, now and then, one wake of the runtime for several
//! results. A read that takes long (a cold directory, going to disk) with more reads
//! waiting brings in another drainer, so cold trees still read many directories at once.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What a read gives back: the buffer, the bytes it filled (or the error) and whether
/// the end of the directory was met.
pub(crate) type Outcome = (Vec<u8>, io::Result<usize>, bool);

/// The read itself, run on a pool thread: fills the buffer from the descriptor.
pub(crate) type ReadFn = fn(&OwnedFd, &mut [u8]) -> (io::Result<usize>, bool);

/// At most this many drainers per runtime thread: enough reads in flight to keep a
/// disk's queue busy on a cold tree, as many as a walk's default opens allow.
const MAX_DRAINERS: usize = 16;

/// A read slower than this went to disk (a warm read of a 32 KiB buffer takes tens of
/// microseconds): reads queued behind it deserve a drainer of their own.
const SLOW_READ: Duration = Duration::from_micros(200);

/// A read waiting for a drainer.
struct Job {
    fd: Arc<OwnedFd>,
    buf: Vec<u8>,
    read: ReadFn,
    slot: Arc<Slot>,
}

/// Where a drainer leaves a read's outcome for the [`PendingRead`] that waits for it.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

/// One runtime thread's reads and the drainers emptying them.
#[derive(Default)]
struct Queue {
    inner: Mutex<QueueInner>,
}

#[derive(Default)]
struct QueueInner {
    jobs: VecDeque<Job>,
    /// Drainers spawned and not yet finished, counted under the same lock as `jobs`, so
    /// that a push never sees a drainer that has already decided to stop.
    drainers: usize,
}

/// Neither lock is held across anything that can panic, so a poisoned one still holds
/// consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The queue of the runtime on this thread. tokio-uring runs one runtime per
    /// thread at a time; a later runtime on the same thread inherits the queue, whose
    /// drainer count stays right because every drainer, run or dropped unrun, takes
    /// itself off it.
    static QUEUE: Arc<Queue> = Arc::default();
}

/// Queues `read` of `fd` into `buf` on the current runtime's blocking pool; outside a
/// tokio runtime (which tokio-uring-dir's callers never are), reads on this thread.
pub(crate) fn read(fd: Arc<OwnedFd>, mut buf: Vec<u8>, read: ReadFn) -> PendingRead {
    let slot = Arc::new(Slot::default());
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        let (res, at_end) = read(&fd, &mut buf);
        lock(&slot.state).outcome = Some((buf, res, at_end));
        return PendingRead { slot };
    };
    let job = Job {
        fd,
        buf,
        read,
        slot: Arc::clone(&slot),
    };
    let queue = QUEUE.with(Arc::clone);
    let spawn = {
        let mut inner = lock(&queue.inner);
        inner.jobs.push_back(job);
        let spawn = inner.drainers == 0;
        if spawn {
            inner.drainers += 1;
        }
        spawn
    };
    if spawn {
        spawn_drainer(&runtime, queue);
    }
    PendingRead { slot }
}

/// Starts a drainer already counted in `queue`'s `drainers`.
fn spawn_drainer(runtime: &tokio::runtime::Handle, queue: Arc<Queue>) {
    let guard = DrainerCount {
        queue,
        counted: true,
    };
    let handle = runtime.clone();
    // The JoinHandle is not needed: results go through the slots.
    drop(runtime.spawn_blocking(move || drain(guard, &handle)));
}

/// A drainer's place in its queue's count: given up when the drainer stops, and also
/// when the pool drops it unrun (runtime shutdown) or it panics, so the count never
/// claims a drainer that will not come.
struct DrainerCount {
    queue: Arc<Queue>,
    counted: bool,
}

impl Drop for DrainerCount {
    fn drop(&mut self) {
        if self.counted {
            lock(&self.queue.inner).drainers -= 1;
        }
    }
}

/// Runs queued reads one after another until the queue is empty.
fn drain(mut count: DrainerCount, runtime: &tokio::runtime::Handle) {
    loop {
        let job = {
            let mut inner = lock(&count.queue.inner);
            match inner.jobs.pop_front() {
                Some(job) => job,
                None => {
                    // Under the lock that pushes take: a push after this spawns anew.
                    inner.drainers -= 1;
                    count.counted = false;
                    return;
                }
            }
        };
        let Job {
            fd,
            mut buf,
            read,
            slot,
        } = job;
        let started = Instant::now();
        let (res, at_end) = read(&fd, &mut buf);
        if started.elapsed() >= SLOW_READ {
            let mut inner = lock(&count.queue.inner);
            let help = !inner.jobs.is_empty() && inner.drainers < MAX_DRAINERS;
            if help {
                inner.drainers += 1;
            }
            drop(inner);
            if help {
                spawn_drainer(runtime, Arc::clone(&count.queue));
            }
        }
        // The descriptor share goes before the wake: a Dir closing after this read
        // finds itself the last owner.
        drop(fd);
        let waker = {
            let mut state = lock(&slot.state);
            state.outcome = Some((buf, res, at_end));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A queued read; resolves to its [`Outcome`]. Dropping it abandons the result (the
/// read still runs; its buffer is then freed by the drainer).
pub(crate) struct PendingRead {
    slot: Arc<Slot>,
}

impl Future for PendingRead {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = lock(&self.slot.state);
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                match &mut state.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => state.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fill_with_fd_number(fd: &OwnedFd, buf: &mut [u8]) -> (io::Result<usize>, bool) {
        use std::os::fd::AsRawFd;
        buf[0] = fd.as_raw_fd() as u8;
        (Ok(1), false)
    }

    fn slow_read(_fd: &OwnedFd, buf: &mut [u8]) -> (io::Result<usize>, bool) {
        std::thread::sleep(Duration::from_millis(5));
        buf[0] = 7;
        (Ok(1), true)
    }

    fn fd() -> Arc<OwnedFd> {
        Arc::new(OwnedFd::from(std::fs::File::open("/").unwrap()))
    }

    fn drainers() -> usize {
        QUEUE.with(|q| lock(&q.inner).drainers)
    }

    #[test]
    fn every_read_comes_back_to_its_own_waiter() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let fds: Vec<_> = (0..200).map(|_| fd()).collect();
            let pending: Vec<_> = fds
                .iter()
                .map(|fd| read(Arc::clone(fd), vec![0; 4], fill_with_fd_number))
                .collect();
            for (fd, pending) in fds.iter().zip(pending) {
                let (buf, res, at_end) = pending.await;
                use std::os::fd::AsRawFd;
                assert_eq!(buf[0], fd.as_raw_fd() as u8);
                assert_eq!(res.unwrap(), 1);
                assert!(!at_end);
            }
        });
        drop(rt);
        assert_eq!(drainers(), 0, "a drainer is still counted after shutdown");
    }

    static IN_READ: AtomicUsize = AtomicUsize::new(0);
    static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);

    /// A slow read that records how many of its kind run at once.
    fn counted_slow_read(_fd: &OwnedFd, buf: &mut [u8]) -> (io::Result<usize>, bool) {
        let now = IN_READ.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        IN_READ.fetch_sub(1, Ordering::SeqCst);
        buf[0] = 7;
        (Ok(1), true)
    }

    #[test]
    fn slow_reads_bring_in_more_drainers_and_all_finish() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let pending: Vec<_> = (0..64)
                .map(|_| read(fd(), vec![0; 4], counted_slow_read))
                .collect();
            for pending in pending {
                let (buf, res, at_end) = pending.await;
                assert_eq!((buf[0], res.unwrap(), at_end), (7, 1, true));
            }
        });
        drop(rt);
        let most = MOST_AT_ONCE.load(Ordering::SeqCst);
        assert!(
            (2..=MAX_DRAINERS).contains(&most),
            "{most} slow reads ran at once"
        );
        assert_eq!(drainers(), 0);
    }

    #[test]
    fn a_dropped_read_still_runs_and_the_queue_recovers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..10 {
                drop(read(fd(), vec![0; 4], slow_read));
            }
            let (buf, _, _) = read(fd(), vec![0; 4], fill_with_fd_number).await;
            assert_ne!(buf[0], 0);
        });
        drop(rt);
        // Reads queued when a runtime ends are run by the next one's drainers.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_, res, _) = read(fd(), vec![0; 4], slow_read).await;
            assert_eq!(res.unwrap(), 1);
        });
        drop(rt);
        assert_eq!(drainers(), 0);
    }
}
