//! The guest end of the job channel: AF_VSOCK to the host, or a virtio-serial port.
//!
//! Which one is named on the kernel command line by the host runner:
//! `vmjob.channel=vsock:PORT` or `vmjob.channel=virtio-serial:NAME`.

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use vm_wire::{GuestMsg, HostMsg, Inbox, JobEnd, JobSpec, MAGIC, VERSION};

/// The host's vsock CID.
const HOST_CID: u32 = 2;
/// A host that takes no bytes (or sends no end acknowledgement) for this long gets a
/// note on the console, once; the guest keeps waiting. A host whose stdout is piped into
/// a reader that pauses (`| less`) or that was suspended (Ctrl-Z) stops reading for as
/// long as it likes, and giving up would lose the rest of the output and the job's
/// status. A host that is gone takes the VM with it (QEMU dies with the runner), and the
/// runner's `--timeout` bounds the rest.
const HOST_SILENT_NOTE: Duration = Duration::from_secs(60);

/// A connected, framed channel to the host.
pub struct Channel {
    stream: File,
    inbox: Inbox<HostMsg>,
    /// Set once a write fails: later sends are dropped instead of retried forever.
    broken: bool,
    /// A frame is partly written. A panic caught now would leave the host a torn frame,
    /// so nothing more may be sent after it.
    mid_frame: bool,
    /// The End frame went out: a later failure must not send a second one.
    ended: bool,
    /// The console already says the host went silent (see `note_host_silence`).
    noted_silence: bool,
    /// Set once the host side closed or failed: stop polling it.
    pub closed: bool,
    /// Messages that came in the same read as the job (a Ctrl-C during boot is sent
    /// right behind it), for the job loop to act on once the job runs.
    after_job: Vec<HostMsg>,
}

impl Channel {
    /// Connects over the channel named by `vmjob.channel=` in /proc/cmdline and greets the host.
    pub fn connect_from_cmdline() -> Result<Self, String> {
        let spec = crate::cmdline::value("vmjob.channel")?
            .ok_or("no vmjob.channel= on the kernel command line")?;
        let spec = spec.as_str();
        let stream = match spec.split_once(':') {
            Some(("vsock", port)) => {
                let port: u32 = port
                    .parse()
                    .map_err(|_| format!("bad vsock port in vmjob.channel={spec}"))?;
                connect_vsock(port)?
            }
            Some(("virtio-serial", name)) => open_virtio_port(name)?,
            _ => return Err(format!("unknown channel vmjob.channel={spec}")),
        };
        let mut chan = Channel {
            stream,
            inbox: Inbox::new(),
            broken: false,
            mid_frame: false,
            ended: false,
            noted_silence: false,
            closed: false,
            after_job: Vec::new(),
        };
        chan.send(&GuestMsg::Hello {
            magic: MAGIC,
            version: VERSION,
        });
        if chan.broken {
            return Err("the host did not accept the greeting".into());
        }
        Ok(chan)
    }

    /// Sends one message; a failure is logged once and the channel marked broken.
    pub fn send(&mut self, msg: &GuestMsg) {
        if self.broken || self.ended {
            return;
        }
        self.mid_frame = true;
        let sent = self.write_all_waiting(&msg.encode());
        self.mid_frame = false;
        if let Err(e) = sent {
            crate::console::log(&format!("init: lost the host channel: {e}"));
            self.broken = true;
        }
        if matches!(msg, GuestMsg::End(_)) {
            self.ended = true;
        }
    }

    /// Ends the conversation after PID 1 caught a panic: sends an End frame saying so
    /// (unless one went out already) and waits for the host's acknowledgement.
    pub fn end_after_panic(&mut self, message: &str) {
        if self.mid_frame {
            // The panic hit inside a write: the host already has a torn frame and
            // would take whatever follows for its remainder.
            self.broken = true;
        }
        self.send(&GuestMsg::End(JobEnd::InitPanicked(message.to_owned())));
        self.wait_end_ack();
    }

