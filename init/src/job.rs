//! Running the job: spawn in its own session, pump output (and the host's input),
//! forward signals, reap.

use crate::channel::Channel;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vm_wire::{GuestMsg, HostMsg, JobEnd, JobSpec, MAX_CHUNK};

/// The job's standard input while it is open: the pipe, and what the host sent that
/// the pipe has not taken yet (at most `vm_wire::STDIN_WINDOW` bytes, the host's limit).
struct Input {
    /// The pipe, or (for a job on a terminal) a second descriptor of the terminal's
    /// master side.
    pipe: File,
    pending: Vec<u8>,
    /// The host sent `StdinEnd`: close the pipe once `pending` is written.
    end: bool,
    /// The input goes to the terminal whose slave side is at this path: its end is the
    /// end-of-file character, since closing a master descriptor ends nothing for the
    /// job (see [`deliver_terminal_eof`]).
    terminal: Option<PathBuf>,
    /// The end-of-file character was typed, in canonical mode (`true`) or not.
    eof_typed_in: Option<bool>,
}

/// Signals PID 1 passes on to the job's process group.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPWR,
];

/// After the job's main process exits, how long its descendants may keep its
/// stdout/stderr open before they are killed so the job can be reported.
const LINGER: Duration = Duration::from_secs(2);

/// How often a terminal job's pending end of input checks whether the job has read
/// what came before it.
const EOF_RECHECK: Duration = Duration::from_millis(20);

/// SIGCHLD and the forwarded signals, delivered through a signalfd.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the handled signals (so they queue) and opens a signalfd for them.
    pub fn block_and_open() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        for &s in FORWARDED {
            set.add(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }
}

/// State of one running job.
struct Running {
    leader: Pid,
    status: Option<JobEnd>,
    /// Standard output, or everything the job writes to its terminal.
    out: Option<File>,
    /// Standard error (none for a job on a terminal: it is the terminal too).
    err: Option<File>,
    input: Option<Input>,
    /// The master side of the job's terminal, for resizing it.
    terminal: Option<OwnedFd>,
}

