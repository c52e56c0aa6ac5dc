//! Writing the job's output to the runner's own stdout and stderr without ever blocking
//! the session.
//!
//! A write to a pipe or FIFO whose reader stopped reading blocks for as long as the
//! reader sleeps; done on the session's thread it would hold up the timeout and every
//! stop signal with it (`run-in-vm --timeout 5 yes > FIFO` hung until killed). Each
//! stream gets a writer thread of its own fed through a queue of at most
//! [`QUEUE_CAP`] bytes; the session asks [`StreamWriter::wait_room`] before it reads
//! more of the guest's output and, while there is no room, reads nothing (so the
//! guest's own writes block: back-pressure reaches the job) but keeps checking its
//! deadline and signals.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes queued for one stream before the session stops reading the guest's output.
/// The queue can exceed it by what the session read last (one read of the channel).
pub const QUEUE_CAP: usize = 256 * 1024;

/// Queue state shared with the writer thread.
#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    bytes: usize,
    /// The descriptor failed (its reader is gone): later output is dropped.
    failed: Option<ErrorKind>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A writer thread cannot panic while holding the lock (it only moves chunks),
        // so a poisoned lock still holds consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One output stream with a writer thread of its own.
pub struct StreamWriter {
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Starts a writer thread for `fd` (the runner's stdout or stderr). `on_error` is
    /// called once, on the writer thread, with the error that ended writing (EPIPE
    /// when the reader went away).
    pub fn start(
        fd: BorrowedFd<'static>,
        name: &str,
        on_error: Box<dyn FnOnce(ErrorKind) + Send>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || writer_loop(fd, &theirs, on_error))?;
        Ok(StreamWriter { shared })
    }

    /// Queues `data`; never blocks. Dropped once the descriptor failed.
    pub fn push(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        if st.failed.is_some() {
            return;
        }
        st.bytes += data.len();
        st.chunks.push_back(data.to_vec());
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Waits at most `max` until fewer than [`QUEUE_CAP`] bytes are queued; false if
    /// the queue is still full then.
    pub fn wait_room(&self, max: Duration) -> bool {
        self.wait_until(max, |st| st.bytes < QUEUE_CAP)
    }

    /// Waits at most `max` until everything queued is written (or writing failed);
    /// false if output is still waiting then.
    pub fn wait_written(&self, max: Duration) -> bool {
        self.wait_until(max, |st| st.bytes == 0)
    }

    fn wait_until(&self, max: Duration, done: impl Fn(&State) -> bool) -> bool {
        let until = Instant::now() + max;
        let mut st = self.shared.lock();
        loop {
            if done(&st) || st.failed.is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

fn writer_loop(
    fd: BorrowedFd<'static>,
    shared: &Shared,
    on_error: Box<dyn FnOnce(ErrorKind) + Send>,
) {
    let mut on_error = Some(on_error);
    loop {
        let mut st = shared.lock();
        let chunk = loop {
            match st.chunks.pop_front() {
                Some(c) => break c,
                None => {
                    st = shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                }
            }
        };
        // Outside the lock: this is the write that may block for good.
        drop(st);
        let written = write_all_waiting(fd, &chunk);
        let mut st = shared.lock();
        st.bytes -= chunk.len();
        if let Err(kind) = written {
            st.failed = Some(kind);
            st.bytes = 0;
            st.chunks.clear();
        }
        drop(st);
        shared.changed.notify_all();
        if let Err(kind) = written {
            if let Some(f) = on_error.take() {
                f(kind);
            }
        }
    }
}

/// Writes all of `data` to `fd`, waiting for room where the descriptor is non-blocking
/// (a terminal or pipe shared with a parent that set O_NONBLOCK): giving up at EAGAIN
/// would drop the job's output. Only the writer thread waits here.
fn write_all_waiting(fd: BorrowedFd, mut data: &[u8]) -> Result<(), ErrorKind> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(ErrorKind::WriteZero),
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                crate::launcher::wait_ready(fd, nix::poll::PollFlags::POLLOUT);
            }
            Err(e) => return Err(std::io::Error::from(e).kind()),
        }
    }
    Ok(())
}

