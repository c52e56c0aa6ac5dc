//! Runs one job in one microvm: temp dir, vsock backend, QEMU, the host end of the
//! channel, timeout, and the verdict.

mod conversation;
mod outcome;

pub(crate) use conversation::is_stop_signal;

use crate::caps::HostCaps;
use crate::qmp::QmpMonitor;
use crate::vmplan::{self, ChannelPlan, DiskAttach, VmConfig};
use anyhow::{bail, Context, Result};
use conversation::{Action, Conversation, InputEvent};
use nix::fcntl::OFlag;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use vm_wire::{GuestMsg, HostMsg, Inbox, JobSpec, MAX_CHUNK, STDIN_WINDOW};

pub use outcome::{Outcome, EXIT_TIMEOUT, EXIT_VM_FAILED};

/// Which job channel to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChannelChoice {
    /// vsock (in-kernel vhost if available, else vhost-user), virtio-serial if neither.
    Auto,
    /// AF_VSOCK; fails if no backend can be set up.
    Vsock,
    /// virtio-serial port.
    VirtioSerial,
}

/// Settings of one VM run.
#[derive(Debug, Clone)]
pub struct VmRequest {
    /// The job.
    pub spec: JobSpec,
    /// Wall-clock limit from QEMU's start to the job's end.
    pub timeout: Duration,
    /// Accelerator.
    pub accel: crate::caps::Accel,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Root image.
    pub root_image: PathBuf,
    /// Extra disks.
    pub disks: Vec<DiskAttach>,
    /// Shared host directories (their mounts are in the job).
    pub shares: Vec<crate::vmplan::ShareAttach>,
    /// Channel choice.
    pub channel: ChannelChoice,
    /// Show kernel boot messages on the console log.
    pub verbose_kernel: bool,
    /// Extra kernel command-line parameters, appended after the runner's own.
    pub kernel_args: Vec<String>,
    /// The first stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) goes to the job, as on a
    /// terminal, and only a second one ends the run. Off for jobs nobody interacts
    /// with (the test suite's): any stop signal ends the run at once.
    pub stop_signals_to_job: bool,
}

/// Where guest output goes.
pub trait OutputSink {
    /// A chunk of the job's stdout.
    fn stdout(&mut self, data: &[u8]);
    /// A chunk of the job's stderr.
    fn stderr(&mut self, data: &[u8]);
    /// A message from the guest's init or the runner.
    fn note(&mut self, text: &str);
    /// Waits at most `max` until the sink can take more output; false if it still
    /// cannot (its reader stopped reading). The session reads no more of the guest's
    /// output meanwhile, so the guest feels the back-pressure and nothing piles up
    /// here, while the deadline and signals are still checked. Sinks that keep output
    /// in memory always have room.
    fn wait_room(&mut self, max: Duration) -> bool {
        let _ = max;
        true
    }
}

/// Result of one VM run.
#[derive(Debug)]
pub struct VmReport {
    /// The verdict.
    pub outcome: Outcome,
    /// The console log, kept in the cache.
    pub console_log: PathBuf,
    /// QEMU start to the guest's greeting (boot + init start + connect).
    pub boot_time: Option<Duration>,
    /// QEMU start to QEMU exit.
    pub total_time: Duration,
}

impl VmReport {
    /// The last lines of the console log.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log, lines)
    }
}

fn tail(path: &Path, lines: usize) -> String {
    crate::console_log::tail_lines(path, lines)
}

/// Kills and reaps a child on drop, so no QEMU or daemon outlives its run.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static VM_SEQ: AtomicU32 = AtomicU32::new(0);

/// A CID for a new guest. Only the host kernel's vhost-vsock needs it unique across the
/// machine, and runners in other PID namespaces can have our pid, so the pid alone
/// (as before) could collide: the CID mixes in 24 random bits (std's per-process
/// random hash keys) and a per-process counter. QEMU refuses a CID in use, which
/// then fails that one run by name rather than crossing two guests' channels.
fn unique_cid() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let seq = VM_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(seq);
    cid_from(h.finish(), seq)
}

/// Maps random bits and a sequence number to a guest CID: never 0-2 (hypervisor,
/// local, host) nor u32::MAX (VMADDR_CID_ANY).
fn cid_from(random: u64, seq: u32) -> u32 {
    let cid = ((random as u32) & 0xffff_ff00) | (seq & 0xff);
    cid.clamp(3, u32::MAX - 1)
}

/// vhost-device-vsock takes its socket paths in a comma-separated list that has no
/// escape: a temporary directory with a comma in its path cannot be named to it.
fn usable_by_daemon(dir: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if dir.as_os_str().as_bytes().contains(&b',') {
        anyhow::bail!(
            "the VM's temporary directory {} has a comma in its path, which vhost-device-vsock \
             cannot take (set TMPDIR elsewhere)",
            dir.display()
        );
    }
    Ok(())
}

fn plan_channel(choice: ChannelChoice, caps: &HostCaps, dir: &Path) -> Result<ChannelPlan> {
    let serial = || ChannelPlan::VirtioSerial {
        socket: dir.join("vmjob.sock"),
    };
    let user = || ChannelPlan::VhostUserVsock {
        cid: unique_cid(),
        backend_socket: dir.join("vhost-vsock.sock"),
        uds: dir.join("vsock"),
    };
    Ok(match choice {
        ChannelChoice::VirtioSerial => serial(),
        _ if caps.vhost_vsock => {
            let cid = unique_cid();
            // The port is the one the listener gets (see `listen`).
            ChannelPlan::VhostKernelVsock { cid, port: 0 }
        }
        ChannelChoice::Vsock => {
            usable_by_daemon(dir)?;
            crate::vsockd::ensure_daemon()?;
            user()
        }
        ChannelChoice::Auto => {
            match usable_by_daemon(dir).and_then(|()| crate::vsockd::ensure_daemon()) {
                Ok(_) => user(),
                Err(e) => {
                    eprintln!("host-runner: no vsock backend ({e:#}); using virtio-serial");
                    serial()
                }
            }
        }
    })
}

fn console_log_path() -> Result<PathBuf> {
    let dir = crate::cache::cache_dir("logs")?;
    prune_logs(&dir, 200);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(dir.join(format!(
        "{}.{:09}-{}-{}.console.log",
        stamp.as_secs(),
        stamp.subsec_nanos(),
        std::process::id(),
        VM_SEQ.load(Ordering::Relaxed)
    )))
}

/// Keeps the newest `keep` console logs.
fn prune_logs(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    if logs.len() <= keep {
        return;
    }
    logs.sort();
    for old in &logs[..logs.len() - keep] {
        let _ = std::fs::remove_file(old);
    }
}

