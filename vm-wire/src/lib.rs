//! The wire protocol between `host-runner` (host) and `init` (PID 1 in the guest).
//!
//! It is the only thing the two sides share. Transport is any reliable byte stream
//! (AF_VSOCK, virtio-serial); nothing relies on end-of-stream crossing it, so every
//! message is a self-delimiting frame:
//!
//! ```text
//! frame   = len:u32le  kind:u8  payload[len - 1]
//! bytes   = n:u32le  byte[n]
//! list<T> = n:u32le  T[n]
//! ```
//!
//! The guest speaks first with [`GuestMsg::Hello`] carrying [`MAGIC`] and [`VERSION`];
//! the host answers with one [`HostMsg::Job`], then may send [`HostMsg::Signal`] at any
//! time. The guest streams [`GuestMsg::Stdout`] / [`GuestMsg::Stderr`] chunks as they are
//! produced and ends with exactly one [`GuestMsg::End`], which the host acknowledges with
//! [`HostMsg::EndAck`] before the guest powers off.
//!
//! A job with [`JobSpec::stdin`] set reads what the host sends as [`HostMsg::Stdin`]
//! chunks, then end-of-file after [`HostMsg::StdinEnd`]. The host keeps at most
//! [`STDIN_WINDOW`] bytes unacknowledged: the guest answers each byte it passed on to
//! the job with [`GuestMsg::StdinTaken`], so a job that reads slowly (or never) holds the
//! host back instead of filling the guest's memory. [`GuestMsg::StdinClosed`] says the
//! job closed its standard input: the host stops sending.
//!
//! A job with [`JobSpec::tty`] set runs on a pseudo-terminal in the guest: its standard
//! input, output and error are the terminal, so everything it writes arrives as
//! [`GuestMsg::Stdout`], and [`HostMsg::Resize`] changes the terminal's size.
//!
//! Decoding never trusts a length: frames above [`MAX_FRAME`] are refused, every field
//! read is bounds-checked, and trailing bytes inside a frame are an error.

#![forbid(unsafe_code)]

use std::fmt;

/// Identifies this protocol in the guest's greeting ("VMJB").
pub const MAGIC: u32 = 0x564d_4a42;
/// Bumped on every incompatible change of the encoding below.
pub const VERSION: u32 = 5;
/// Largest accepted frame body (kind byte + payload), in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest output chunk a sender should put in one frame.
///
/// Kept well below 64 KiB: vhost-device-vsock 0.3.0 (64 KiB TX buffer) stalled the
/// guest's transmit path for good once a single write of 64 KiB + header arrived, while
/// 16 KiB frames carried megabytes at full speed (measured here, see README).
pub const MAX_CHUNK: usize = 16 * 1024;
/// Most bytes of standard input the host may have sent that the guest has not yet
/// acknowledged with [`GuestMsg::StdinTaken`].
pub const STDIN_WINDOW: usize = 256 * 1024;