    /// `write_all` for a non-blocking descriptor: waits for room instead of failing.
    fn write_all_waiting(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        use std::io::ErrorKind;
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    use crate::fdwait::Writable;
                    match crate::fdwait::wait_writable(self.stream.as_fd(), HOST_SILENT_NOTE) {
                        Writable::Ready => {}
                        // Without this the loop would spin on a dead channel.
                        Writable::HungUp => {
                            return Err(std::io::Error::new(
                                ErrorKind::BrokenPipe,
                                "the host end hung up",
                            ))
                        }
                        Writable::TimedOut => self.note_host_silence("read nothing"),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Says on the console, once per boot, that the host has `done` nothing for
    /// [`HOST_SILENT_NOTE`] and the guest keeps waiting.
    fn note_host_silence(&mut self, done: &str) {
        if !self.noted_silence {
            self.noted_silence = true;
            crate::console::log(&format!(
                "init: the host {done} for {}s; still waiting",
                HOST_SILENT_NOTE.as_secs()
            ));
        }
    }

    /// Waits for the host to acknowledge the job's end, so that powering off cannot
    /// overtake frames still in the transport (see `HOST_SILENT_NOTE` for why there is
    /// no time limit).
    pub fn wait_end_ack(&mut self) {
        while !self.closed && !self.broken {
            let got = self.read_messages();
            if got.msgs.contains(&HostMsg::EndAck) || got.fault.is_some() {
                return;
            }
            if !crate::fdwait::wait_readable(self.fd(), HOST_SILENT_NOTE) {
                self.note_host_silence("sent no end acknowledgement");
            }
        }
    }

    /// The descriptor to poll for host messages.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Blocks until the host's job arrives (as long as it takes: see `HOST_SILENT_NOTE`;
    /// a host suspended during the boot sends it when it resumes).
    pub fn receive_job(&mut self) -> Result<JobSpec, String> {
        loop {
            let got = self.read_messages();
            let mut msgs = got.msgs.into_iter();
            while let Some(msg) = msgs.next() {
                match msg {
                    HostMsg::Job(spec) => {
                        self.after_job.extend(msgs);
                        return Ok(spec);
                    }
                    other => {
                        crate::console::log(&format!("init: {other:?} before the job; ignored"))
                    }
                }
            }
            if let Some(fault) = got.fault {
                return Err(fault);
            }
            if self.closed {
                return Err("the host closed the channel before sending a job".into());
            }
            if !crate::fdwait::wait_readable(self.fd(), HOST_SILENT_NOTE) {
                self.note_host_silence("sent no job");
            }
        }
    }

    /// The messages that arrived together with the job, once.
    pub fn take_after_job(&mut self) -> Vec<HostMsg> {
        std::mem::take(&mut self.after_job)
    }

    /// Reads what is available (one read) and returns the complete messages in it,
    /// and the fault that ended the channel if it just broke. A malformed frame is
    /// reported on the console and to the host (as a log line), after every message
    /// that came before it.
    pub fn read_messages(&mut self) -> Received {
        let mut got = Received::default();
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => self.closed = true,
            Ok(n) => self.inbox.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                self.closed = true;
                got.fault = Some(format!("reading from the host: {e}"));
            }
        }
        while let Some(decoded) = self.inbox.next_msg() {
            match decoded {
                Ok(msg) => got.msgs.push(msg),
                Err(e) => {
                    // Frame boundaries are lost: nothing after this can be read (an
                    // EndAck included), so stop polling instead of failing on every read.
                    self.closed = true;
                    got.fault = Some(format!("protocol error from the host: {e}"));
                }
            }
        }
        if let Some(fault) = &got.fault {
            crate::console::log(&format!("init: {fault}"));
            self.send(&GuestMsg::Log(fault.clone()));
        }
        got
    }
}

/// What one read from the host brought.
#[derive(Debug, Default)]
pub struct Received {
    /// The complete messages, in the order sent.
    pub msgs: Vec<HostMsg>,
    /// Why the host channel cannot be read any more, if it broke in this read.
    pub fault: Option<String>,
}

