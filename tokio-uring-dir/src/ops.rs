//! The ring operations: everything goes through tokio-uring's `UnsubmittedOneshot`, so
//! the requests share the runtime's own ring and driver.

use crate::error::from_res;
use io_uring_06::{cqueue, opcode, squeue, types};
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio_uring::{InFlightOneshot, OneshotOutputTransform, UnsubmittedOneshot};

/// Hands the stable data back together with the raw result, leaving the interpretation
/// of the result to the caller, which knows what the data means.
pub(crate) struct Completion<D>(PhantomData<fn() -> D>);

impl<D> OneshotOutputTransform for Completion<D> {
    type Output = (D, i32);
    type StoredData = D;

    fn transform_oneshot_output(self, data: D, cqe: cqueue::Entry) -> (D, i32) {
        (data, cqe.result())
    }
}

/// Whether the tokio-uring runtime a request was submitted on is still running.
///
/// tokio-uring 0.5 keeps the data of a request whose future was dropped until its
/// completion arrives, with one exception: when the runtime shuts down, its driver
/// (`Driver::drop`) drops that data *before* it cancels the request and waits for it,
/// while an io-wq worker may still be writing into it. So a drop of such data is safe
/// when it comes from a completion and unsafe when it comes from the driver's shutdown,
/// and nothing in the drop itself tells the two apart.
///
/// The token does: it is held by a task spawned (`Handle::spawn`, a `Send` task) on the
/// tokio runtime inside the tokio-uring runtime, the one that is current while
/// tokio-uring's `block_on` polls our futures. tokio-uring's `Runtime::drop` drops that
/// tokio runtime, and with it every task it owns, before the driver (the driver is a
/// field of the runtime, dropped after `Runtime::drop`'s body). Hence: while the token
/// lives, the driver has not started shutting down. A `LocalSet` of the user's, which
/// may outlive the runtime, cannot hold it (`spawn_local` would put it there).
///
/// One token per tokio runtime, found by its [`Id`](tokio::runtime::Id) (unique for
/// the process's life) in a per-thread table, so a request costs a lookup, not a task:
/// several tokio-uring runtimes may live on one thread, and one's tasks say nothing
/// about another's shutdown, so each has its own.
///
/// What this rests on: `Handle::try_current()` inside tokio-uring's `block_on` is
/// tokio-uring's own tokio runtime. A caller who enters a *different* tokio runtime
/// (`Runtime::enter`) inside it, submits requests while that guard is held, and keeps
/// that other runtime alive past tokio-uring's would hand the token to the wrong
/// runtime. Nothing public in tokio-uring 0.5 names its own tokio runtime (or its
/// driver) to compare with, so that one contrived sequence is not covered.
#[derive(Clone)]
pub(crate) struct Liveness {
    alive: std::sync::Weak<()>,
}

thread_local! {
    /// The token of each runtime that submitted on this thread and has not shut down.
    static RUNTIME_TOKENS: RefCell<Vec<(tokio::runtime::Id, std::sync::Weak<()>)>> =
        const { RefCell::new(Vec::new()) };
}

impl Liveness {
    /// The token of the runtime current now. Outside any tokio runtime there is nothing
    /// to tie it to: it reports "not running" from the start, so memory is leaked.
    pub(crate) fn of_current_runtime() -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::dead();
        };
        let id = runtime.id();
        RUNTIME_TOKENS.with(|tokens| {
            let mut tokens = tokens.borrow_mut();
            if let Some((_, alive)) = tokens.iter().find(|(of, _)| *of == id) {
                if alive.strong_count() > 0 {
                    return Self {
                        alive: alive.clone(),
                    };
                }
            }
            tokens.retain(|(_, alive)| alive.strong_count() > 0);
            let token = Arc::new(());
            let alive = Arc::downgrade(&token);
            // Lives until the runtime drops its tasks at shutdown.
            drop(runtime.spawn(async move {
                let _token = token;
                std::future::pending::<()>().await;
            }));
            tokens.push((id, alive.clone()));
            Self { alive }
        })
    }

    /// A token that was never alive.
    fn dead() -> Self {
        Self {
            alive: std::sync::Weak::new(),
        }
    }

    /// True while the runtime has not begun to shut down.
    pub(crate) fn runtime_running(&self) -> bool {
        self.alive.strong_count() > 0
    }
}

