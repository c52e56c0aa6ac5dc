//! getdents64(2) itself: the fallback path and the reference the op is checked against.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Reads entries of `dir` into `buf`; returns the number of bytes filled (0 at the end).
pub fn getdents64(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(u32::MAX as usize);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which we own mutably for
    // the duration of the call.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), len) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
