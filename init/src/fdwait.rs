//! Waiting on descriptors without blocking forever: O_NONBLOCK, and poll(2) for one
//! descriptor with a timeout. Shared by the job's pipes and the host channel.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Sets O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Waits until `fd` is readable (or hung up), at most `timeout`.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    wait_for(fd, PollFlags::POLLIN, timeout).is_some()
}

/// What waiting for room to write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Writable {
    /// Room to write.
    Ready,
    /// Nothing within the timeout.
    TimedOut,
    /// The other end hung up or the descriptor failed: no room will ever come.
    HungUp,
}

/// Waits until `fd` accepts writes, at most `timeout`.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> Writable {
    match wait_for(fd, PollFlags::POLLOUT, timeout) {
        None => Writable::TimedOut,
        Some(got)
            if !got.contains(PollFlags::POLLOUT)
                && got
                    .intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) =>
        {
            Writable::HungUp
        }
        Some(_) => Writable::Ready,
    }
}

/// Polls `fd` for `flags` at most `timeout`; the events it reported, None when none
/// came (a timeout, or EINTR: the callers try again).
fn wait_for(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Duration) -> Option<PollFlags> {
    let mut fds = [PollFd::new(fd, flags)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(n) if n > 0 => Some(fds[0].revents().unwrap_or(PollFlags::empty())),
        _ => None,
    }
}