/// Runs `spec` to completion and returns how it ended. Never panics.
pub fn run(spec: &JobSpec, chan: &mut Channel, signals: &Signals) -> JobEnd {
    let (mut child, terminal) = match spawn(spec) {
        Ok(c) => c,
        Err(end) => return end,
    };
    let leader = Pid::from_raw(child.id() as i32);
    let mut job = match terminal {
        None => Running {
            leader,
            status: None,
            out: child.stdout.take().map(|o| File::from(OwnedFd::from(o))),
            err: child.stderr.take().map(|e| File::from(OwnedFd::from(e))),
            input: child.stdin.take().map(|pipe| Input {
                pipe: File::from(OwnedFd::from(pipe)),
                pending: Vec::new(),
                end: false,
                terminal: None,
                eof_typed_in: None,
            }),
            terminal: None,
        },
        Some((master, slave_path)) => match on_terminal(leader, master, slave_path) {
            Ok(job) => job,
            Err(e) => {
                // Without its terminal the job can be neither heard nor waited for
                // sensibly: end it, and say why.
                let _ = kill(Pid::from_raw(-leader.as_raw()), Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(leader, None);
                return JobEnd::SetupFailed(format!("duplicating the terminal: {e}"));
            }
        },
    };
    for fd in [
        job.out.as_ref().map(|o| o.as_fd()),
        job.err.as_ref().map(|e| e.as_fd()),
        job.input.as_ref().map(|i| i.pipe.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        if let Err(e) = crate::fdwait::set_nonblocking(fd) {
            crate::console::log(&format!("init: O_NONBLOCK on job pipe: {e}"));
        }
    }
    // Signals the user sent while the VM booted.
    for msg in chan.take_after_job() {
        handle_host_msg(msg, &mut job, chan);
    }
    let mut linger_until: Option<Instant> = None;
    loop {
        let pipes_open = job.out.is_some() || job.err.is_some();
        if job.status.is_some() && !pipes_open {
            break;
        }
        if let Some(t) = linger_until {
            if Instant::now() >= t {
                // Descendants still hold the output open: end them, keep what they wrote.
                // All of them: in this VM every process but PID 1 is the job's, also
                // those that left its process group (setsid) and would otherwise go on
                // holding the pipe and writing output nobody reads any more.
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
                drain_pipe(&mut job.out, chan, GuestMsg::Stdout);
                drain_pipe(&mut job.err, chan, GuestMsg::Stderr);
                break;
            }
        }
        let mut timeout = match linger_until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if deliver_terminal_eof(&mut job.input) {
            timeout = timeout.min(EOF_RECHECK);
        }
        let ready = poll_once(chan, signals, &job, timeout);
        if ready.out {
            pump(&mut job.out, chan, GuestMsg::Stdout);
        }
        if ready.err {
            pump(&mut job.err, chan, GuestMsg::Stderr);
        }
        if let Some(events) = ready.input {
            feed_input(&mut job.input, events, chan);
        }
        if ready.signal {
            handle_signals(signals, &mut job);
            if job.status.is_some() && linger_until.is_none() {
                linger_until = Some(Instant::now() + LINGER);
            }
        }
        if ready.host {
            // A fault is already reported; the messages before it still count.
            for msg in chan.read_messages().msgs {
                handle_host_msg(msg, &mut job, chan);
            }
        }
    }
    job.status
        .unwrap_or_else(|| JobEnd::SetupFailed("job status lost".into()))
}

/// The state of a job whose standard streams are the slave side of `master`'s terminal.
fn on_terminal(leader: Pid, master: OwnedFd, slave_path: PathBuf) -> std::io::Result<Running> {
    let out = File::from(master.try_clone()?);
    let input = File::from(master.try_clone()?);
    Ok(Running {
        leader,
        status: None,
        out: Some(out),
        err: None,
        input: Some(Input {
            pipe: input,
            pending: Vec::new(),
            end: false,
            terminal: Some(slave_path),
            eof_typed_in: None,
        }),
        terminal: Some(master),
    })
}

/// `size` as the kernel's terminal size structure.
fn winsize(size: vm_wire::WinSize) -> libc::winsize {
    libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pseudo-terminal of `size`; both sides close on exec (the job gets the slave
/// as its standard streams, never as an extra descriptor).
fn open_terminal(size: vm_wire::WinSize) -> nix::Result<nix::pty::OpenptyResult> {
    let ws = winsize(size);
    let pty = nix::pty::openpty(Some(&ws), None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    Ok(pty)
}

/// Resizes the job's terminal; the kernel tells its foreground process group with
/// SIGWINCH.
fn resize(terminal: BorrowedFd<'_>, size: vm_wire::WinSize) -> std::io::Result<()> {
    let ws = winsize(size);
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid for the
    // call; the descriptor is borrowed, so it is open.
    let rc = unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the job; for a job on a terminal also returns the terminal's master side and
/// the path of its slave side.
type Terminal = (OwnedFd, PathBuf);
fn spawn(spec: &JobSpec) -> Result<(std::process::Child, Option<Terminal>), JobEnd> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(JobEnd::SetupFailed("empty argv".into()));
    };
    let cwd = std::path::Path::new(OsStr::from_bytes(&spec.cwd));
    if !cwd.is_dir() {
        return Err(JobEnd::SetupFailed(format!(
            "working directory {} does not exist",
            cwd.display()
        )));
    }
    let mut cmd = Command::new(OsStr::from_bytes(program));
    cmd.args(args.iter().map(|a| OsStr::from_bytes(a)))
        .env_clear()
        .envs(
            spec.env
                .iter()
                .map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))),
        )
        .current_dir(cwd);
    let mut master = None;
    if let Some(size) = spec.tty {
        let pty = open_terminal(size)
            .map_err(|e| JobEnd::SetupFailed(format!("opening a pseudo-terminal: {e}")))?;
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd())
            .map_err(|e| JobEnd::SetupFailed(format!("naming the pseudo-terminal: {e}")))?;
        let slave = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| JobEnd::SetupFailed(format!("duplicating the terminal: {e}")))
        };
        cmd.stdin(slave(&pty.slave)?)
            .stdout(slave(&pty.slave)?)
            .stderr(Stdio::from(pty.slave));
        master = Some((pty.master, slave_path));
    } else {
        cmd.stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    let controlling_terminal = spec.tty.is_some();
    // SAFETY: setsid, ioctl, sigprocmask and signal are async-signal-safe and touch no
    // memory of the parent. The job becomes a session and process-group leader so
    // signals reach all of it (and, on a terminal, takes its standard input, already
    // the terminal's slave side, as the session's controlling terminal so Ctrl-C, Ctrl-Z
    // and job control work), and starts with the signal state a login shell would give
    // it instead of PID 1's (all handled signals blocked, SIGPIPE ignored by the Rust
    // runtime).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if controlling_terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)?;
            nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let name = String::from_utf8_lossy(program).into_owned();
    let child = cmd.spawn().map_err(|e| {
        let status = match e.raw_os_error() {
            Some(libc::ENOENT) => 127,
            _ => 126,
        };
        JobEnd::SpawnFailed {
            status,
            message: format!("{name}: {e}"),
        }
    })?;
    // The slave descriptors went with `cmd`: only the job holds the terminal open now,
    // so reading the master ends (EIO) when the job's last process has closed it.
    drop(cmd);
    Ok((child, master))
}