/// Why a byte sequence is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame announces a body larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// A frame with an empty body (no kind byte).
    #[error("empty frame")]
    Empty,
    /// The kind byte names no message this side accepts.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// A field runs past the end of its frame.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left over after the last field of a message.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
    /// A text field is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A field has a value outside its domain.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A disk the guest mounts before running the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskMount {
    /// virtio-blk serial the host gave the disk; the guest finds it in /sys/block/*/serial.
    pub serial: String,
    /// Absolute mount point in the guest (created if missing).
    pub target: Vec<u8>,
    /// Filesystem type given to mount(2): `ext2`, `ext3` or `ext4` (all served by the
    /// ext4 driver in the guest kernel).
    pub fstype: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A host directory the guest mounts over virtio-9p before running the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMount {
    /// The 9p mount tag QEMU gave the directory (at most 31 bytes).
    pub tag: String,
    /// Absolute mount point in the guest (created if missing).
    pub target: Vec<u8>,
    /// Mount read-only.
    pub read_only: bool,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSpec {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<Vec<u8>>,
    /// The complete environment of the job.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Working directory of the job.
    pub cwd: Vec<u8>,
    /// Disks to mount before the job starts.
    pub disks: Vec<DiskMount>,
    /// The job's standard input is what the host sends ([`HostMsg::Stdin`]); otherwise
    /// it is /dev/null.
    pub stdin: bool,
    /// Host directories to mount before the job starts.
    pub shares: Vec<ShareMount>,
    /// Run the job on a pseudo-terminal of this size, as the controlling terminal of its
    /// session (standard input, output and error all on it; implies [`JobSpec::stdin`]).
    pub tty: Option<WinSize>,
}

/// Messages from the host to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMsg {
    /// The job to run; sent once, after the guest's greeting.
    Job(JobSpec),
    /// Deliver this signal number to the job's process group.
    Signal(i32),
    /// The host has received [`GuestMsg::End`]; the guest may power off. Waiting for it
    /// keeps a fast reboot from racing the last frames out of the transport.
    EndAck,
    /// A chunk of the job's standard input (not empty).
    Stdin(Vec<u8>),
    /// The job's standard input ends after the chunks sent so far. On a terminal
    /// ([`JobSpec::tty`]) this is the end-of-file character, as typing Ctrl-D would be.
    StdinEnd,
    /// The host's terminal changed size: resize the job's terminal (the kernel sends
    /// its foreground process group SIGWINCH). Ignored for a job without a terminal.
    Resize(WinSize),
}

/// How the job ended, as seen by PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// The job exited with this status.
    Exited(i32),
    /// The job was killed by this signal.
    Signaled(i32),
    /// The job could not be started; `status` is 127 (not found) or 126 (not executable).
    SpawnFailed {
        /// Shell-convention exit status for the failure.
        status: u8,
        /// Human-readable reason.
        message: String,
    },
    /// PID 1 failed before the job could run (mount, bad job, ...).
    SetupFailed(String),
    /// PID 1 hit a bug (a panic it caught) while setting up or supervising the job; the
    /// job's own status, if it had one, is unknown. Carries the panic message.
    InitPanicked(String),
}

/// Messages from the guest to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMsg {
    /// First message on a new channel.
    Hello {
        /// Must equal [`MAGIC`].
        magic: u32,
        /// Protocol version the guest speaks.
        version: u32,
    },
    /// A chunk of the job's standard output.
    Stdout(Vec<u8>),
    /// A chunk of the job's standard error.
    Stderr(Vec<u8>),
    /// A diagnostic from PID 1 itself (not job output).
    Log(String),
    /// This many more bytes of standard input were passed on to the job (or dropped
    /// because it closed its standard input): room for the host to send more.
    StdinTaken(u32),
    /// The job closed its standard input (or it could not be set up): send no more.
    StdinClosed,
    /// The job is over; the guest powers off next.
    End(JobEnd),
}

mod kind {
    pub const HELLO: u8 = 0x01;
    pub const STDOUT: u8 = 0x02;
    pub const STDERR: u8 = 0x03;
    pub const LOG: u8 = 0x04;
    pub const END: u8 = 0x05;
    pub const STDIN_TAKEN: u8 = 0x06;
    pub const STDIN_CLOSED: u8 = 0x07;
    pub const JOB: u8 = 0x81;
    pub const SIGNAL: u8 = 0x82;
    pub const END_ACK: u8 = 0x83;
    pub const STDIN: u8 = 0x84;
    pub const STDIN_END: u8 = 0x85;
    pub const RESIZE: u8 = 0x86;
}

mod end_kind {
    pub const EXITED: u8 = 0;
    pub const SIGNALED: u8 = 1;
    pub const SPAWN_FAILED: u8 = 2;
    pub const SETUP_FAILED: u8 = 3;
    pub const INIT_PANICKED: u8 = 4;
}