/// The host end of the job channel, listening. A kernel vsock port is chosen by the
/// kernel (one no other runner's VM uses) and written into `plan`.
fn listen(plan: &mut ChannelPlan) -> Result<Socket> {
    let sock = match plan {
        ChannelPlan::VhostKernelVsock { port, .. } => {
            let s = Socket::new(Domain::VSOCK, Type::STREAM, None).context("vsock socket")?;
            s.bind(&SockAddr::vsock(
                libc::VMADDR_CID_ANY,
                libc::VMADDR_PORT_ANY,
            ))
            .context("binding a vsock port")?;
            *port = s
                .local_addr()?
                .as_vsock_address()
                .map(|(_, p)| p)
                .context("the vsock listener has no port")?;
            s
        }
        _ => {
            let path = plan
                .host_socket()
                .context("channel without a host socket")?;
            let s = Socket::new(Domain::UNIX, Type::STREAM, None).context("unix socket")?;
            s.bind(&SockAddr::unix(&path)?)
                .with_context(|| format!("binding {}", path.display()))?;
            s
        }
    };
    sock.listen(1)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Whether a connection from `peer` may be this VM's guest. On the host kernel's vsock
/// every VM of the machine (other users' included) can reach the port the runner
/// listens on, so only the CID given to our guest is taken. The Unix sockets of the
/// other channels live in the VM's 0700 directory, which is their access check.
fn peer_is_our_guest(plan: &ChannelPlan, peer: &SockAddr) -> bool {
    match plan {
        ChannelPlan::VhostKernelVsock { cid, .. } => peer
            .as_vsock_address()
            .is_some_and(|(peer_cid, _)| peer_cid == *cid),
        ChannelPlan::VhostUserVsock { .. } | ChannelPlan::VirtioSerial { .. } => true,
    }
}

fn describe_peer(peer: &SockAddr) -> String {
    match peer.as_vsock_address() {
        Some((cid, port)) => format!("vsock CID {cid} port {port}"),
        None => "an unexpected peer".into(),
    }
}

fn spawn_logged(program: &Path, args: &[std::ffi::OsString], log: &Path) -> Result<Reaped> {
    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: a Ctrl-C on the terminal is for the job, which the
        // runner forwards; it must not kill QEMU or the backend.
        .process_group(0);
    // Outside the terminal's process group, QEMU would outlive a runner killed by a
    // signal; the parent-death signal ends it with the thread that started it.
    crate::child::dies_with_runner(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Reaped(child))
}

/// Boots a VM, runs the job, streams its output to `sink`, forwards signals arriving on
/// `signals`, and returns the verdict. Errors are failures to set the VM up at all.
pub fn run_vm(
    req: &VmRequest,
    caps: &HostCaps,
    sink: &mut dyn OutputSink,
    signals: Option<&Receiver<i32>>,
) -> Result<VmReport> {
    if !req.kernel.is_file() {
        bail!("kernel {} does not exist", req.kernel.display());
    }
    remove_stale_vm_dirs(&std::env::temp_dir());
    let dir = tempfile::Builder::new()
        .prefix(&format!("{VM_DIR_PREFIX}{}-", std::process::id()))
        .permissions(crate::cache::private_permissions())
        .tempdir()
        .context("creating the VM's temp dir")?;
    let mut channel = plan_channel(req.channel, caps, dir.path())?;
    let listener = listen(&mut channel)?;
    let console_log = console_log_path()?;
    let cfg = VmConfig {
        accel: req.accel,
        mem_mib: req.mem_mib,
        cpus: req.cpus,
        kernel: req.kernel.clone(),
        root_image: req.root_image.clone(),
        disks: req.disks.clone(),
        shares: req.shares.clone(),
        channel: channel.clone(),
        console_log: console_log.clone(),
        quiet_kernel: !req.verbose_kernel,
        extra_kernel_args: req.kernel_args.clone(),
        sandbox: caps.qemu_sandbox,
        qmp_socket: Some(dir.path().join("qmp.sock")),
    };

    let daemon_log = dir.path().join("vsockd.log");
    let mut daemon = match vmplan::vsock_daemon_argv(&channel) {
        Some(args) => {
            let bin = caps
                .vsock_daemon
                .clone()
                .or_else(crate::vsockd::find_daemon)
                .context("vhost-device-vsock is not installed")?;
            let mut d = spawn_logged(&bin, &args, &daemon_log)?;
            let ChannelPlan::VhostUserVsock { backend_socket, .. } = &channel else {
                unreachable!("daemon argv only exists for vhost-user")
            };
            wait_for_socket(backend_socket, &mut d, &daemon_log)?;
            Some(d)
        }
        None => None,
    };

    let qemu_log = dir.path().join("qemu.log");
    let start = Instant::now();
    let mut qemu = spawn_logged(
        Path::new("qemu-system-x86_64"),
        &vmplan::qemu_argv(&cfg),
        &qemu_log,
    )?;
    let deadline = start + req.timeout;
    let input = match req.spec.stdin {
        true => {
            let (rx, wake) = read_stdin_in_background()?;
            Some(InputFeed::new(rx, Some(wake)))
        }
        false => None,
    };
    let mut session = Session {
        qmp: cfg.qmp_socket.as_deref().map(QmpMonitor::new),
        console_bound: crate::console_log::Bound::new(),
        daemon: daemon.as_mut().map(|d| (d, daemon_log.as_path())),
        qemu: &mut qemu,
        qemu_log: &qemu_log,
        deadline,
        sink,
        signals,
        conv: Conversation::new(req.spec.clone(), start, deadline, req.stop_signals_to_job),
        input,
        read_tick: READ_TICK,
    };
    let outcome = session.drive(&listener, &channel, &console_log)?;
    let boot_time = session.conv.boot_time();
    let total_time = start.elapsed();
    drop(qemu);
    if let Err(e) = crate::console_log::finish(&console_log, crate::console_log::CAP) {
        sink.note(&format!(
            "trimming the console log {}: {e}",
            console_log.display()
        ));
    }
    Ok(VmReport {
        outcome,
        console_log,
        boot_time,
        total_time,
    })
}

fn wait_for_socket(path: &Path, daemon: &mut Reaped, log: &Path) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        if let Some(status) = daemon.0.try_wait()? {
            bail!("vhost-device-vsock exited ({status}): {}", tail(log, 5));
        }
        if Instant::now() > until {
            bail!("vhost-device-vsock did not create {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Reads this process's standard input on a thread of its own. The channel holds one
/// window's worth: the thread reads no further ahead of the guest than that. A thread
/// left blocked in its read when the run ends goes with the process. Each event also
/// puts a byte in the returned pipe, which the session polls beside the guest's stream:
/// input goes out as it arrives, not after the stream's read timeout.
fn read_stdin_in_background() -> Result<(Receiver<InputEvent>, InputWake)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(STDIN_WINDOW / MAX_CHUNK);
    let (wake, wake_tx) = InputWake::new()?;
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut buf = vec![0u8; MAX_CHUNK];
                let event = match stdin.read(&mut buf) {
                    Ok(0) => InputEvent::End,
                    Ok(n) => {
                        buf.truncate(n);
                        InputEvent::Data(buf)
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // Inherited with O_NONBLOCK (a parent shares its file description):
                    // no end of input, only nothing yet.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        wait_ready(stdin.as_fd(), nix::poll::PollFlags::POLLIN);
                        continue;
                    }
                    Err(e) => InputEvent::Failed(e.to_string()),
                };
                let last = !matches!(event, InputEvent::Data(_));
                // A send fails once the job closed its input: nothing more to read for.
                if tx.send(event).is_err() {
                    return;
                }
                // A full pipe holds a wake-up already.
                let _ = nix::unistd::write(&wake_tx, &[1]);
                if last {
                    return;
                }
            }
        })
        .context("starting the thread that reads standard input")?;
    Ok((rx, wake))
}