/// Data a request may use while it is in flight (a buffer the kernel writes into, the
/// descriptor it reads): freed only while the runtime it was submitted on runs,
/// leaked otherwise (see [`Liveness`]). The leak is bounded by the requests in flight
/// at shutdown.
pub(crate) struct KernelWritable<T> {
    /// None only after `into_inner` took it.
    value: Option<T>,
    liveness: Liveness,
    /// Set through a [`SettledWitness`] when the driver is known to have finished.
    settled: Rc<Cell<bool>>,
}

/// Lets the owner of a request's future tell its data that the request is settled.
///
/// A future dropped after its runtime has shut down (a [`Dir`](crate::Dir) kept past
/// it) cannot be racing the kernel: the runtime's driver cancelled the request and
/// waited for it before it went away, and nothing of ours runs in between (the token
/// dies with the tokio runtime, and the driver is dropped right after it). Its data may
/// then be freed instead of leaked.
pub(crate) struct SettledWitness {
    alive: std::sync::Weak<()>,
    settled: Rc<Cell<bool>>,
}

impl SettledWitness {
    /// To be called just before the future is dropped.
    pub(crate) fn before_dropping_the_future(&self) {
        if self.alive.strong_count() == 0 {
            self.settled.set(true);
        }
    }
}

impl<T> KernelWritable<T> {
    /// Wraps data about to be handed to the kernel. Called inside the tokio-uring
    /// runtime that runs the request.
    pub(crate) fn new(value: T) -> Self {
        Self {
            value: Some(value),
            liveness: Liveness::of_current_runtime(),
            settled: Rc::new(Cell::new(false)),
        }
    }

    /// A witness for the owner of the future that carries this data.
    pub(crate) fn witness(&self) -> SettledWitness {
        SettledWitness {
            alive: self.liveness.alive.clone(),
            settled: Rc::clone(&self.settled),
        }
    }

    /// The data back, once the request has completed.
    pub(crate) fn into_inner(mut self) -> T {
        match self.value.take() {
            Some(value) => value,
            None => unreachable!("KernelWritable emptied before into_inner"),
        }
    }
}

impl<T> std::ops::Deref for KernelWritable<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.value {
            Some(value) => value,
            None => unreachable!("KernelWritable used after into_inner"),
        }
    }
}

impl<T> std::ops::DerefMut for KernelWritable<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(value) => value,
            None => unreachable!("KernelWritable used after into_inner"),
        }
    }
}

impl<T> Drop for KernelWritable<T> {
    fn drop(&mut self) {
        // The token lives in a task of the runtime, so it is alive here exactly while
        // that runtime has not begun to shut down.
        if let Some(value) = self.value.take() {
            if !self.liveness.runtime_running() && !self.settled.get() {
                // The driver is shutting down: the kernel may still use this.
                std::mem::forget(value);
            }
        }
    }
}

/// An operation in flight on the runtime's ring.
pub(crate) type InFlight<D> = InFlightOneshot<D, Completion<D>>;

/// Queues `sqe` on the current tokio-uring runtime's ring.
///
/// `data` must own everything the entry points to. The driver keeps it alive until the
/// kernel posts the completion, even when the returned future is dropped first.
///
/// Panics (inside tokio-uring) when called outside a tokio-uring runtime.
pub(crate) fn submit<D: 'static>(data: D, sqe: squeue::Entry) -> InFlight<D> {
    UnsubmittedOneshot::new(data, Completion(PhantomData), sqe).submit()
}

/// `path` as the NUL-terminated string the kernel takes.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "path contains an interior NUL byte",
        )
    })
}

/// openat(AT_FDCWD, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC) on the ring.
///
/// Dropping the returned future before the open completes does not leak the
/// descriptor the kernel may still install: the request is kept aside and the
/// descriptor closed once it completes (see [`reap_abandoned_opens`]).
pub(crate) fn open_dir(path: &Path) -> io::Result<OpenDir> {
    open_dir_at(None, path.as_os_str(), false)
}