struct Ready {
    out: bool,
    err: bool,
    signal: bool,
    host: bool,
    /// What the poll said of the job's standard input, if anything.
    input: Option<PollFlags>,
}

fn poll_once(chan: &Channel, signals: &Signals, job: &Running, timeout: Duration) -> Ready {
    let readable = PollFlags::POLLIN;
    let mut fds = vec![PollFd::new(signals.fd.as_fd(), readable)];
    let host_idx = (!chan.closed).then(|| {
        fds.push(PollFd::new(chan.fd(), readable));
        fds.len() - 1
    });
    let out_idx = job.out.as_ref().map(|o| {
        fds.push(PollFd::new(o.as_fd(), readable));
        fds.len() - 1
    });
    let err_idx = job.err.as_ref().map(|e| {
        fds.push(PollFd::new(e.as_fd(), readable));
        fds.len() - 1
    });
    // Room to write is only of interest with something to write; POLLERR (the job
    // closed its end) comes whatever is asked.
    let input_idx = job.input.as_ref().map(|i| {
        let wanted = if i.pending.is_empty() {
            PollFlags::empty()
        } else {
            PollFlags::POLLOUT
        };
        fds.push(PollFd::new(i.pipe.as_fd(), wanted));
        fds.len() - 1
    });
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let _ = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    );
    // Hang-up and error count as ready: the read that follows sees EOF or the error.
    let is_ready = |i: Option<usize>| {
        i.and_then(|i| fds[i].revents())
            .is_some_and(|r| !r.is_empty())
    };
    Ready {
        signal: is_ready(Some(0)),
        host: is_ready(host_idx),
        out: is_ready(out_idx),
        err: is_ready(err_idx),
        input: input_idx
            .and_then(|i| fds[i].revents())
            .filter(|r| !r.is_empty()),
    }
}