/// Waits until `fd`, which a parent may have left non-blocking, is ready for `events`
/// (an error counts as ready: the next read or write reports it).
pub(crate) fn wait_ready(fd: BorrowedFd, events: nix::poll::PollFlags) {
    let mut fds = [nix::poll::PollFd::new(fd, events)];
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
}

/// The pipe [`read_stdin_in_background`] announces events in. Its write end stays open
/// here too: once the thread ends, a pipe without writers would poll as hung up, at
/// once and forever, while the input's end may still wait for room in the window.
struct InputWake {
    read: OwnedFd,
    _write: OwnedFd,
}

impl InputWake {
    /// The pipe, and a write end for the thread that announces events in it.
    fn new() -> Result<(Self, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("creating the pipe that announces standard input")?;
        let announcer = write
            .try_clone()
            .context("duplicating the pipe that announces standard input")?;
        Ok((
            InputWake {
                read,
                _write: write,
            },
            announcer,
        ))
    }
}

/// The runner's standard input on its way to the job (see [`JobSpec::stdin`]).
struct InputFeed {
    rx: Receiver<InputEvent>,
    /// Readable when `rx` got an event (see [`read_stdin_in_background`]); without
    /// it, new input waits for the next round of the session's loop.
    wake: Option<InputWake>,
}

impl InputFeed {
    fn new(rx: Receiver<InputEvent>, wake: Option<InputWake>) -> Self {
        InputFeed { rx, wake }
    }
}

/// After QEMU exits, how long the stream may stay empty before nothing more is expected.
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// After QEMU exits, the longest the runner keeps reading what the guest sent before.
const DRAIN_CAP: Duration = Duration::from_secs(2);

/// The longest one wait for the guest's bytes lasts before the session looks at its
/// deadline, QEMU and signals again.
const READ_TICK: Duration = Duration::from_millis(20);

/// The host end of one VM's channel.
struct Session<'a> {
    qemu: &'a mut Reaped,
    /// Hears of host I/O errors on the VM's disks (see `qmp`).
    qmp: Option<QmpMonitor>,
    /// Keeps the console log from growing without limit while the VM runs.
    console_bound: crate::console_log::Bound,
    /// The vhost-user vsock backend and its log, when the channel goes through one.
    daemon: Option<(&'a mut Reaped, &'a Path)>,
    qemu_log: &'a Path,
    deadline: Instant,
    sink: &'a mut dyn OutputSink,
    signals: Option<&'a Receiver<i32>>,
    /// What was said and what to say next (frames, signals, the input window).
    conv: Conversation,
    /// Standard input still to pass on, if the job reads it.
    input: Option<InputFeed>,
    /// [`READ_TICK`], longer in tests that tell a wait from a wake-up.
    read_tick: Duration,
}

/// The connected stream and the bytes read from it.
struct Channel {
    stream: Socket,
    /// The stream's read timeout: how long one [`Channel::read_once`] waits at most.
    tick: Duration,
    inbox: Inbox<GuestMsg>,
    buf: Vec<u8>,
    /// The guest closed the channel (it does so before powering off) or it broke: from
    /// then on only QEMU's exit is waited for, without spinning on a dead stream.
    closed: bool,
    /// A send failed: the guest end is gone, nothing more is sent. What it sent before
    /// is still read; reading ends by itself at the end of the stream.
    send_failed: bool,
    /// Encoded frames the stream had no room for yet. The runner never blocks in a
    /// write: a guest blocked sending the job's output to a runner blocked sending it
    /// input would wait forever, and the runner's deadline and Ctrl-C with it. Bounded
    /// by the input window plus a few small frames.
    outbox: Vec<u8>,
    /// An EndAck is queued: the guest powers off, so a failing send is no news.
    end_acked: bool,
}

/// What one read of the channel gave.
enum ReadStep {
    /// Bytes, now in the frame buffer.
    Data,
    /// Nothing within the read timeout.
    Idle,
    /// End of stream or an error; `closed` is set.
    Closed,
}

impl Channel {
    /// The channel over `stream`, connected and blocking; a read waits `tick` at most.
    fn new(stream: Socket, tick: Duration) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(tick))?;
        Ok(Channel {
            stream,
            tick,
            inbox: Inbox::new(),
            buf: vec![0u8; 256 * 1024],
            closed: false,
            send_failed: false,
            outbox: Vec::new(),
            end_acked: false,
        })
    }

    /// Queues `msg` unless an earlier send failed, and writes what the stream takes now;
    /// the rest goes out from [`Channel::read_once`] as room appears. A failure is not
    /// the runner's: the guest crashed or powered off (EPIPE, ECONNRESET), and QEMU's
    /// exit and the console log tell which.
    fn send(&mut self, msg: &HostMsg, sink: &mut dyn OutputSink) {
        if self.send_failed {
            return;
        }
        self.end_acked |= *msg == HostMsg::EndAck;
        self.outbox.extend_from_slice(&msg.encode());
        self.flush(sink);
    }

    /// Writes as much of the outbox as the stream takes without blocking.
    fn flush(&mut self, sink: &mut dyn OutputSink) {
        while !self.outbox.is_empty() && !self.send_failed {
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            match self.stream.send_with_flags(&self.outbox, flags) {
                // A stream socket takes at least a byte when it reports room.
                Ok(0) => return,
                Ok(n) => drop(self.outbox.drain(..n)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    if !self.end_acked {
                        sink.note(&format!("sending to the guest failed: {e}"));
                    }
                    self.send_failed = true;
                    self.outbox = Vec::new();
                }
            }
        }
    }

    /// Waits up to the stream's read timeout for the guest's bytes, meanwhile writing
    /// queued frames as the stream makes room for them; returns early, idle, when
    /// `wake` becomes readable (it is drained).
    fn read_once(&mut self, sink: &mut dyn OutputSink, wake: Option<BorrowedFd>) -> ReadStep {
        if self.outbox.is_empty() && wake.is_none() {
            return self.read_available(sink);
        }
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let timeout = PollTimeout::try_from(self.tick).unwrap_or(PollTimeout::MAX);
        let mut want = PollFlags::POLLIN;
        if !self.outbox.is_empty() {
            want |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(self.stream.as_fd(), want)];
        fds.extend(wake.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        let revents = |fds: &[PollFd], i: usize| {
            fds.get(i)
                .and_then(|fd| fd.revents())
                .unwrap_or(PollFlags::empty())
        };
        let (stream, woken) = match poll(&mut fds, timeout) {
            Ok(_) => (revents(&fds, 0), revents(&fds, 1)),
            Err(_) => (PollFlags::empty(), PollFlags::empty()),
        };
        drop(fds);
        if let Some(fd) = wake.filter(|_| !woken.is_empty()) {
            let mut bytes = [0u8; 64];
            while matches!(nix::unistd::read(fd.as_raw_fd(), &mut bytes), Ok(n) if n > 0) {}
        }
        if stream.intersects(PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP) {
            self.flush(sink);
        }
        if !stream.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP) {
            return ReadStep::Idle;
        }
        self.read_available(sink)
    }

    fn read_available(&mut self, sink: &mut dyn OutputSink) -> ReadStep {
        match self.stream.read(&mut self.buf) {
            Ok(0) => {
                self.closed = true;
                ReadStep::Closed
            }
            Ok(n) => {
                self.inbox.push(&self.buf[..n]);
                ReadStep::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                ReadStep::Idle
            }
            Err(e) => {
                // The guest side vanished; QEMU's exit will tell why.
                sink.note(&format!("channel error: {e}"));
                self.closed = true;
                ReadStep::Closed
            }
        }
    }
}