/// Appends frames to a byte buffer.
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn new(kind: u8) -> Self {
        // Length placeholder, patched in `finish`.
        let mut buf = vec![0; 4];
        buf.push(kind);
        Self { buf }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn win_size(&mut self, w: WinSize) {
        self.u16(w.rows);
        self.u16(w.cols);
    }
    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(len_u32(v.len()));
        self.buf.extend_from_slice(v);
    }
    fn finish(mut self) -> Vec<u8> {
        let body = len_u32(self.buf.len() - 4);
        self.buf[..4].copy_from_slice(&body.to_le_bytes());
        self.buf
    }
}

fn len_u32(n: usize) -> u32 {
    // Encoders only ever see in-memory values far below 4 GiB; saturate rather than wrap
    // so an absurd value is refused by the peer's MAX_FRAME check instead of misparsed.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads fields from one frame body.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn win_size(&mut self) -> Result<WinSize, WireError> {
        Ok(WinSize {
            rows: self.u16("terminal rows")?,
            cols: self.u16("terminal columns")?,
        })
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid(what)),
        }
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn string(&mut self, what: &'static str) -> Result<String, WireError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| WireError::Utf8(what))
    }
    /// Reads a list count, refusing counts that could not fit in the remaining bytes
    /// (each element takes at least `min_elem` bytes) so no huge allocation happens.
    fn count(&mut self, what: &'static str, min_elem: usize) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_elem) > self.rest.len() {
            return Err(WireError::Truncated(what));
        }
        Ok(n)
    }
    fn end(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }
}