/// Writes what the pipe takes of the host's input without blocking, acknowledges it to
/// the host, and closes the pipe after the host's end of input (the job reads EOF) or
/// when the job closed its end (the host is told to stop sending).
fn feed_input(input: &mut Option<Input>, events: PollFlags, chan: &mut Channel) {
    let Some(inp) = input.as_mut() else { return };
    let mut written = 0;
    let mut job_closed = false;
    while written < inp.pending.len() {
        match inp.pipe.write(&inp.pending[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: nobody reads the job's standard input any more.
            Err(_) => {
                job_closed = true;
                break;
            }
        }
    }
    inp.pending.drain(..written);
    if written > 0 {
        chan.send(&GuestMsg::StdinTaken(written as u32));
    }
    // With nothing to write, POLLERR is the only way to learn a pipe's reader is gone;
    // a terminal whose every slave descriptor is closed reports POLLHUP (with POLLOUT).
    job_closed |= events.contains(PollFlags::POLLERR) && !events.contains(PollFlags::POLLOUT)
        || inp.terminal.is_some() && events.contains(PollFlags::POLLHUP);
    if job_closed {
        *input = None;
        chan.send(&GuestMsg::StdinClosed);
    } else if inp.end && inp.pending.is_empty() && inp.terminal.is_none() {
        // A terminal's end is for `deliver_terminal_eof`.
        *input = None;
    }
}

/// Ends a terminal job's input once the host has ended it and the job has read every
/// byte before: with the end-of-file character (Ctrl-D), which a program reading in
/// canonical mode sees as end of file, and a line-editing shell (raw mode) on an empty
/// line. One typed in canonical mode that is still unread when the reader switches to
/// raw mode (a shell's line editor after a command) turns into a NUL byte and ends
/// nothing, so after one typed in canonical mode the terminal is watched, and once it
/// is in raw mode with nothing unread another goes in; one typed in raw mode was read
/// by the program itself, which ends the input.
///
/// Returns whether it still waits (so the caller polls again soon).
fn deliver_terminal_eof(input: &mut Option<Input>) -> bool {
    let Some(inp) = input.as_mut() else {
        return false;
    };
    let Some(slave) = inp.terminal.as_ref() else {
        return false;
    };
    if !inp.end || !inp.pending.is_empty() {
        return false;
    }
    let Some(state) = terminal_state(slave) else {
        // The terminal is gone: so is the job's input.
        *input = None;
        return false;
    };
    if state.unread > 0 || inp.eof_typed_in == Some(true) && state.canonical {
        return true;
    }
    match inp.pipe.write(&[VEOF]) {
        Ok(_) if state.canonical => {
            inp.eof_typed_in = Some(true);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        _ => {
            *input = None;
            false
        }
    }
}

/// Ctrl-D, the end-of-file character of a terminal's default settings.
const VEOF: u8 = 4;

/// What a terminal's reader is doing, as far as its end of input needs to know.
struct TerminalState {
    /// Bytes typed that its reader has not read yet.
    unread: usize,
    /// Line by line (ICANON) rather than raw.
    canonical: bool,
}

fn terminal_state(slave: &std::path::Path) -> Option<TerminalState> {
    let fd = nix::fcntl::open(
        slave,
        OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } != 0 {
        return None;
    }
    let modes = nix::sys::termios::tcgetattr(fd.as_fd()).ok()?;
    Some(TerminalState {
        unread: n.max(0) as usize,
        canonical: modes
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON),
    })
}

/// Whether `incoming` more bytes of standard input keep the unwritten ones within the
/// window the host promised not to exceed.
fn fits_stdin_window(pending: usize, incoming: usize) -> bool {
    pending.saturating_add(incoming) <= vm_wire::STDIN_WINDOW
}

/// Reads one chunk from a pipe and sends it; closes the pipe at end-of-file.
fn pump<R: Read>(pipe: &mut Option<R>, chan: &mut Channel, wrap: fn(Vec<u8>) -> GuestMsg) {
    let Some(r) = pipe.as_mut() else { return };
    let mut buf = vec![0u8; MAX_CHUNK];
    match r.read(&mut buf) {
        Ok(0) => *pipe = None,
        Ok(n) => {
            buf.truncate(n);
            chan.send(&wrap(buf));
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        // A terminal's master reads EIO once no process has the slave side open: the
        // terminal's end of file.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => *pipe = None,
        Err(e) => {
            crate::console::log(&format!("init: reading job output: {e}"));
            *pipe = None;
        }
    }
}

/// Sends everything already in a pipe without waiting for more.
fn drain_pipe<R: Read>(pipe: &mut Option<R>, chan: &mut Channel, wrap: fn(Vec<u8>) -> GuestMsg) {
    let mut buf = vec![0u8; MAX_CHUNK];
    while let Some(r) = pipe.as_mut() {
        match r.read(&mut buf) {
            Ok(n) if n > 0 => chan.send(&wrap(buf[..n].to_vec())),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => *pipe = None,
        }
    }
}

fn handle_signals(signals: &Signals, job: &mut Running) {
    let mut reap = false;
    while let Ok(Some(info)) = signals.fd.read_signal() {
        let signo = info.ssi_signo as i32;
        if signo == libc::SIGCHLD {
            reap = true;
        } else if let Ok(sig) = Signal::try_from(signo) {
            let _ = kill(Pid::from_raw(-job.leader.as_raw()), sig);
        }
    }
    if reap {
        reap_all(Some(job));
    }
}

/// Reaps every exited child (orphans included), recording the job leader's status.
///
/// Decoded from the raw wait status rather than through nix's `WaitStatus`, which has
/// no value for a death by a real-time signal (34-64): it reports an error for one
/// *after* the child was reaped, and the job's status would be lost with it.
fn reap_all(mut job: Option<&mut Running>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid only writes the wait status into the int it is given.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return;
        }
        if pid < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                // ECHILD: nothing left; anything else cannot be retried usefully.
                _ => return,
            }
        }
        let pid = Pid::from_raw(pid);
        if libc::WIFEXITED(status) {
            record(&mut job, pid, JobEnd::Exited(libc::WEXITSTATUS(status)));
        } else if libc::WIFSIGNALED(status) {
            record(&mut job, pid, JobEnd::Signaled(libc::WTERMSIG(status)));
        }
        // Stops and continuations are not reported: no WUNTRACED or WCONTINUED.
    }
}

