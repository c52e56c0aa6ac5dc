//! The ring operations: everything goes through tokio-uring's `UnsubmittedOneshot`, so
//! the requests share the runtime's own ring and driver.

use crate::error::from_res;
use io_uring_06::{cqueue, opcode, squeue, types};
use std::ffi::CString;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
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
    buf: Box<MaybeUninit<libc::statx>>,
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
    let data = StatxData { _path: c, buf };
    let (data, res) = submit(data, sqe).await;
    if res < 0 {
        return Err(from_res(res));
    }
    // SAFETY: the buffer was zero-initialised, and libc::statx consists only of integer
    // fields, for which all-zero bytes are a valid value; on success the kernel has
    // overwritten it with a complete struct statx. Either way it is initialised.
    Ok(unsafe { data.buf.assume_init_read() })
}