/// The runner's stdout and stderr, as [`StreamWriter`]s.
pub struct Terminal {
    /// The job's stdout.
    pub stdout: StreamWriter,
    /// The job's stderr and the runner's notes.
    pub stderr: StreamWriter,
}

impl Terminal {
    /// Writers for fds 1 and 2; `on_stdout_closed` is called when stdout's reader is
    /// gone.
    pub fn start(on_stdout_closed: Box<dyn FnOnce() + Send>) -> std::io::Result<Self> {
        let stdout = StreamWriter::start(
            process_std_fd(libc::STDOUT_FILENO),
            "stdout",
            Box::new(move |kind| {
                if kind == ErrorKind::BrokenPipe {
                    on_stdout_closed();
                }
            }),
        )?;
        let stderr = StreamWriter::start(
            process_std_fd(libc::STDERR_FILENO),
            "stderr",
            Box::new(|_| {}),
        )?;
        Ok(Terminal { stdout, stderr })
    }

    /// Waits at most `max` until both streams have room (see [`StreamWriter::wait_room`]).
    pub fn wait_room(&self, max: Duration) -> bool {
        let until = Instant::now() + max;
        self.stdout.wait_room(max)
            && self
                .stderr
                .wait_room(until.saturating_duration_since(Instant::now()))
    }

    /// Waits until `until` for both streams to be written out; false if output was
    /// still waiting then.
    pub fn wait_written(&self, until: Instant) -> bool {
        let left = || until.saturating_duration_since(Instant::now());
        self.stdout.wait_written(left()) && self.stderr.wait_written(left())
    }
}

/// fd 1 or 2 for the life of the process: nothing in the runner closes them.
fn process_std_fd(fd: std::os::fd::RawFd) -> BorrowedFd<'static> {
    // SAFETY: the standard descriptors stay open until the process exits (see above).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsFd, OwnedFd};

    /// A writer on a fresh pipe; the pipe's write end is leaked so the thread's
    /// descriptor stays valid for the test process's life.
    fn on_pipe() -> (
        StreamWriter,
        std::fs::File,
        std::sync::mpsc::Receiver<ErrorKind>,
    ) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let w: &'static OwnedFd = Box::leak(Box::new(w));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = StreamWriter::start(
            w.as_fd(),
            "test-writer",
            Box::new(move |k| tx.send(k).unwrap()),
        )
        .unwrap();
        (writer, std::fs::File::from(r), rx)
    }

    #[test]
    fn a_reader_that_stops_fills_the_queue_but_never_blocks_the_caller() {
        let (writer, mut reader, _) = on_pipe();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        let started = Instant::now();
        let mut pushed = 0;
        for chunk in data.chunks(16 * 1024) {
            if !writer.wait_room(Duration::from_millis(50)) {
                break;
            }
            writer.push(chunk);
            pushed += chunk.len();
        }
        // The pipe holds 64 KiB, the queue its cap plus one chunk: nobody reads.
        assert!(pushed < 64 * 1024 + QUEUE_CAP + 2 * 16 * 1024, "{pushed}");
        assert!(pushed >= QUEUE_CAP, "{pushed}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!writer.wait_written(Duration::from_millis(50)));
        // The reader comes back: every pushed byte arrives, in order.
        let rest = data[pushed..].to_vec();
        let feeder = std::thread::spawn(move || {
            for chunk in rest.chunks(16 * 1024) {
                while !writer.wait_room(Duration::from_millis(50)) {}
                writer.push(chunk);
            }
            assert!(writer.wait_written(Duration::from_secs(10)));
        });
        let mut got = vec![0u8; data.len()];
        reader.read_exact(&mut got).unwrap();
        feeder.join().unwrap();
        assert!(got == data, "output lost or reordered");
    }

    #[test]
    fn a_reader_that_goes_away_is_reported_once_and_output_dropped() {
        let (writer, reader, errors) = on_pipe();
        drop(reader);
        writer.push(b"one");
        assert_eq!(
            errors.recv_timeout(Duration::from_secs(5)),
            Ok(ErrorKind::BrokenPipe)
        );
        writer.push(b"two");
        assert!(writer.wait_room(Duration::ZERO));
        assert!(writer.wait_written(Duration::ZERO));
        assert!(errors.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