fn record(job: &mut Option<&mut Running>, pid: Pid, end: JobEnd) {
    if let Some(job) = job.as_deref_mut() {
        if pid == job.leader {
            job.status = Some(end);
        }
    }
}

/// Reaps whatever is left without blocking; used at shutdown.
pub fn reap_orphans() {
    reap_all(None);
}

/// Acts on a message from the host while the job runs.
fn handle_host_msg(msg: HostMsg, job: &mut Running, chan: &mut Channel) {
    match msg {
        HostMsg::Signal(n) => forward_raw(n, job.leader, chan),
        HostMsg::Stdin(data) => match job.input.as_mut() {
            Some(inp) if !fits_stdin_window(inp.pending.len(), data.len()) => {
                // A host that ignores the window would grow this buffer without limit:
                // its input ends here, and both sides are told why.
                let why = format!(
                    "the host sent standard input past its {}-byte window; the job's input is closed",
                    vm_wire::STDIN_WINDOW
                );
                crate::console::log(&format!("init: {why}"));
                chan.send(&GuestMsg::Log(why));
                job.input = None;
                chan.send(&GuestMsg::StdinClosed);
            }
            Some(inp) => {
                inp.pending.extend_from_slice(&data);
                feed_input(&mut job.input, PollFlags::empty(), chan);
            }
            // Sent before the host learnt the job closed its standard input: dropped,
            // but acknowledged so the host's count stays right.
            None => chan.send(&GuestMsg::StdinTaken(data.len() as u32)),
        },
        HostMsg::StdinEnd => {
            if let Some(inp) = job.input.as_mut() {
                inp.end = true;
                if inp.terminal.is_none() {
                    feed_input(&mut job.input, PollFlags::empty(), chan);
                }
            }
        }
        HostMsg::Resize(size) => {
            if let Some(t) = job.terminal.as_ref() {
                if let Err(e) = resize(t.as_fd(), size) {
                    chan.send(&GuestMsg::Log(format!("resizing the job's terminal: {e}")));
                }
            }
        }
        other => crate::console::log(&format!(
            "init: unexpected {other:?} during the job; ignored"
        )),
    }
}

fn forward_raw(signo: i32, leader: Pid, chan: &mut Channel) {
    match Signal::try_from(signo) {
        Ok(sig) => {
            let _ = kill(Pid::from_raw(-leader.as_raw()), sig);
        }
        Err(_) => chan.send(&GuestMsg::Log(format!(
            "ignored invalid signal number {signo} from the host"
        ))),
    }
}

#[cfg(test)]
mod window_tests {
    use super::fits_stdin_window;
    use vm_wire::STDIN_WINDOW;

    #[test]
    fn the_stdin_buffer_never_exceeds_the_window() {
        assert!(fits_stdin_window(0, STDIN_WINDOW));
        assert!(fits_stdin_window(STDIN_WINDOW - 1, 1));
        assert!(!fits_stdin_window(STDIN_WINDOW, 1));
        assert!(!fits_stdin_window(1, usize::MAX));
    }
}
