//! `run-in-vm -t` through a real terminal: the runner is started on the slave side of a
//! pseudo-terminal this test holds the master of, as a user's terminal emulator would,
//! and driven by typing into it.

use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{run_in_vm, set_up_once, text};

fn win(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A runner on a terminal of its own, and the terminal's master side.
struct OnTerminal {
    child: Child,
    master: std::fs::File,
    /// Kept open so the terminal's settings can be read after the runner has exited.
    slave: OwnedFd,
    /// The terminal's settings before the runner started.
    initial: nix::sys::termios::Termios,
    seen: Vec<u8>,
}

impl OnTerminal {
    fn start(args: &[&str]) -> Self {
        let pty = openpty(Some(&win(30, 100)), None).unwrap();
        let initial = tcgetattr(pty.slave.as_fd()).unwrap();
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-in-vm"));
        cmd.args(args)
            .stdin(io(&pty.slave))
            .stdout(io(&pty.slave))
            .stderr(io(&pty.slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the runner gets the terminal
        // as its controlling terminal, as a shell in a terminal emulator has it.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        )
        .unwrap();
        Self {
            child,
            master,
            slave: pty.slave,
            initial,
            seen: Vec::new(),
        }
    }

    fn type_text(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Reads until `want` appears after byte offset `from`; returns the offset after it.
    fn wait_for(&mut self, from: usize, want: &str, max: Duration) -> usize {
        let until = Instant::now() + max;
        loop {
            if let Some(i) = text(&self.seen[from.min(self.seen.len())..]).find(want) {
                return from + i + want.len();
            }
            assert!(
                Instant::now() < until,
                "no {want:?} within {max:?}; the terminal showed:\n{}",
                text(&self.seen)
            );
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer. The kernel sends
        // the terminal's foreground process group (the runner) SIGWINCH, as an emulator's
        // resize does.
        let rc =
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &win(rows, cols)) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self, max: Duration) -> Option<i32> {
        let until = Instant::now() + max;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(Instant::now() < until, "runner still running after {max:?}");
            // Keep draining, or a full terminal buffer would block the runner.
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.master.read(&mut buf) {
                self.seen.extend_from_slice(&buf[..n]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_interactive_shell_sees_keys_resizes_and_mirrors_its_exit() {
    set_up_once();
    // No command and a terminal on standard input: a shell on a terminal.
    let mut t = OnTerminal::start(&["--no-src", "--timeout", "300"]);
    let long = Duration::from_secs(60);
    let mut at = t.wait_for(0, "# ", long);
    // The runner's terminal is raw while the job has it: the guest does the echoing.
    let raw = tcgetattr(t.slave.as_fd()).unwrap();
    assert!(!raw.local_flags.contains(LocalFlags::ECHO));
    assert!(!raw.local_flags.contains(LocalFlags::ICANON));

    t.type_text(b"tty; stty size\r");
    at = t.wait_for(at, "/dev/pts/0", long);
    at = t.wait_for(at, "30 100", long);

    // A resize reaches the guest's terminal (and the program on it).
    t.resize(40, 120);
    let until = Instant::now() + long;
    loop {
        t.type_text(b"stty size\r");
        let next = t.wait_for(at, "# ", long);
        let shown = text(&t.seen[at..next]);
        at = next;
        if shown.contains("40 120") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the size never became 40 120: {shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Ctrl-C interrupts the guest's foreground program, not the runner.
    t.type_text(b"sleep 1000\r");
    at = t.wait_for(at, "sleep 1000", long);
    std::thread::sleep(Duration::from_millis(500));
    t.type_text(b"\x03");
    at = t.wait_for(at, "# ", long);
    t.type_text(b"echo status=$?\r");
    at = t.wait_for(at, "status=130", long);

    // Ctrl-Z stops it, and the shell's job control takes over.
    t.type_text(b"sleep 1001\r");
    at = t.wait_for(at, "sleep 1001", long);
    std::thread::sleep(Duration::from_millis(500));
    t.type_text(b"\x1a");
    at = t.wait_for(at, "Stopped", long);
    at = t.wait_for(at, "# ", long);
    // ... and it resumes in the foreground, where Ctrl-C ends it.
    t.type_text(b"fg\r");
    at = t.wait_for(at, "sleep 1001", long);
    std::thread::sleep(Duration::from_millis(500));
    t.type_text(b"\x03");
    t.wait_for(at, "# ", long);
    t.type_text(b"exit 7\r");

    assert_eq!(t.wait_exit(long), Some(7), "{}", text(&t.seen));
    // Restored on the way out: the user's terminal is as it was.
    let after = tcgetattr(t.slave.as_fd()).unwrap();
    assert_eq!(after.local_flags, t.initial.local_flags);
    assert_eq!(after.input_flags, t.initial.input_flags);
    assert_eq!(after.output_flags, t.initial.output_flags);
}

#[test]
fn a_terminal_is_restored_when_the_run_is_stopped() {
    set_up_once();
    let mut t = OnTerminal::start(&["--no-src", "--timeout", "300", "-t", "sleep", "1000"]);
    // Wait until the job runs (the terminal goes raw only once the VM is started).
    let until = Instant::now() + Duration::from_secs(60);
    while tcgetattr(t.slave.as_fd())
        .unwrap()
        .local_flags
        .contains(LocalFlags::ICANON)
    {
        assert!(Instant::now() < until, "the terminal never went raw");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SIGTERM twice: the first goes to the job like Ctrl-C would, the second ends the
    // run in any case.
    let pid = nix::unistd::Pid::from_raw(t.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = t.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(143), "{}", text(&t.seen));
    let after = tcgetattr(t.slave.as_fd()).unwrap();
    assert!(after
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
}

#[test]
fn a_terminal_job_fed_from_a_pipe_reads_it_and_ends_at_its_end() {
    set_up_once();
    let mut child = run_in_vm()
        .args(["--no-src", "--timeout", "120", "-t", "sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tty\necho cols=$COLUMNS; stty size\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = text(&out.stdout);
    // End of input is Ctrl-D on the terminal: the shell exits 0 after the commands.
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", text(&out.stderr));
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert!(
        shown.contains("24 80"),
        "default size without a host terminal: {shown}"
    );
}

#[test]
fn no_command_without_a_terminal_is_a_usage_error() {
    let out = run_in_vm().arg("--no-src").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no command"),
        "{}",
        text(&out.stderr)
    );
}