/// openat(dir or AT_FDCWD, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC, plus O_NOFOLLOW
/// when `nofollow`) on the ring; see [`open_dir`]. The request holds a share of `dir`,
/// so its number names the same directory when the kernel looks it up (at submission,
/// or later in an io-wq worker).
pub(crate) fn open_dir_at(
    dir: Option<&Arc<OwnedFd>>,
    name: &OsStr,
    nofollow: bool,
) -> io::Result<OpenDir> {
    reap_abandoned_opens();
    let c = c_path(Path::new(name))?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let sqe = opcode::OpenAt::new(types::Fd(at), c.as_ptr())
        .flags(flags)
        .build();
    // The CString's heap buffer does not move when the CString is moved into the
    // driver, so the pointer in the entry stays valid until the completion. (The kernel
    // copies the path when the entry is submitted, so it is never written.)
    Ok(OpenDir {
        op: Some(submit((c, dir.cloned()), sqe)),
        liveness: Liveness::of_current_runtime(),
    })
}

/// The path and the share of the directory it is looked up in.
type OpenData = (CString, Option<Arc<OwnedFd>>);

/// An OPENAT in flight; see [`open_dir`].
pub(crate) struct OpenDir {
    /// None once the result was returned.
    op: Option<InFlight<OpenData>>,
    liveness: Liveness,
}

impl Future for OpenDir {
    type Output = io::Result<OwnedFd>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<OwnedFd>> {
        let Some(op) = self.op.as_mut() else {
            return Poll::Ready(Err(io::Error::other("open polled after it completed")));
        };
        let (_c, res) = std::task::ready!(Pin::new(op).poll(cx));
        self.op = None;
        Poll::Ready(fd_from_res(res))
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            let liveness = std::mem::replace(&mut self.liveness, Liveness::dead());
            ABANDONED_OPENS.with(|list| list.borrow_mut().push(AbandonedOpen { op, liveness }));
        }
    }
}

/// An open whose future was dropped in flight, waiting to have its descriptor closed.
struct AbandonedOpen {
    op: InFlight<OpenData>,
    liveness: Liveness,
}

thread_local! {
    /// Per thread, since an operation belongs to the thread of its runtime.
    static ABANDONED_OPENS: RefCell<Vec<AbandonedOpen>> = const { RefCell::new(Vec::new()) };
}