impl Session<'_> {
    fn drive(
        &mut self,
        listener: &Socket,
        plan: &ChannelPlan,
        console_log: &Path,
    ) -> Result<Outcome> {
        // 1. Wait for the guest to connect.
        let stream = loop {
            match listener.accept() {
                Ok((s, peer)) if peer_is_our_guest(plan, &peer) => break s,
                Ok((_, peer)) => self.sink.note(&format!(
                    "refused a connection from {}: not this VM's guest",
                    describe_peer(&peer)
                )),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("accepting the guest's connection"),
            }
            let tick = self.conv.on_tick(Instant::now());
            if let Some(o) = self.act(None, tick) {
                return Ok(o);
            }
            if let Some(o) = self.check_vm(console_log)? {
                return Ok(o);
            }
            if let Some(o) = self.collect_signals(None, false) {
                return Ok(o);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut ch = Channel::new(stream, self.read_tick)?;

        // 2. Exchange frames until the guest reports the end and QEMU exits.
        loop {
            // Output the sink cannot take yet stays in the stream (the wait is the
            // loop's tick then), so a reader that stopped reading holds up neither
            // the deadline nor a stop signal.
            let output_blocked = !ch.closed && !self.sink.wait_room(self.read_tick);
            if ch.closed {
                std::thread::sleep(Duration::from_millis(5));
            } else if output_blocked {
                ch.flush(self.sink);
            } else {
                let wake = self.input.as_ref().and_then(|i| i.wake.as_ref());
                ch.read_once(self.sink, wake.map(|w| w.read.as_fd()));
            }
            if ch.closed {
                self.conv.on_channel_closed(Instant::now());
            }
            if let Some(o) = self.handle_frames(&mut ch) {
                return Ok(o);
            }
            if let Some((e, _)) = self.conv.end() {
                let e = e.clone();
                if self.qemu.0.try_wait()?.is_some() {
                    return Ok(Outcome::Finished(e));
                }
                // The job is over: a stop signal only cuts the VM's shutdown short, and
                // the shutdown has a grace period of its own.
                if let Some(o) = self.collect_signals(Some(&mut ch), false) {
                    return Ok(o);
                }
                let tick = self.conv.on_tick(Instant::now());
                if let Some(o) = self.act(Some(&mut ch), tick) {
                    return Ok(o);
                }
                continue;
            }
            // The deadline, or a channel lost for good.
            let tick = self.conv.on_tick(Instant::now());
            let ended = match self.act(Some(&mut ch), tick) {
                Some(o) => Some(o),
                None => self.check_vm(console_log)?,
            };
            if let Some(why) = ended {
                // QEMU is gone (or was killed), but what the guest wrote before may
                // still be queued behind a host that was slow to read (stdout piped to
                // a slow consumer): the job's End, or its last output before a panic
                // or the timeout.
                if let Some(o) = self.drain(&mut ch) {
                    return Ok(o);
                }
                return Ok(self.conv.verdict(why));
            }
            // While its output cannot be delivered, a job that a forwarded stop signal
            // ended could not report its end either (the End frame waits behind the
            // output): a stop signal then ends the run at once.
            if let Some(o) = self.collect_signals(Some(&mut ch), output_blocked) {
                return Ok(o);
            }
            if let Some(o) = self.feed_input(&mut ch) {
                return Ok(o);
            }
        }
    }

    /// Passes what was read of standard input to the conversation while it wants more
    /// (the window has room); it sends what fits, and the end of input once reached.
    fn feed_input(&mut self, ch: &mut Channel) -> Option<Outcome> {
        while self.conv.wants_input() {
            let feed = self.input.as_ref()?;
            let event = match feed.rx.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => InputEvent::End,
            };
            let actions = self.conv.on_input(event);
            if let Some(o) = self.act(Some(ch), actions) {
                return Some(o);
            }
        }
        None
    }

    /// Reads what is left in the stream after QEMU exited, until it ends, stays empty
    /// for [`DRAIN_QUIET`], brings the job's end, or [`DRAIN_CAP`] has passed (a
    /// backend that keeps the stream open and idle must not hold the verdict up).
    fn drain(&mut self, ch: &mut Channel) -> Option<Outcome> {
        // Nothing sent now can matter (and a write to the dead guest would only add a
        // misleading note to the verdict).
        ch.outbox.clear();
        ch.send_failed = true;
        let started = Instant::now();
        let mut last_data = started;
        while !ch.closed && self.conv.end().is_none() && started.elapsed() < DRAIN_CAP {
            if !self.sink.wait_room(self.read_tick) {
                // Past the deadline nothing more is waited for: the run ends now.
                if Instant::now() >= self.deadline {
                    break;
                }
                continue;
            }
            match ch.read_once(self.sink, None) {
                ReadStep::Data => last_data = Instant::now(),
                ReadStep::Idle if last_data.elapsed() >= DRAIN_QUIET => break,
                ReadStep::Idle | ReadStep::Closed => {}
            }
            if let Some(o) = self.handle_frames(ch) {
                return Some(o);
            }
        }
        None
    }

    /// Hands every complete frame in the buffer to the conversation and does what it
    /// says; returns the verdict when it ends the run.
    fn handle_frames(&mut self, ch: &mut Channel) -> Option<Outcome> {
        while let Some(msg) = ch.inbox.next_msg() {
            let actions = self.conv.on_guest(msg, Instant::now());
            if let Some(o) = self.act(Some(ch), actions) {
                return Some(o);
            }
        }
        None
    }

    /// Hands the signals the user sent to the runner to the conversation (SIGWINCH as
    /// the terminal's new size) and does what it says; returns the verdict when one of
    /// them ends the run. `ch` is `None` before the guest connected.
    fn collect_signals(
        &mut self,
        mut ch: Option<&mut Channel>,
        output_blocked: bool,
    ) -> Option<Outcome> {
        let rx = self.signals?;
        while let Ok(sig) = rx.try_recv() {
            let actions = match sig {
                libc::SIGWINCH => self.conv.on_window_size(crate::tty::window_size()),
                _ => self.conv.on_signal(sig, output_blocked),
            };
            if let Some(o) = self.act(ch.as_deref_mut(), actions) {
                return Some(o);
            }
        }
        None
    }

    /// Does what the conversation asked for, in order; the verdict if one ends the run.
    fn act(&mut self, mut ch: Option<&mut Channel>, actions: Vec<Action>) -> Option<Outcome> {
        for action in actions {
            match action {
                Action::Send(msg) => {
                    // Nothing is sent before the guest connected: the conversation only
                    // answers the guest's greeting.
                    if let Some(ch) = ch.as_deref_mut() {
                        ch.send(&msg, self.sink);
                    }
                }
                Action::Stdout(d) => self.sink.stdout(&d),
                Action::Stderr(d) => self.sink.stderr(&d),
                Action::Note(text) => self.sink.note(&text),
                // Dropping the feed stops the reading thread at its next chunk.
                Action::StopInput => self.input = None,
                Action::KillVm(o) => {
                    self.kill_vm();
                    return Some(o);
                }
                Action::Finish(o) => return Some(o),
            }
        }
        None
    }

    /// Ends QEMU and reaps it; errors mean it is gone already.
    fn kill_vm(&mut self) {
        let _ = self.qemu.0.kill();
        let _ = self.qemu.0.wait();
    }

    /// Whether the VM ended or must end before the job did: a host I/O error under a
    /// disk, QEMU gone, or the vsock backend gone. The outcome, if so.
    fn check_vm(&mut self, console_log: &Path) -> Result<Option<Outcome>> {
        // The guest already got an I/O error on a disk that lost data: nothing it
        // reports after this can be trusted to be about the job alone.
        if let Some(err) = self.qmp.as_mut().and_then(QmpMonitor::poll) {
            self.kill_vm();
            return Ok(Some(Outcome::HostIoError(err.to_string())));
        }
        let Some(status) = self.qemu.0.try_wait()? else {
            self.console_bound
                .enforce(console_log, crate::console_log::CAP);
            // Without its backend the VM can say nothing more: end it now, by name,
            // rather than wait for the channel to be declared lost.
            if let Some((daemon, log)) = self.daemon.as_mut() {
                if let Some(status) = daemon.0.try_wait()? {
                    let why = format!(
                        "the vsock backend vhost-device-vsock exited ({status}) while the VM ran; \
                         killed the VM{}",
                        log_tail_suffix(log)
                    );
                    self.kill_vm();
                    return Ok(Some(Outcome::NoStatus(why)));
                }
            }
            return Ok(None);
        };
        let console = crate::console_log::read_tail(console_log, crate::console_log::PANIC_WINDOW);
        let console = String::from_utf8_lossy(&console);
        let reason = qemu_end_reason(status, tail(self.qemu_log, 5).trim());
        Ok(Some(conversation::exit_without_end(
            console.contains("Kernel panic"),
            reason,
        )))
    }
}