impl HostMsg {
    /// Encodes the message as one complete frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            HostMsg::Job(job) => {
                let mut e = Encoder::new(kind::JOB);
                e.u32(len_u32(job.argv.len()));
                for arg in &job.argv {
                    e.bytes(arg);
                }
                e.u32(len_u32(job.env.len()));
                for (k, v) in &job.env {
                    e.bytes(k);
                    e.bytes(v);
                }
                e.bytes(&job.cwd);
                e.u32(len_u32(job.disks.len()));
                for d in &job.disks {
                    e.bytes(d.serial.as_bytes());
                    e.bytes(&d.target);
                    e.bytes(d.fstype.as_bytes());
                    e.u8(u8::from(d.read_only));
                }
                e.u8(u8::from(job.stdin));
                e.u32(len_u32(job.shares.len()));
                for s in &job.shares {
                    e.bytes(s.tag.as_bytes());
                    e.bytes(&s.target);
                    e.u8(u8::from(s.read_only));
                }
                match job.tty {
                    None => e.u8(0),
                    Some(w) => {
                        e.u8(1);
                        e.win_size(w);
                    }
                }
                e.finish()
            }
            HostMsg::Signal(sig) => {
                let mut e = Encoder::new(kind::SIGNAL);
                e.i32(*sig);
                e.finish()
            }
            HostMsg::EndAck => Encoder::new(kind::END_ACK).finish(),
            HostMsg::Stdin(data) => raw_frame(kind::STDIN, data),
            HostMsg::StdinEnd => Encoder::new(kind::STDIN_END).finish(),
            HostMsg::Resize(w) => {
                let mut e = Encoder::new(kind::RESIZE);
                e.win_size(*w);
                e.finish()
            }
        }
    }

    /// Decodes one frame body (kind byte and payload, without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let (&k, payload) = body.split_first().ok_or(WireError::Empty)?;
        let mut f = Fields { rest: payload };
        let msg = match k {
            kind::JOB => {
                let argc = f.count("argv", 4)?;
                let argv = (0..argc)
                    .map(|_| f.bytes("argv"))
                    .collect::<Result<Vec<_>, _>>()?;
                if argv.is_empty() {
                    return Err(WireError::Invalid("empty argv"));
                }
                let envc = f.count("env", 8)?;
                let env = (0..envc)
                    .map(|_| Ok((f.bytes("env key")?, f.bytes("env value")?)))
                    .collect::<Result<Vec<_>, WireError>>()?;
                let cwd = f.bytes("cwd")?;
                let diskc = f.count("disks", 13)?;
                let disks = (0..diskc)
                    .map(|_| {
                        let serial = f.string("disk serial")?;
                        let target = f.bytes("disk target")?;
                        let fstype = f.string("disk fstype")?;
                        let read_only = f.flag("disk flags")?;
                        Ok(DiskMount {
                            serial,
                            target,
                            fstype,
                            read_only,
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                let stdin = f.flag("stdin flag")?;
                let sharec = f.count("shares", 9)?;
                let shares = (0..sharec)
                    .map(|_| {
                        Ok(ShareMount {
                            tag: f.string("share tag")?,
                            target: f.bytes("share target")?,
                            read_only: f.flag("share flags")?,
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                let tty = match f.flag("tty flag")? {
                    false => None,
                    true => Some(f.win_size()?),
                };
                HostMsg::Job(JobSpec {
                    argv,
                    env,
                    cwd,
                    disks,
                    stdin,
                    shares,
                    tty,
                })
            }
            kind::SIGNAL => HostMsg::Signal(f.i32("signal")?),
            kind::END_ACK => HostMsg::EndAck,
            // Like output chunks: the whole payload, never empty.
            kind::STDIN if payload.is_empty() => {
                return Err(WireError::Invalid("empty stdin chunk"))
            }
            kind::STDIN => return Ok(HostMsg::Stdin(payload.to_vec())),
            kind::STDIN_END => HostMsg::StdinEnd,
            kind::RESIZE => HostMsg::Resize(f.win_size()?),
            other => return Err(WireError::UnknownKind(other)),
        };
        f.end()?;
        Ok(msg)
    }
}

impl GuestMsg {
    /// Encodes the message as one complete frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            GuestMsg::Hello { magic, version } => {
                let mut e = Encoder::new(kind::HELLO);
                e.u32(*magic);
                e.u32(*version);
                e.finish()
            }
            GuestMsg::Stdout(data) => raw_frame(kind::STDOUT, data),
            GuestMsg::Stderr(data) => raw_frame(kind::STDERR, data),
            GuestMsg::Log(text) => raw_frame(kind::LOG, text.as_bytes()),
            GuestMsg::StdinTaken(n) => {
                let mut e = Encoder::new(kind::STDIN_TAKEN);
                e.u32(*n);
                e.finish()
            }
            GuestMsg::StdinClosed => Encoder::new(kind::STDIN_CLOSED).finish(),
            GuestMsg::End(end) => {
                let mut e = Encoder::new(kind::END);
                match end {
                    JobEnd::Exited(code) => {
                        e.u8(end_kind::EXITED);
                        e.i32(*code);
                    }
                    JobEnd::Signaled(sig) => {
                        e.u8(end_kind::SIGNALED);
                        e.i32(*sig);
                    }
                    JobEnd::SpawnFailed { status, message } => {
                        e.u8(end_kind::SPAWN_FAILED);
                        e.u8(*status);
                        e.bytes(message.as_bytes());
                    }
                    JobEnd::SetupFailed(message) => {
                        e.u8(end_kind::SETUP_FAILED);
                        e.bytes(message.as_bytes());
                    }
                    JobEnd::InitPanicked(message) => {
                        e.u8(end_kind::INIT_PANICKED);
                        e.bytes(message.as_bytes());
                    }
                }
                e.finish()
            }
        }
    }

    /// Decodes one frame body (kind byte and payload, without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let (&k, payload) = body.split_first().ok_or(WireError::Empty)?;
        let mut f = Fields { rest: payload };
        let msg = match k {
            kind::HELLO => GuestMsg::Hello {
                magic: f.u32("magic")?,
                version: f.u32("version")?,
            },
            // Output chunks are the whole payload: no inner length to disagree with.
            kind::STDOUT => return Ok(GuestMsg::Stdout(payload.to_vec())),
            kind::STDERR => return Ok(GuestMsg::Stderr(payload.to_vec())),
            kind::LOG => {
                let text =
                    String::from_utf8(payload.to_vec()).map_err(|_| WireError::Utf8("log"))?;
                return Ok(GuestMsg::Log(text));
            }
            kind::STDIN_TAKEN => GuestMsg::StdinTaken(f.u32("stdin taken")?),
            kind::STDIN_CLOSED => GuestMsg::StdinClosed,
            kind::END => GuestMsg::End(match f.u8("end kind")? {
                end_kind::EXITED => JobEnd::Exited(f.i32("exit status")?),
                end_kind::SIGNALED => JobEnd::Signaled(f.i32("signal")?),
                end_kind::SPAWN_FAILED => JobEnd::SpawnFailed {
                    status: f.u8("spawn status")?,
                    message: f.string("spawn message")?,
                },
                end_kind::SETUP_FAILED => JobEnd::SetupFailed(f.string("setup message")?),
                end_kind::INIT_PANICKED => JobEnd::InitPanicked(f.string("panic message")?),
                _ => return Err(WireError::Invalid("end kind")),
            }),
            other => return Err(WireError::UnknownKind(other)),
        };
        f.end()?;
        Ok(msg)
    }
}

fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(kind);
    e.buf.extend_from_slice(payload);
    e.finish()
}

/// Splits a byte stream into frame bodies.
///
/// Feed it whatever the transport delivered with [`FrameBuffer::push`]; take complete
/// frame bodies with [`FrameBuffer::next_frame`]. Partial frames wait for more bytes.
#[derive(Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
}