/// Closes the descriptors of abandoned opens that have completed since, and forgets
/// those of runtimes that shut down. Runs at every open, so a loop of opens cancelled
/// by a timeout or `select!` holds at most the descriptors of the opens still in
/// flight, instead of one more per iteration until EMFILE.
pub(crate) fn reap_abandoned_opens() {
    let pending = ABANDONED_OPENS.with(|list| std::mem::take(&mut *list.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let mut still = Vec::new();
    for mut abandoned in pending {
        if !abandoned.liveness.runtime_running() {
            // Polling would panic (no driver). Dropping the op is safe: its driver
            // cancels and waits for it while shutting down, and the path it owns was
            // copied by the kernel at submission. A descriptor it opened is lost with
            // the runtime.
            continue;
        }
        match Pin::new(&mut abandoned.op).poll(&mut cx) {
            Poll::Pending => still.push(abandoned),
            // Dropping the descriptor closes it.
            Poll::Ready((_c, res)) => drop(fd_from_res(res)),
        }
    }
    ABANDONED_OPENS.with(|list| list.borrow_mut().extend(still));
}

/// The descriptor an OPENAT result names, or its error.
fn fd_from_res(res: i32) -> io::Result<OwnedFd> {
    if res < 0 {
        return Err(from_res(res));
    }
    // SAFETY: a non-negative OPENAT result is a descriptor the kernel just installed in
    // our table; nothing else knows about it, so we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(res) })
}

/// close(2) on the ring. The descriptor is gone afterwards whatever the result, as with
/// close(2) itself.
pub(crate) async fn close(fd: OwnedFd) -> io::Result<()> {
    // Ownership passes to the queued CLOSE: if this future is dropped, the entry is
    // already on the ring and still closes the descriptor.
    let raw = fd.into_raw_fd();
    let sqe = opcode::Close::new(types::Fd(raw)).build();
    let ((), res) = submit((), sqe).await;
    if res < 0 {
        return Err(from_res(res));
    }
    Ok(())
}

/// What a STATX request uses, owned by the driver while it is in flight.
struct StatxData {
    /// The directory the name is looked up in: a share keeps its number from being
    /// reused under the request.
    _dir: Option<Arc<OwnedFd>>,
    _name: CString,
    buf: Box<MaybeUninit<libc::statx>>,
}

/// statx(dir or AT_FDCWD, name, flags, mask) on the ring. With a directory and
/// AT_SYMLINK_NOFOLLOW, these are fstatat semantics, as `std::fs::DirEntry::metadata`
/// has, so the answer does not depend on the working directory or on a path's length,
/// and the lookup is one component.
pub(crate) async fn statx_at(
    dir: Option<&Arc<OwnedFd>>,
    name: &OsStr,
    flags: i32,
    mask: u32,
) -> io::Result<libc::statx> {
    let name = CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "name contains an interior NUL byte",
        )
    })?;
    let mut buf = Box::new(MaybeUninit::<libc::statx>::zeroed());
    let sqe = opcode::Statx::new(
        types::Fd(dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd())),
        name.as_ptr(),
        buf.as_mut_ptr().cast::<types::statx>(),
    )
    .flags(flags)
    .mask(mask)
    .build();
    // Moving the Box and the CString into the driver moves neither heap allocation, so
    // both pointers in the entry stay valid until the completion.
    let data = KernelWritable::new(StatxData {
        _dir: dir.cloned(),
        _name: name,
        buf,
    });
    let (data, res) = submit(data, sqe).await;
    if res < 0 {
        return Err(from_res(res));
    }
    // SAFETY: the buffer was zero-initialised, and libc::statx consists only of integer
    // fields, for which all-zero bytes are a valid value; on success the kernel has
    // overwritten it with a complete struct statx. Either way it is initialised.
    Ok(unsafe { data.into_inner().buf.assume_init_read() })
}

#[cfg(test)]
mod tests {
    use super::{submit, KernelWritable};
    use io_uring_06::{opcode, types};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::rc::Rc;

    /// A pipe nobody writes to: a read on it stays in flight until cancelled.
    fn silent_pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: both are fresh descriptors that only this function knows.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Submits a read on the silent pipe whose data holds `marker`, makes sure it has
    /// reached the kernel (a NOP behind it completed), and abandons it.
    async fn abandon_an_in_flight_read(pipe: &OwnedFd, marker: &Rc<u8>) {
        let mut buf = vec![0u8; 64];
        let sqe = opcode::Read::new(types::Fd(pipe.as_raw_fd()), buf.as_mut_ptr(), 64).build();
        let op = submit(KernelWritable::new((buf, Rc::clone(marker))), sqe);
        tokio_uring::no_op().await.unwrap();
        drop(op);
    }

    #[test]
    fn a_user_local_set_outliving_the_runtime_does_not_free_in_flight_memory() {
        let (read_end, _write_end) = silent_pipe();
        let marker = Rc::new(0u8);
        // The user's own LocalSet, made before the runtime and dropped after it: tasks
        // spawned with spawn_local inside it outlive the runtime's shutdown.
        let local = tokio::task::LocalSet::new();
        let rt = tokio_uring::Runtime::new(&tokio_uring::builder()).unwrap();
        rt.block_on(local.run_until(abandon_an_in_flight_read(&read_end, &marker)));
        assert_eq!(Rc::strong_count(&marker), 2, "the read is in flight");
        // The driver drops the abandoned read's data, then cancels the read.
        drop(rt);
        assert_eq!(
            Rc::strong_count(&marker),
            2,
            "freed while the kernel could still write into it"
        );
        drop(local);
    }