/// `": <last lines of log>"`, or nothing when the log is empty.
fn log_tail_suffix(log: &Path) -> String {
    let tail = tail(log, 3);
    match tail.trim() {
        "" => String::new(),
        t => format!(": {t}"),
    }
}

/// Per-VM temp dirs are `<prefix><runner pid>-<random>`, so that a later run can tell
/// which ones a runner that was SIGKILLed (no destructor ran) left behind.
const VM_DIR_PREFIX: &str = "microvm-";

/// Removes the per-VM temp dirs of runners that no longer exist. A pid that was reused
/// meanwhile keeps its dir until that process is gone too: never one of a live run.
fn remove_stale_vm_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(VM_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
            .filter(|&pid| pid > 0)
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        // Only our own: another user's dir is theirs to clean (and unreadable anyway).
        let ours = entry.metadata().is_ok_and(|m| {
            std::os::unix::fs::MetadataExt::uid(&m) == nix::unistd::getuid().as_raw()
        });
        if gone && ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Why QEMU ended before the job did, in words: killed by a signal (someone or the OOM
/// killer ended it), exited with an error (its own log's last lines say why), or
/// exited cleanly, which without a job status means the guest rebooted.
fn qemu_end_reason(status: std::process::ExitStatus, qemu_log_tail: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let said = if qemu_log_tail.is_empty() {
        String::new()
    } else {
        format!("; its log ends: {qemu_log_tail}")
    };
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        format!("QEMU was killed by {name} ({sig}){said}")
    } else if status.success() {
        "the guest rebooted without reporting".to_string()
    } else {
        let code = status.code().unwrap_or(-1);
        format!("QEMU exited with status {code}{said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conversation::CHANNEL_LOST_GRACE;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use vm_wire::{FrameBuffer, JobEnd, MAGIC, VERSION};

    #[test]
    fn only_dirs_of_runners_that_are_gone_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid above pid_max never exists; ours does.
        let dead = tmp.path().join(format!("{VM_DIR_PREFIX}99999999-abc"));
        let live = tmp
            .path()
            .join(format!("{VM_DIR_PREFIX}{}-abc", std::process::id()));
        let other = tmp.path().join("microvm-unrelated");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("sock"), b"").unwrap();
        }
        remove_stale_vm_dirs(tmp.path());
        assert!(!dead.exists(), "a dead runner's dir stayed");
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn qemu_ends_are_named_without_stray_punctuation() {
        use std::os::unix::process::ExitStatusExt;
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(
            qemu_end_reason(killed, ""),
            "QEMU was killed by SIGKILL (9)"
        );
        let failed = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(
            qemu_end_reason(failed, "qemu: could not open disk"),
            "QEMU exited with status 1; its log ends: qemu: could not open disk"
        );
        let clean = std::process::ExitStatus::from_raw(0);
        assert_eq!(
            qemu_end_reason(clean, ""),
            "the guest rebooted without reporting"
        );
        // As the run reports it.
        let out = Outcome::NoStatus(qemu_end_reason(killed, "")).describe();
        assert!(!out.contains(": )"), "{out}");
    }

    /// Job output and notes, as a test sees them.
    #[derive(Default)]
    struct Collected {
        stdout: Vec<u8>,
        notes: Vec<String>,
    }

    impl OutputSink for Collected {
        fn stdout(&mut self, data: &[u8]) {
            self.stdout.extend_from_slice(data);
        }
        fn stderr(&mut self, _: &[u8]) {}
        fn note(&mut self, text: &str) {
            self.notes.push(text.to_string());
        }
    }

    fn sh(script: &str) -> Reaped {
        Reaped(Command::new("sh").args(["-c", script]).spawn().unwrap())
    }

    /// How the fake guest runs.
    enum Guest {
        /// Never connects.
        Absent,
        /// Connects and runs to its end before the session starts.
        Before(Box<dyn FnOnce(UnixStream)>),
        /// Connects before the session starts (so it is accepted even if `qemu` has
        /// exited already), then runs on a thread of its own alongside it.
        Alongside(Box<dyn FnOnce(UnixStream) + Send>),
    }

    /// Runs a session against a fake guest; `qemu` stands in for QEMU.
    fn drive_with(
        qemu: Reaped,
        signals: Option<&Receiver<i32>>,
        guest: Guest,
    ) -> (Outcome, Collected) {
        drive_job(qemu, signals, None, READ_TICK, guest)
    }

    /// [`drive_with`], for a job reading `input` as its standard input if given, the
    /// session waiting for the guest `read_tick` at a time.
    fn drive_job(
        mut qemu: Reaped,
        signals: Option<&Receiver<i32>>,
        input: Option<InputFeed>,
        read_tick: Duration,
        guest: Guest,
    ) -> (Outcome, Collected) {
        let stdin = input.is_some();
        let dir = tempfile::tempdir().unwrap();
        let mut plan = ChannelPlan::VirtioSerial {
            socket: dir.path().join("job.sock"),
        };
        let listener = listen(&mut plan).unwrap();
        let connect = || UnixStream::connect(plan.host_socket().unwrap()).unwrap();
        let guest = match guest {
            Guest::Absent => None,
            Guest::Before(g) => {
                g(connect());
                None
            }
            Guest::Alongside(g) => {
                let s = connect();
                Some(std::thread::spawn(move || g(s)))
            }
        };
        let mut sink = Collected::default();
        let qemu_log = dir.path().join("qemu.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut session = Session {
            qmp: None,
            console_bound: crate::console_log::Bound::new(),
            daemon: None,
            qemu: &mut qemu,
            qemu_log: &qemu_log,
            deadline,
            sink: &mut sink,
            signals,
            // stop_signals_to_job as run-in-vm has it: the first stop signal is the job's.
            conv: Conversation::new(
                JobSpec {
                    argv: vec![b"true".to_vec()],
                    stdin,
                    ..JobSpec::default()
                },
                Instant::now(),
                deadline,
                true,
            ),
            input,
            read_tick,
        };
        let outcome = session
            .drive(&listener, &plan, &dir.path().join("console.log"))
            .unwrap();
        drop(listener);
        if let Some(g) = guest {
            g.join().unwrap();
        }
        (outcome, sink)
    }

    /// The fake guest's last steps: the job's end (status 0), the EndAck, then the
    /// VM powers off (its stand-in `qemu_pid` is ended).
    fn end_job_and_power_off(s: &mut UnixStream, qemu_pid: i32) {
        s.write_all(&GuestMsg::End(JobEnd::Exited(0)).encode())
            .unwrap();
        let _ = s.read(&mut [0u8; 64]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(qemu_pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// [`drive_job`] for a job reading `input`, alongside `guest`, which must end it
    /// with status 0; returns what the session passed on.
    fn run_job_to_success(
        qemu: Reaped,
        input: InputFeed,
        read_tick: Duration,
        guest: Box<dyn FnOnce(UnixStream) + Send>,
    ) -> Collected {
        let (outcome, sink) =
            drive_job(qemu, None, Some(input), read_tick, Guest::Alongside(guest));
        assert_eq!(
            outcome,
            Outcome::Finished(JobEnd::Exited(0)),
            "{:?}",
            sink.notes
        );
        sink
    }

    fn hello() -> Vec<u8> {
        GuestMsg::Hello {
            magic: MAGIC,
            version: VERSION,
        }
        .encode()
    }

    #[test]
    fn frames_queued_when_qemu_exits_still_count() {
        // QEMU is gone before the first read, and the guest's output is more than one
        // read takes: the End behind it must still be found.
        let mut qemu = sh("exit 0");
        qemu.0.wait().unwrap();
        let chunks = 24;
        let guest = move |mut s: UnixStream| {
            let mut out = hello();
            for _ in 0..chunks {
                out.extend(GuestMsg::Stdout(vec![b'x'; vm_wire::MAX_CHUNK]).encode());
            }
            out.extend(GuestMsg::End(JobEnd::Exited(3)).encode());
            s.write_all(&out).unwrap();
            // Held open and read, like a guest waiting for its EndAck.
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        };
        let (outcome, sink) = drive_with(qemu, None, Guest::Alongside(Box::new(guest)));
        assert_eq!(outcome, Outcome::Finished(JobEnd::Exited(3)));
        assert_eq!(sink.stdout.len(), chunks * vm_wire::MAX_CHUNK);
    }

    #[test]
    fn guest_cids_are_never_reserved_and_differ_between_vms() {
        for (random, seq) in [(0, 0), (0, 2), (u64::MAX, 255), (u64::MAX, 0), (1 << 40, 7)] {
            let cid = cid_from(random, seq);
            assert!((3..u32::MAX).contains(&cid), "{random:#x} {seq}: {cid}");
        }
        let cids: std::collections::HashSet<u32> = (0..64).map(|_| unique_cid()).collect();
        assert_eq!(cids.len(), 64);
    }

    #[test]
    fn only_our_guests_cid_is_accepted_on_kernel_vsock() {
        let plan = ChannelPlan::VhostKernelVsock { cid: 7, port: 1234 };
        assert!(peer_is_our_guest(&plan, &SockAddr::vsock(7, 999)));
        assert!(!peer_is_our_guest(&plan, &SockAddr::vsock(8, 999)));
        // The host itself (CID 2 or 1) is not our guest either.
        assert!(!peer_is_our_guest(&plan, &SockAddr::vsock(2, 999)));
        assert!(!peer_is_our_guest(&plan, &SockAddr::vsock(1, 999)));
        assert_eq!(
            describe_peer(&SockAddr::vsock(8, 999)),
            "vsock CID 8 port 999"
        );
        let serial = ChannelPlan::VirtioSerial {
            socket: "/t/s".into(),
        };
        assert!(peer_is_our_guest(&serial, &SockAddr::unix("/t/x").unwrap()));
    }

    #[test]
    fn a_bad_frame_is_a_protocol_error_after_the_output_before_it() {
        let qemu = sh("exec sleep 60");
        let guest = |mut s: UnixStream| {
            let mut out = hello();
            out.extend(GuestMsg::Stdout(b"kept".to_vec()).encode());
            // A host message's kind coming from the guest.
            out.extend([1, 0, 0, 0, 0x81]);
            out.extend(GuestMsg::End(JobEnd::Exited(0)).encode());
            s.write_all(&out).unwrap();
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        };
        let started = Instant::now();
        let (outcome, sink) = drive_with(qemu, None, Guest::Alongside(Box::new(guest)));
        let Outcome::ProtocolError(why) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(why.contains("unknown message kind 0x81"), "{why}");
        assert_eq!(outcome.exit_code(), EXIT_VM_FAILED);
        assert!(outcome.describe().starts_with("PROTOCOL ERROR"));
        assert_eq!(sink.stdout, b"kept");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_guest_gone_before_the_job_is_sent_is_a_vm_verdict() {
        // The guest greets and vanishes (crashed): sending the Job fails with EPIPE,
        // which is the VM's failure to report, not an error of the runner.
        let qemu = sh("exec sleep 0.3");
        let guest = |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
        };
        let (outcome, sink) = drive_with(qemu, None, Guest::Before(Box::new(guest)));
        assert!(matches!(outcome, Outcome::NoStatus(_)), "{outcome:?}");
        assert!(
            sink.notes
                .iter()
                .any(|n| n.starts_with("sending to the guest failed")),
            "{:?}",
            sink.notes
        );
    }

    #[test]
    fn a_channel_that_closes_without_an_end_while_the_vm_runs_on_is_a_vm_verdict() {
        // The vsock backend died: the stream ends, QEMU (here: a sleep) does not. Not
        // a wait until the timeout (30 s here).
        let started = Instant::now();
        let qemu = sh("exec sleep 60");
        let guest = |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            let mut job = [0u8; 64];
            let _ = s.read(&mut job);
        };
        let (outcome, _) = drive_with(qemu, None, Guest::Alongside(Box::new(guest)));
        let Outcome::NoStatus(why) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(why.contains("channel closed"), "{why}");
        assert!(started.elapsed() < CHANNEL_LOST_GRACE + Duration::from_secs(5));
    }

    #[test]
    fn kernel_vsock_listeners_get_distinct_ports_from_the_kernel() {
        let mut plans = [
            ChannelPlan::VhostKernelVsock { cid: 3, port: 0 },
            ChannelPlan::VhostKernelVsock { cid: 4, port: 0 },
        ];
        let mut listeners = Vec::new();
        for plan in &mut plans {
            listeners.push(listen(plan).expect("a vsock listener"));
        }
        let ports: Vec<u32> = plans
            .iter()
            .map(|p| match p {
                ChannelPlan::VhostKernelVsock { port, .. } => *port,
                _ => unreachable!(),
            })
            .collect();
        assert!(ports.iter().all(|&p| p != 0 && p != libc::VMADDR_PORT_ANY));
        assert_ne!(ports[0], ports[1]);
        // The guest is told the port that is listened on.
        assert_eq!(plans[0].guest_param(), format!("vsock:{}", ports[0]));
    }

    #[test]
    fn interrupted_and_signalled_runs_map_to_128_plus_n_and_bad_numbers_do_not() {
        // (Which signal ends a run is the conversation's: see conversation.rs's tests.)
        assert_eq!(Outcome::Interrupted(libc::SIGINT).exit_code(), 130);
        assert!(!Outcome::Interrupted(libc::SIGINT).vm_ok());
        assert_eq!(Outcome::Interrupted(libc::SIGPIPE).exit_code(), 141);
        // A job's signal death is 128+N; a number no signal has is the guest's fault.
        assert_eq!(Outcome::Finished(JobEnd::Signaled(9)).exit_code(), 137);
        for bad in [0, 65, 128, -3, i32::MAX] {
            assert_eq!(
                Outcome::Finished(JobEnd::Signaled(bad)).exit_code(),
                EXIT_VM_FAILED
            );
        }
    }

    #[test]
    fn a_stop_signal_during_boot_kills_the_vm() {
        // A VM that never connects (hung at boot) and a Ctrl-C: the run ends now, not
        // at the deadline, and QEMU is killed.
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(libc::SIGINT).unwrap();
        let started = Instant::now();
        let (outcome, _) = drive_with(sh("exec sleep 30"), Some(&rx), Guest::Absent);
        assert_eq!(outcome, Outcome::Interrupted(libc::SIGINT));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_second_stop_signal_kills_a_job_that_ignores_the_first() {
        let (tx, rx) = std::sync::mpsc::channel();
        let guest = move |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            // Reads the Job, then the forwarded signal, ignores it; the user insists.
            let mut frames = FrameBuffer::new();
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the host closed before forwarding the signal");
                frames.push(&buf[..n]);
                while let Some(b) = frames.next_frame().unwrap() {
                    seen.push(HostMsg::decode(&b).unwrap());
                }
                if seen.len() == 1 {
                    tx.send(libc::SIGINT).unwrap();
                }
            }
            assert_eq!(seen[1], HostMsg::Signal(libc::SIGINT));
            tx.send(libc::SIGTERM).unwrap();
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        };
        let (outcome, _) = drive_with(
            sh("exec sleep 30"),
            Some(&rx),
            Guest::Alongside(Box::new(guest)),
        );
        assert_eq!(outcome, Outcome::Interrupted(libc::SIGTERM));
    }

    #[test]
    fn a_silent_stream_after_qemu_exits_is_no_status() {
        // Connected, greeted, then nothing: the drain gives up and the exit decides.
        let mut qemu = sh("exit 0");
        qemu.0.wait().unwrap();
        let started = Instant::now();
        let guest = |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        };
        let (outcome, _) = drive_with(qemu, None, Guest::Alongside(Box::new(guest)));
        assert!(matches!(outcome, Outcome::NoStatus(_)), "{outcome:?}");
        assert!(started.elapsed() < DRAIN_CAP + Duration::from_secs(1));
    }

    #[test]
    fn standard_input_goes_no_further_than_the_window_ahead_of_the_guest() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        for chunk in data.chunks(MAX_CHUNK - 3) {
            tx.send(InputEvent::Data(chunk.to_vec())).unwrap();
        }
        tx.send(InputEvent::End).unwrap();
        let qemu = sh("exec sleep 30");
        let qemu_pid = qemu.0.id() as i32;
        let guest = move |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let (mut frames, mut buf) = (FrameBuffer::new(), vec![0u8; 64 * 1024]);
            let (mut got, mut unacked, mut stalls) = (Vec::new(), 0usize, 0);
            loop {
                match s.read(&mut buf) {
                    Ok(n) => {
                        assert!(n > 0, "the host closed the channel");
                        frames.push(&buf[..n]);
                    }
                    Err(_) => {
                        // The host went quiet with input left: only a full window may
                        // hold it back. Taking all of it makes room again.
                        assert!(unacked > STDIN_WINDOW - MAX_CHUNK, "stalled at {unacked}");
                        stalls += 1;
                        s.write_all(&GuestMsg::StdinTaken(unacked as u32).encode())
                            .unwrap();
                        unacked = 0;
                    }
                }
                while let Some(b) = frames.next_frame().unwrap() {
                    match HostMsg::decode(&b).unwrap() {
                        HostMsg::Job(spec) => assert!(spec.stdin),
                        HostMsg::Stdin(chunk) => {
                            unacked += chunk.len();
                            assert!(unacked <= STDIN_WINDOW, "{unacked} bytes unacknowledged");
                            got.extend(chunk);
                        }
                        HostMsg::StdinEnd => {
                            assert!(
                                got == data,
                                "{} of {} bytes, or out of order",
                                got.len(),
                                data.len()
                            );
                            assert!(stalls >= data.len() / STDIN_WINDOW, "{stalls} stalls");
                            end_job_and_power_off(&mut s, qemu_pid);
                            return;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        };
        run_job_to_success(qemu, InputFeed::new(rx, None), READ_TICK, Box::new(guest));
    }

    #[test]
    fn a_guest_sending_output_while_input_waits_for_it_deadlocks_nobody() {
        // A job that turns a little input into much output (zcat): the guest writes
        // output without reading while a window of input waits for it. A runner that
        // blocked in writing the input would stop reading, and both would wait forever
        // (as long as a socket's send buffer, net.core.wmem_default, is less than the
        // window: 208 KiB by default).
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..STDIN_WINDOW / MAX_CHUNK {
            tx.send(InputEvent::Data(vec![b'i'; MAX_CHUNK])).unwrap();
        }
        tx.send(InputEvent::End).unwrap();
        let output = 8 << 20;
        let qemu = sh("exec sleep 30");
        let qemu_pid = qemu.0.id() as i32;
        let guest = move |mut s: UnixStream| {
            // Stuck for good fails the test rather than hanging it.
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&hello()).unwrap();
            let frame = GuestMsg::Stdout(vec![b'o'; MAX_CHUNK]).encode();
            for _ in 0..output / MAX_CHUNK {
                s.write_all(&frame)
                    .expect("the runner stopped reading the job's output");
            }
            let (mut frames, mut buf) = (FrameBuffer::new(), vec![0u8; 64 * 1024]);
            let mut input = 0;
            'read: loop {
                let n = s.read(&mut buf).expect("the runner sent no end of input");
                assert!(n > 0, "the host closed the channel");
                frames.push(&buf[..n]);
                while let Some(b) = frames.next_frame().unwrap() {
                    match HostMsg::decode(&b).unwrap() {
                        HostMsg::Job(_) => {}
                        HostMsg::Stdin(chunk) => {
                            input += chunk.len();
                            s.write_all(&GuestMsg::StdinTaken(chunk.len() as u32).encode())
                                .unwrap();
                        }
                        HostMsg::StdinEnd => break 'read,
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            assert_eq!(input, STDIN_WINDOW);
            end_job_and_power_off(&mut s, qemu_pid);
        };
        let sink = run_job_to_success(qemu, InputFeed::new(rx, None), READ_TICK, Box::new(guest));
        assert_eq!(sink.stdout.len(), output);
    }

    #[test]
    fn input_goes_out_as_it_arrives_not_at_the_next_read_tick() {
        // The session waits for the guest 2 s at a time here: input announced in the
        // wake pipe must go out at once all the same.
        let tick = Duration::from_secs(2);
        let (tx, rx) = std::sync::mpsc::channel();
        let (wake, announcer) = InputWake::new().unwrap();
        let qemu = sh("exec sleep 30");
        let qemu_pid = qemu.0.id() as i32;
        let guest = move |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            let (mut frames, mut buf) = (FrameBuffer::new(), vec![0u8; 64 * 1024]);
            let mut next_msg = |s: &mut UnixStream| loop {
                if let Some(b) = frames.next_frame().unwrap() {
                    return HostMsg::decode(&b).unwrap();
                }
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the host closed the channel");
                frames.push(&buf[..n]);
            };
            assert!(matches!(next_msg(&mut s), HostMsg::Job(_)));
            for i in 0..5u8 {
                let sent = Instant::now();
                tx.send(InputEvent::Data(vec![i])).unwrap();
                nix::unistd::write(&announcer, &[1]).unwrap();
                assert_eq!(next_msg(&mut s), HostMsg::Stdin(vec![i]));
                assert!(
                    sent.elapsed() < tick / 2,
                    "input {i} waited {:?}",
                    sent.elapsed()
                );
                s.write_all(&GuestMsg::StdinTaken(1).encode()).unwrap();
            }
            tx.send(InputEvent::End).unwrap();
            nix::unistd::write(&announcer, &[1]).unwrap();
            assert_eq!(next_msg(&mut s), HostMsg::StdinEnd);
            end_job_and_power_off(&mut s, qemu_pid);
        };
        run_job_to_success(qemu, InputFeed::new(rx, Some(wake)), tick, Box::new(guest));
    }

    #[test]
    fn a_job_that_closes_its_input_stops_the_feed() {
        // Endless input; the guest takes one chunk, then says the job closed its input.
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let feeder = std::thread::spawn(move || {
            let mut sent = 0usize;
            while tx.send(InputEvent::Data(vec![b'y'; MAX_CHUNK])).is_ok() {
                sent += 1;
            }
            sent
        });
        let qemu = sh("exec sleep 30");
        let qemu_pid = qemu.0.id() as i32;
        let guest = move |mut s: UnixStream| {
            s.write_all(&hello()).unwrap();
            let (mut frames, mut buf) = (FrameBuffer::new(), vec![0u8; 64 * 1024]);
            let mut chunks = 0;
            while chunks == 0 {
                let n = s.read(&mut buf).unwrap();
                frames.push(&buf[..n]);
                while let Some(b) = frames.next_frame().unwrap() {
                    chunks +=
                        usize::from(matches!(HostMsg::decode(&b).unwrap(), HostMsg::Stdin(_)));
                }
            }
            s.write_all(&GuestMsg::StdinClosed.encode()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            end_job_and_power_off(&mut s, qemu_pid);
        };
        run_job_to_success(qemu, InputFeed::new(rx, None), READ_TICK, Box::new(guest));
        // The session dropped its end: the feeder stopped, after at most a window and
        // the channel's few chunks.
        let sent = feeder.join().unwrap();
        assert!(sent <= STDIN_WINDOW / MAX_CHUNK + 8, "{sent} chunks read");
    }
}
