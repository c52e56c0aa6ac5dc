//! The ring operations: everything goes through tokio-uring's `UnsubmittedOneshot`, so
//! the requests share the runtime's own ring and driver.

use crate::error::from_res;
use io_uring_06::{cqueue, opcode, squeue, types};
use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
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
/// frees the memory; once it is gone, the memory is leaked instead. Each request has a
/// token of its own, held by a task of the runtime it was submitted on, which ends when
/// the memory is handed back or dropped: several tokio-uring runtimes may live on one
/// thread, and one's tasks say nothing about another's shutdown. (Whether *some* tokio
/// runtime is entered says nothing either: tokio-uring started on a blocking-pool
/// thread shuts down inside the outer runtime's context.) The leak is bounded by the
/// requests in flight at shutdown.
pub(crate) struct KernelWritable<T> {
    /// None only after `into_inner` took it.
    value: Option<T>,
    runtime: Weak<()>,
    release: Rc<Release>,
}

/// Tells the task holding a request's token that the token is no longer needed.
#[derive(Default)]
struct Release {
    done: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Release {
    fn release(&self) {
        self.done.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl<T> KernelWritable<T> {
    /// Wraps memory about to be handed to the kernel. Called inside the tokio-uring
    /// runtime that runs the request (in its `LocalSet`).
    pub(crate) fn new(value: T) -> Self {
        let token = Rc::new(());
        let runtime = Rc::downgrade(&token);
        let release = Rc::new(Release::default());
        let until = Rc::clone(&release);
        // Lives until released, or until the runtime drops its task set.
        drop(tokio::task::spawn_local(async move {
            let _token = token;
            std::future::poll_fn(|cx| {
                if until.done.get() {
                    Poll::Ready(())
                } else {
                    until.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await
        }));
        Self {
            value: Some(value),
            runtime,
            release,
        }
    }

    /// The memory back, once the request has completed.
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
        // Judged before the release: the token of a running runtime still lives.
        if let Some(value) = self.value.take() {
            if self.runtime.strong_count() == 0 {
                // The runtime is shutting down: the kernel may still write here.
                std::mem::forget(value);
            }
        }
        self.release.release();
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
    fn released_tokens_do_not_pile_up_as_tasks() {
        tokio_uring::start(async {
            let mut tokens = Vec::new();
            for i in 0..1000 {
                let w = KernelWritable::new(vec![0u8; 16]);
                tokens.push(w.runtime.clone());
                // Handed back, or dropped after a completion: both end the task.
                if i % 2 == 0 {
                    drop(w.into_inner());
                } else {
                    drop(w);
                }
            }
            // The task set polls a bounded number of tasks per turn: give it turns.
            let alive = || tokens.iter().filter(|t| t.strong_count() > 0).count();
            for _ in 0..10_000 {
                if alive() == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let alive = alive();
            assert_eq!(alive, 0, "token tasks still alive");
        });
    }
}