    #[test]
    fn an_abandoned_read_is_freed_when_it_completes() {
        let (read_end, write_end) = silent_pipe();
        let marker = Rc::new(0u8);
        tokio_uring::start(async {
            abandon_an_in_flight_read(&read_end, &marker).await;
            assert_eq!(Rc::strong_count(&marker), 2);
            // Completing it (one byte arrives) hands the data to the driver's
            // completion path, which frees it.
            // SAFETY: writes one byte from a static buffer to a descriptor we own.
            let rc = unsafe { libc::write(write_end.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            assert_eq!(rc, 1);
            for _ in 0..100 {
                if Rc::strong_count(&marker) == 1 {
                    break;
                }
                tokio_uring::no_op().await.unwrap();
            }
            assert_eq!(Rc::strong_count(&marker), 1, "leaked after completion");
        });
    }

    #[test]
    fn kernel_writable_memory_is_freed_only_while_its_runtime_runs() {
        let shared = Rc::new(0u8);
        let escaped = tokio_uring::start(async {
            // Dropped while the runtime runs (a completion it dispatched): freed.
            drop(KernelWritable::new(Rc::clone(&shared)));
            assert_eq!(Rc::strong_count(&shared), 1);
            // Taken back after a completion: handed over, neither freed nor leaked.
            let back = KernelWritable::new(Rc::clone(&shared)).into_inner();
            assert_eq!(Rc::strong_count(&shared), 2);
            drop(back);
            assert_eq!(Rc::strong_count(&shared), 1);
            KernelWritable::new(Rc::clone(&shared))
        });
        // Dropped after the runtime ended (its driver shutting down): leaked.
        drop(escaped);
        assert_eq!(Rc::strong_count(&shared), 2);
    }

    #[test]
    fn a_runtime_ending_inside_another_runtimes_context_still_leaks() {
        // tokio-uring started on a thread that has entered a plain tokio runtime (a
        // blocking-pool thread, say): its shutdown runs in that outer context.
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _entered = outer.enter();
        let shared = Rc::new(0u8);
        let escaped = tokio_uring::start(async { KernelWritable::new(Rc::clone(&shared)) });
        assert!(tokio::runtime::Handle::try_current().is_ok());
        drop(escaped);
        assert_eq!(Rc::strong_count(&shared), 2, "freed outside its runtime");
        // A second runtime on the same thread gets a token of its own.
        tokio_uring::start(async {
            drop(KernelWritable::new(Rc::clone(&shared)));
        });
        assert_eq!(Rc::strong_count(&shared), 2);
    }

    #[test]
    fn one_runtime_ending_says_nothing_about_another_on_the_same_thread() {
        let builder = tokio_uring::builder();
        let a = tokio_uring::Runtime::new(&builder).unwrap();
        let b = tokio_uring::Runtime::new(&builder).unwrap();
        let shared = Rc::new(0u8);
        // A runs first and stays alive; B's request is abandoned when B ends.
        a.block_on(async { drop(KernelWritable::new(Rc::clone(&shared))) });
        assert_eq!(Rc::strong_count(&shared), 1);
        let escaped = b.block_on(async { KernelWritable::new(Rc::clone(&shared)) });
        drop(b);
        drop(escaped);
        assert_eq!(
            Rc::strong_count(&shared),
            2,
            "freed after its runtime ended"
        );
        // A still frees what it completes.
        a.block_on(async { drop(KernelWritable::new(Rc::clone(&shared))) });
        assert_eq!(Rc::strong_count(&shared), 2);
    }

    #[test]
    fn requests_of_one_runtime_share_one_token() {
        let first = tokio_uring::start(async {
            let a = KernelWritable::new(0u8);
            let b = KernelWritable::new(0u8);
            assert!(
                a.liveness.alive.ptr_eq(&b.liveness.alive),
                "a token task per request"
            );
            a.liveness.alive.clone()
        });
        assert_eq!(first.strong_count(), 0, "the token outlived its runtime");
        // A later runtime on the same thread has a token of its own, alive.
        tokio_uring::start(async {
            let c = KernelWritable::new(0u8);
            assert!(!c.liveness.alive.ptr_eq(&first));
            assert!(c.liveness.runtime_running());
        });
    }
}
