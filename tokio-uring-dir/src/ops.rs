//! The ring operations: everything goes through tokio-uring's `UnsubmittedOneshot`, so
//! the requests share the runtime's own ring and driver.

use crate::error::from_res;
use io_uring_06::{cqueue, opcode, squeue, types};
use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::{Rc, Weak};
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

/// Memory that a request may still write into while it is in flight.
///
/// tokio-uring keeps the data of a request whose future was dropped until its completion
/// arrives, with one exception: when the runtime shuts down, its driver drops that data
/// *before* it cancels the request and waits for it (tokio-uring 0.5, `Driver::drop`),
/// while an io-wq worker may still be writing into it. The runtime drops its task set
/// before its driver, so a token held by a task of that set tells the two apart: while
/// the token lives, a drop comes from a completion the running runtime dispatched and
/// frees the memory; once it is gone, the memory is leaked instead. (Whether *some*
/// tokio runtime is entered says nothing: tokio-uring started on a blocking-pool thread
/// shuts down inside the outer runtime's context.) The leak is bounded by the reads in
/// flight at shutdown.
pub(crate) struct KernelWritable<T> {
    value: ManuallyDrop<T>,
    runtime: Weak<()>,
}

thread_local! {
    /// The token of the tokio-uring runtime running on this thread, if any.
    static RUNTIME_TOKEN: RefCell<Weak<()>> = const { RefCell::new(Weak::new()) };
}

/// A weak handle on a token that lives as long as the task set of the tokio-uring
/// runtime running on this thread. Must be called inside it (in its `LocalSet`).
fn runtime_token() -> Weak<()> {
    RUNTIME_TOKEN.with(|cell| {
        let mut weak = cell.borrow_mut();
        if weak.strong_count() == 0 {
            let token = Rc::new(());
            *weak = Rc::downgrade(&token);
            // Never finishes: dropped with the task set, before the driver.
            tokio::task::spawn_local(async move {
                let _token = token;
                std::future::pending::<()>().await
            });
        }
        weak.clone()
    })
}

impl<T> KernelWritable<T> {
    /// Wraps memory about to be handed to the kernel. Called inside the tokio-uring
    /// runtime that runs the request.
    pub(crate) fn new(value: T) -> Self {
        Self {
            value: ManuallyDrop::new(value),
            runtime: runtime_token(),
        }
    }

    /// The memory back, once the request has completed.
    pub(crate) fn into_inner(mut self) -> T {
        // SAFETY: the value is taken exactly once: `self` is forgotten right after, so
        // Drop never sees the emptied slot. (Forgetting leaks only the Weak's count.)
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        let runtime = std::mem::take(&mut self.runtime);
        std::mem::forget(self);
        drop(runtime);
        value
    }
}

impl<T> std::ops::Deref for KernelWritable<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for KernelWritable<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for KernelWritable<T> {
    fn drop(&mut self) {
        if self.runtime.strong_count() > 0 {
            // SAFETY: dropped once, here; the slot is not used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.value) }
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
pub(crate) async fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let sqe = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC)
        .build();
    // The CString's heap buffer does not move when the CString is moved into the
    // driver, so the pointer in the entry stays valid until the completion.
    let (_c, res) = submit(c, sqe).await;
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

/// What a STATX request writes to, owned by the driver while it is in flight.
struct StatxData {
    _path: CString,
    buf: KernelWritable<Box<MaybeUninit<libc::statx>>>,
}

/// statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, mask) on the ring: lstat semantics.
pub(crate) async fn statx_nofollow(path: &Path, mask: u32) -> io::Result<libc::statx> {
    let c = c_path(path)?;
    let mut buf = Box::new(MaybeUninit::<libc::statx>::zeroed());
    let sqe = opcode::Statx::new(
        types::Fd(libc::AT_FDCWD),
        c.as_ptr(),
        buf.as_mut_ptr().cast::<types::statx>(),
    )
    .flags(libc::AT_SYMLINK_NOFOLLOW)
    .mask(mask)
    .build();
    // Moving the Box and the CString into the driver moves neither heap allocation, so
    // both pointers in the entry stay valid until the completion.
    let data = StatxData {
        _path: c,
        buf: KernelWritable::new(buf),
    };
    let (data, res) = submit(data, sqe).await;
    if res < 0 {
        return Err(from_res(res));
    }
    // SAFETY: the buffer was zero-initialised, and libc::statx consists only of integer
    // fields, for which all-zero bytes are a valid value; on success the kernel has
    // overwritten it with a complete struct statx. Either way it is initialised.
    Ok(unsafe { data.buf.into_inner().assume_init_read() })
}

#[cfg(test)]
mod tests {
    use super::KernelWritable;
    use std::rc::Rc;

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
}