impl FrameBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete frame body, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is out of sync and must be abandoned.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let body = avail[4..4 + len].to_vec();
        self.start += 4 + len;
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }

    /// Number of buffered bytes not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// A message type one side of the channel decodes.
pub trait Decode: Sized {
    /// Decodes one frame body (kind byte and payload, without the length prefix).
    fn decode_frame(body: &[u8]) -> Result<Self, WireError>;
}

impl Decode for HostMsg {
    fn decode_frame(body: &[u8]) -> Result<Self, WireError> {
        HostMsg::decode(body)
    }
}

impl Decode for GuestMsg {
    fn decode_frame(body: &[u8]) -> Result<Self, WireError> {
        GuestMsg::decode(body)
    }
}

/// The receiving end of a stream of `M`: bytes in, messages out, in order.
///
/// Every message that arrived complete before a malformed or oversized frame is
/// delivered first; then the error, once; then nothing more, because frame boundaries
/// after a bad frame cannot be trusted (a length that lies would make the rest of the
/// stream garbage that happens to parse).
pub struct Inbox<M> {
    frames: FrameBuffer,
    failed: bool,
    _msg: std::marker::PhantomData<fn() -> M>,
}

impl<M> Default for Inbox<M> {
    fn default() -> Self {
        Self {
            frames: FrameBuffer::new(),
            failed: false,
            _msg: std::marker::PhantomData,
        }
    }
}

impl<M: Decode> Inbox<M> {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes (dropped once the stream has failed).
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.frames.push(data);
        }
    }

    /// The next complete message, the stream's error (once), or `None` when more bytes
    /// are needed or the stream has failed.
    pub fn next_msg(&mut self) -> Option<Result<M, WireError>> {
        if self.failed {
            return None;
        }
        let decoded = match self.frames.next_frame() {
            Ok(None) => return None,
            Ok(Some(body)) => M::decode_frame(&body),
            Err(e) => Err(e),
        };
        if decoded.is_err() {
            self.failed = true;
        }
        Some(decoded)
    }

    /// True once an error was returned: the stream is abandoned.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Bytes received but not yet returned as messages.
    pub fn pending(&self) -> usize {
        self.frames.pending()
    }
}

impl fmt::Display for JobEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobEnd::Exited(code) => write!(f, "exited with status {code}"),
            JobEnd::Signaled(sig) => write!(f, "killed by signal {sig}"),
            JobEnd::SpawnFailed { message, .. } => write!(f, "could not start: {message}"),
            JobEnd::SetupFailed(message) => write!(f, "guest setup failed: {message}"),
            JobEnd::InitPanicked(message) => write!(f, "guest init panicked: {message}"),
        }
    }
}

#[cfg(test)]
mod tests;