fn connect_vsock(port: u32) -> Result<File, String> {
    // The host listens before QEMU starts, but the transport may come up a moment late.
    let mut last = String::new();
    for _ in 0..5 {
        let sock = socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("vsock socket: {e}"))?;
        match connect(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &VsockAddr::new(HOST_CID, port),
        ) {
            Ok(()) => {
                set_nonblocking(sock.as_fd())?;
                return Ok(File::from(sock));
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("vsock connect to {HOST_CID}:{port}: {last}"))
}

fn open_virtio_port(name: &str) -> Result<File, String> {
    let ports =
        std::fs::read_dir("/sys/class/virtio-ports").map_err(|e| format!("virtio-ports: {e}"))?;
    for port in ports.flatten() {
        let Ok(found) = std::fs::read_to_string(port.path().join("name")) else {
            continue;
        };
        if found.trim_end() == name {
            let dev = std::path::Path::new("/dev").join(port.file_name());
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dev)
                .map_err(|e| format!("open {}: {e}", dev.display()))?;
            set_nonblocking(file.as_fd())?;
            return Ok(file);
        }
    }
    Err(format!("no virtio-serial port named {name:?}"))
}

/// Reads never block (the poll loop decides when to read); writes wait for room.
fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), String> {
    crate::fdwait::set_nonblocking(fd).map_err(|e| format!("O_NONBLOCK: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A channel whose host end is the returned socket.
    fn channel_pair() -> (Channel, UnixStream) {
        let (guest, host) = UnixStream::pair().unwrap();
        guest.set_nonblocking(true).unwrap();
        let chan = Channel {
            stream: File::from(std::os::fd::OwnedFd::from(guest)),
            inbox: Inbox::new(),
            broken: false,
            mid_frame: false,
            ended: false,
            noted_silence: false,
            closed: false,
            after_job: Vec::new(),
        };
        (chan, host)
    }

    #[test]
    fn a_signal_sent_right_behind_the_job_is_kept_for_the_job() {
        let (mut chan, mut host) = channel_pair();
        let spec = JobSpec {
            argv: vec![b"true".to_vec()],
            ..JobSpec::default()
        };
        // One write, so that both frames arrive in the same read.
        let mut both = HostMsg::Job(spec.clone()).encode();
        both.extend(HostMsg::Signal(2).encode());
        host.write_all(&both).unwrap();
        assert_eq!(chan.receive_job(), Ok(spec));
        assert_eq!(chan.take_after_job(), vec![HostMsg::Signal(2)]);
        assert!(chan.take_after_job().is_empty());
    }

    #[test]
    fn messages_before_a_bad_frame_are_kept_and_the_host_is_told() {
        let (mut chan, mut host) = channel_pair();
        let mut stream = HostMsg::Signal(15).encode();
        stream.extend(HostMsg::Signal(2).encode());
        // Kind 0x05 is a guest message: the host never sends it.
        stream.extend([1, 0, 0, 0, 0x05]);
        host.write_all(&stream).unwrap();
        let got = chan.read_messages();
        assert_eq!(got.msgs, vec![HostMsg::Signal(15), HostMsg::Signal(2)]);
        let fault = got.fault.expect("a fault");
        assert!(fault.contains("protocol error"), "{fault}");
        assert!(chan.closed);
        // The host hears why, as a log frame.
        let mut inbox = Inbox::<GuestMsg>::new();
        let mut buf = [0u8; 4096];
        let n = std::io::Read::read(&mut host, &mut buf).unwrap();
        inbox.push(&buf[..n]);
        assert_eq!(inbox.next_msg(), Some(Ok(GuestMsg::Log(fault))));
    }

    #[test]
    fn a_panic_report_is_one_end_frame_and_never_a_second() {
        let (mut chan, mut host) = channel_pair();
        host.write_all(&HostMsg::EndAck.encode()).unwrap();
        chan.end_after_panic("boom");
        chan.send(&GuestMsg::End(JobEnd::Exited(0)));
        drop(chan);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut host, &mut bytes).unwrap();
        let mut inbox = Inbox::<GuestMsg>::new();
        inbox.push(&bytes);
        assert_eq!(
            inbox.next_msg(),
            Some(Ok(GuestMsg::End(JobEnd::InitPanicked("boom".into()))))
        );
        assert_eq!(inbox.next_msg(), None);
    }

    #[test]
    fn a_panic_inside_a_write_sends_nothing_more() {
        let (mut chan, host) = channel_pair();
        chan.mid_frame = true;
        chan.end_after_panic("boom");
        drop(chan);
        host.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(std::io::Read::read(&mut &host, &mut buf).unwrap(), 0);
    }
}
