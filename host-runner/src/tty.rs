//! The runner's own terminal for `run-in-vm -t`: its size, and raw mode while the job
//! has the terminal, so every key (Ctrl-C, Ctrl-Z, Ctrl-D, arrows) reaches the guest's
//! pseudo-terminal as typed and the guest's line discipline does the echoing.

use nix::sys::termios::{self, SetArg, Termios};
use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use vm_wire::WinSize;

/// The size used when no standard stream is a terminal (a `-t` job fed from a pipe).
pub const DEFAULT_SIZE: WinSize = WinSize { rows: 24, cols: 80 };

/// The size of the terminal on standard input, output or error (the first that is
/// one), else [`DEFAULT_SIZE`].
pub fn window_size() -> WinSize {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let size = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .find_map(size_of);
    size.unwrap_or(DEFAULT_SIZE)
}

fn size_of(fd: BorrowedFd<'_>) -> Option<WinSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid and
    // exclusively ours for the call; the descriptor is borrowed, so it is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Standard input in raw mode until dropped, which restores the settings it had: on
/// every way out of the run that unwinds (a normal end, an error, a stop signal the
/// runner handles, a panic). Only SIGKILL leaves the terminal raw (`reset` mends it).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts standard input in raw mode if it is a terminal; `None` if it is not.
    pub fn enter() -> nix::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing to report to: the terminal is as good as it can be made.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_has_no_size_and_is_not_made_raw() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(size_of(r.as_fd()), None);
    }

    #[test]
    fn a_pseudo_terminal_reports_its_size() {
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        assert_eq!(
            size_of(pty.slave.as_fd()),
            Some(WinSize {
                rows: 33,
                cols: 101
            })
        );
    }
}
