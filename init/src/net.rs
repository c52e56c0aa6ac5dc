//! The loopback interface, up: 127.0.0.1 works in the guest as on any machine.
//!
//! Only `lo` is set up (the VM has no network device); bringing it up makes the kernel
//! add 127.0.0.1/8 itself.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sets IFF_UP on `lo`. A kernel without IPv4 (one of the user's) has no socket to
/// ask with: the guest then has no loopback, and that is not worth a note on every run.
pub fn loopback_up() -> Result<(), String> {
    // SAFETY: socket() takes no pointers; a non-negative result is a new descriptor
    // that nothing else owns, so OwnedFd may close it.
    let sock = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                return Ok(());
            }
            return Err(format!("loopback: socket: {err}"));
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq, which `req` is,
    // alive and writable for the whole call; the union member used is ifru_flags.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!(
                "loopback: SIOCGIFFLAGS: {}",
                std::io::Error::last_os_error()
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!(
                "loopback: SIOCSIFFLAGS: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
