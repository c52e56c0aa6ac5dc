//! The open directory and its read state machine.

use crate::entry::DirEntry;
use crate::error::{from_res, op_error};
use crate::fallback;
use crate::name::Name;
use crate::ops::{self, InFlight};
use futures_core::Stream;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use uring_getdents::{getdents64, DirFd, DirentIter, Getdents};

/// The buffer size [`Dir::open`] uses: 32 KiB, the size glibc's readdir uses.
pub const DEFAULT_BUFFER_SIZE: usize = 32 * 1024;

/// The smallest buffer accepted; smaller requests are raised to it. The largest record
/// (a 255-byte name) takes 280 bytes, and getdents fails with EINVAL when not even one
/// record fits.
pub const MIN_BUFFER_SIZE: usize = 512;

/// The largest buffer accepted; larger requests are lowered to it. 16 MiB hold some
/// 500 000 entries, beyond which one read saves nothing measurable.
pub const MAX_BUFFER_SIZE: usize = 16 << 20;

/// How entries are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// IORING_OP_GETDENTS on the runtime's ring.
    Uring,
    /// getdents64(2) on tokio's blocking pool, so a cold directory does not stall the
    /// other tasks of the runtime thread.
    Fallback,
    /// getdents64(2) inline on the runtime thread (see [`DirOptions::inline_fallback`]).
    FallbackInline,
    /// getdents64(2) at submission time, its result delivered by a NOP completion, so
    /// the in-flight states run on kernels without the op (tests only).
    Emulated,
}

/// Options for opening a [`Dir`].
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use tokio_uring_dir::DirOptions;
/// let dir = DirOptions::new()
///     .buffer_size(4096)
///     .force_fallback(true)
///     .open("/tmp")
///     .await?;
/// assert!(!dir.uses_io_uring());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DirOptions {
    buffer_size: usize,
    read_ahead: bool,
    force_fallback: bool,
    inline_fallback: bool,
    emulate: bool,
}

impl Default for DirOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DirOptions {
    /// The defaults: a [`DEFAULT_BUFFER_SIZE`] buffer, IORING_OP_GETDENTS when the kernel
    /// has it.
    pub fn new() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
            read_ahead: true,
            force_fallback: false,
            inline_fallback: false,
            emulate: false,
        }
    }

    /// Size of the reusable entry buffer, clamped to
    /// [`MIN_BUFFER_SIZE`]`..=`[`MAX_BUFFER_SIZE`]. Bigger buffers mean fewer reads.
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = size;
        self
    }

    /// With IORING_OP_GETDENTS, start reading the next buffer as soon as one arrives,
    /// so that it is on its way (submitted with whatever else the runtime queues when it
    /// next waits) while the caller works through the entries. On by default; it costs a
    /// second buffer, and no extra request: a directory that fits one buffer needs the
    /// read that finds its end anyway. Without the op it does nothing (the fallback on
    /// the blocking pool already reads up to half a buffer more per hop).
    pub fn read_ahead(mut self, read_ahead: bool) -> Self {
        self.read_ahead = read_ahead;
        self
    }

    /// Always read with getdents64(2), even when the kernel has IORING_OP_GETDENTS
    /// (for comparisons and benchmarks).
    pub fn force_fallback(mut self, force: bool) -> Self {
        self.force_fallback = force;
        self
    }

    /// On the getdents64(2) fallback, call it inline on the runtime thread instead of on
    /// tokio's blocking pool. Each refill then blocks the thread (and every task on it)
    /// for one system call, which on a cold directory means disk reads; in exchange a
    /// warm refill skips the hand-off to a pool thread and back. Off by default.
    pub fn inline_fallback(mut self, inline: bool) -> Self {
        self.inline_fallback = inline;
        self
    }

    /// Testing aid: on the fallback path, read with getdents64(2) at submission time but
    /// deliver the result through a NOP on the ring, so that the in-flight states
    /// (cancellation, drop, close while a read is pending) can be exercised on kernels
    /// without the op. Ignored when the real op is used.
    #[doc(hidden)]
    pub fn emulate_in_flight(mut self, emulate: bool) -> Self {
        self.emulate = emulate;
        self
    }

    /// Opens `path` with these options; see [`Dir::open`].
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<Dir> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let fd = ops::open_dir(&path)
            .map_err(|e| op_error("open", &path, e))?
            .await
            .map_err(|e| op_error("open", &path, e))?;
        self.wrap_fd(fd, path)
    }

    /// How this process reads with these options.
    fn mode(&self) -> Mode {
        if !self.force_fallback && uring_getdents::detect().is_available() {
            Mode::Uring
        } else if self.emulate {
            Mode::Emulated
        } else if self.inline_fallback {
            Mode::FallbackInline
        } else {
            Mode::Fallback
        }
    }

    /// A `Dir` reading the directory open at `fd`, known to the caller as `path`.
    pub(crate) fn wrap_fd(&self, fd: OwnedFd, path: Arc<Path>) -> io::Result<Dir> {
        let mode = self.mode();
        let buffer_size = self.buffer_size.clamp(MIN_BUFFER_SIZE, MAX_BUFFER_SIZE);
        let buf = take_buffer(buffer_size).map_err(|e| op_error("open", &path, e))?;
        Ok(Dir {
            state: State::Idle(buf),
            ahead: None,
            spare: None,
            buffer_size,
            read_ahead: self.read_ahead && matches!(mode, Mode::Uring | Mode::Emulated),
            fd: Arc::new(fd),
            path,
            mode,
            at_end: false,
        })
    }
}

/// What a GETDENTS request owns while the kernel may use it; wrapped whole in
/// [`ops::KernelWritable`], so that at a runtime shutdown the buffer *and* the
/// descriptor are leaked together rather than freed or closed under the kernel.
struct ReadData {
    buf: Vec<u8>,
    /// A share of the descriptor, so it stays open (and its number is not reused) until
    /// the request completes, even if the [`Dir`] is dropped first: tokio-uring submits
    /// queued entries only when the runtime next parks, and the kernel looks the number
    /// up then (or later still, in an io-wq worker).
    _fd: Arc<OwnedFd>,
    /// The result of an emulated read (see [`DirOptions::emulate_in_flight`]).
    emulated: Option<i32>,
}

enum State {
    /// The buffer holds nothing unread; the next poll starts a read.
    Idle(Vec<u8>),
    /// A read is on the ring. Kept here rather than in the `next()` future, so that
    /// dropping that future loses nothing: the next poll picks the same read up.
    InFlight(InFlight<ops::KernelWritable<ReadData>>, ops::SettledWitness),
    /// A getdents64(2) of the fallback is queued for or running on the blocking pool.
    /// The queued read owns the buffer and a share of the descriptor, so dropping the
    /// Dir meanwhile is safe.
    Blocking(fallback::PendingRead),
    /// `buf[pos..len]` holds records not yet returned.
    Filled {
        buf: Vec<u8>,
        len: usize,
        pos: usize,
    },
    /// The end was reached or an error was returned; the listing is over.
    Done,
}

/// One entry as the directory lists it, `.` and `..` left out.
pub(crate) struct Record {
    pub(crate) name: Name,
    pub(crate) ino: u64,
    pub(crate) d_type: u8,
}

/// An open directory whose entries are read through the tokio-uring runtime's ring.
///
/// Entries come one at a time from a reusable buffer, which is refilled (with
/// IORING_OP_GETDENTS, or getdents64(2) on kernels without it) only once every entry in
/// it was returned. `.` and `..` are skipped, as by [`std::fs::read_dir`]. The order is
/// the directory's own, as with any readdir.
///
/// ```no_run
/// use tokio_uring_dir::Dir;
///
/// tokio_uring::start(async {
///     let mut dir = Dir::open(".").await?;
///     while let Some(entry) = dir.next().await {
///         let entry = entry?;
///         println!("entry: {}", entry.file_name().to_string_lossy());
///     }
///     dir.close().await?;
///     Ok::<_, std::io::Error>(())
/// })
/// # .unwrap();
/// ```
///
/// A `Dir` belongs to the tokio-uring runtime it was opened on: it must be used and
/// dropped on that runtime's thread, before the runtime shuts down. (Like every
/// tokio-uring operation, reading outside a tokio-uring runtime panics.)
///
/// **Fallback.** When the kernel lacks IORING_OP_GETDENTS (decided once per process by
/// [`uring_getdents::detect`], which never mistakes another opcode for it), or with
/// [`DirOptions::force_fallback`], entries are read with getdents64(2) on tokio's
/// blocking pool, so that a refill that goes to disk does not stall the runtime thread
/// ([`DirOptions::inline_fallback`] calls it inline instead). Opening, closing and stat
/// still go through the ring. [`Dir::uses_io_uring`] tells which path is active.
///
/// **Cancellation.** Dropping a [`next`](Self::next) future is safe at any point: a read
/// it started stays with the `Dir`, and the next call returns its entries; none are lost
/// or repeated.
///
/// **Dropping** a `Dir` without [`close`](Self::close) closes the descriptor
/// synchronously; if a read is still in flight, the driver keeps the buffer and the
/// descriptor until the kernel completes it, and closes the descriptor then. Should the
/// runtime shut down first, the buffer and descriptor of that read are leaked rather
/// than freed under the kernel (tokio-uring's driver drops them before cancelling the
/// read). Entries share the descriptor too (for [`DirEntry::metadata`]), so it closes
/// when the `Dir` and its last entry are gone.
pub struct Dir {
    state: State,
    /// The read of the buffer after the one in `state`, started when that one arrived
    /// ([`DirOptions::read_ahead`]).
    ahead: Option<(InFlight<ops::KernelWritable<ReadData>>, ops::SettledWitness)>,
    /// The buffer the next read-ahead goes into.
    spare: Option<Vec<u8>>,
    /// The size of every buffer this Dir reads into.
    buffer_size: usize,
    read_ahead: bool,
    fd: Arc<OwnedFd>,
    path: Arc<Path>,
    mode: Mode,
    /// A blocking-pool read already met the end: no further read is needed.
    at_end: bool,
}

impl std::fmt::Debug for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Idle(_) => "idle",
            State::InFlight(..) => "in flight",
            State::Blocking(_) => "reading on the blocking pool",
            State::Filled { .. } => "filled",
            State::Done => "done",
        };
        f.debug_struct("Dir")
            .field("path", &self.path)
            .field("fd", &self.fd.as_raw_fd())
            .field("mode", &self.mode)
            .field("state", &state)
            .field("reading_ahead", &self.ahead.is_some())
            .finish()
    }
}

impl Dir {
    /// Opens the directory at `path` (`O_DIRECTORY | O_RDONLY | O_CLOEXEC`, through the
    /// ring) with a [`DEFAULT_BUFFER_SIZE`] buffer.
    ///
    /// A path that is not a directory gives [`io::ErrorKind::NotADirectory`], a missing
    /// one [`io::ErrorKind::NotFound`]; the message names the operation and the path
    /// (see [`OpError`](crate::OpError)).
    ///
    /// If this future is dropped before the open completes (a timeout, `select!`), the
    /// descriptor the kernel may still open is closed when the open completes, noticed
    /// at the next open on the same thread.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<Dir> {
        DirOptions::new().open(path).await
    }

    /// Opens `path` with a buffer of `buffer_size` bytes (clamped to
    /// [`MIN_BUFFER_SIZE`]`..=`[`MAX_BUFFER_SIZE`]).
    pub async fn open_with_buffer(path: impl AsRef<Path>, buffer_size: usize) -> io::Result<Dir> {
        DirOptions::new().buffer_size(buffer_size).open(path).await
    }

    /// The path the directory was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A share of the descriptor, which keeps it open while held.
    pub(crate) fn fd_share(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    /// True when entries are read with IORING_OP_GETDENTS, false on the getdents64(2)
    /// fallback.
    pub fn uses_io_uring(&self) -> bool {
        self.mode == Mode::Uring
    }

    /// The next entry, `None` at the end.
    ///
    /// After an error the listing ends: later calls return `None`. Errors name the
    /// operation and the directory (see [`OpError`](crate::OpError)).
    pub async fn next(&mut self) -> Option<io::Result<DirEntry>> {
        std::future::poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// True while the next poll can only wait for a read already polled (on the ring
    /// or the blocking pool), which wakes the task when it completes.
    pub(crate) fn waits_for_completion(&self) -> bool {
        matches!(self.state, State::InFlight(..) | State::Blocking(_))
    }

    /// Polls for the next entry: the building block of [`next`](Self::next) and of the
    /// [`Stream`] implementation.
    pub fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<DirEntry>>> {
        self.poll_next_record(cx).map(|next| {
            next.map(|record| {
                record.map(|Record { name, ino, d_type }| {
                    DirEntry::new(self.path.clone(), self.fd.clone(), name, ino, d_type)
                })
            })
        })
    }

    /// The next record without the directory's shares a [`DirEntry`] takes: the walk
    /// builds its own entries, and two reference counts per entry are a large part of
    /// the per-entry cost where atomics are dear (a TCG guest).
    pub(crate) fn poll_next_record(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Record>>> {
        loop {
            // The common case, a record from the filled buffer, in place: moving the
            // state out and back per entry costs more than parsing the record.
            if let State::Filled { buf, len, pos } = &mut self.state {
                let mut records = DirentIter::new(buf.get(*pos..*len).unwrap_or_default());
                match records.next() {
                    Some(Ok(record)) => {
                        *pos += records.position();
                        let name = record.c_name.to_bytes();
                        if name == b"." || name == b".." {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Record {
                            name: Name::new(name),
                            ino: record.ino,
                            d_type: record.d_type,
                        })));
                    }
                    Some(Err(e)) => {
                        self.state = State::Done;
                        let err = io::Error::new(io::ErrorKind::InvalidData, e);
                        return Poll::Ready(Some(Err(op_error("getdents", &self.path, err))));
                    }
                    // Every record returned: the match below moves on.
                    None => {}
                }
            }
            // Each arm stores the state that follows; should anything panic meanwhile,
            // the Dir is left ended rather than half-updated.
            match std::mem::replace(&mut self.state, State::Done) {
                State::Filled { buf, .. } => {
                    self.state = match self.ahead.take() {
                        Some((op, witness)) => {
                            self.spare = Some(buf);
                            State::InFlight(op, witness)
                        }
                        None => State::Idle(buf),
                    };
                }
                State::Idle(_) if self.at_end => return Poll::Ready(None),
                State::Idle(buf) => match self.mode {
                    Mode::FallbackInline => {
                        let mut buf = buf;
                        let res = read_now(&self.fd, &mut buf);
                        if let Some(done) = self.finish_read(buf, res) {
                            return Poll::Ready(done);
                        }
                    }
                    Mode::Fallback => {
                        let fd = Arc::clone(&self.fd);
                        self.state = State::Blocking(fallback::read(fd, buf, read_batch));
                    }
                    Mode::Uring | Mode::Emulated => {
                        let (op, witness) = self.submit_read(buf);
                        self.state = State::InFlight(op, witness);
                    }
                },
                State::InFlight(mut op, witness) => match Pin::new(&mut op).poll(cx) {
                    Poll::Pending => {
                        self.state = State::InFlight(op, witness);
                        return Poll::Pending;
                    }
                    Poll::Ready((data, res)) => {
                        let res = data.emulated.unwrap_or(res);
                        let res = if res < 0 {
                            Err(from_res(res))
                        } else {
                            Ok(res.unsigned_abs() as usize)
                        };
                        if let Some(done) = self.finish_read(data.into_inner().buf, res) {
                            return Poll::Ready(done);
                        }
                    }
                },
                State::Blocking(mut read) => match Pin::new(&mut read).poll(cx) {
                    Poll::Pending => {
                        self.state = State::Blocking(read);
                        return Poll::Pending;
                    }
                    Poll::Ready((buf, res, at_end)) => {
                        self.at_end = at_end;
                        if let Some(done) = self.finish_read(buf, res) {
                            return Poll::Ready(done);
                        }
                    }
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }

    /// Starts a read of the next records into `buf` on the ring.
    fn submit_read(
        &self,
        mut buf: Vec<u8>,
    ) -> (InFlight<ops::KernelWritable<ReadData>>, ops::SettledWitness) {
        // Bounded by MAX_BUFFER_SIZE, so this never saturates.
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let (sqe, emulated) = match self.mode {
            Mode::Emulated => {
                let res = match read_now(&self.fd, &mut buf) {
                    // Bounded by the buffer length, itself below i32::MAX.
                    Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO).saturating_neg(),
                };
                (io_uring_06::opcode::Nop::new().build(), Some(res))
            }
            // The fallbacks read with the system call and never submit.
            Mode::Uring | Mode::Fallback | Mode::FallbackInline => {
                let fd = DirFd::Fd(self.fd.as_raw_fd());
                (Getdents::new(fd, buf.as_mut_ptr(), len).build_v06(), None)
            }
        };
        // The Vec's heap buffer does not move when the Vec is moved into the driver, and
        // nothing touches it until the completion hands it back, so the kernel may write
        // through the pointer in the entry until then. The descriptor share keeps the
        // descriptor open just as long.
        let data = ops::KernelWritable::new(ReadData {
            buf,
            _fd: Arc::clone(&self.fd),
            emulated,
        });
        let witness = data.witness();
        (ops::submit(data, sqe), witness)
    }

    /// Moves to the state after a read and says what to return, if anything yet.
    fn finish_read(
        &mut self,
        buf: Vec<u8>,
        res: io::Result<usize>,
    ) -> Option<Option<io::Result<Record>>> {
        match res {
            Ok(0) => {
                give_back(buf);
                self.end();
                Some(None)
            }
            Ok(n) => {
                let len = n.min(buf.len());
                self.state = State::Filled { buf, len, pos: 0 };
                if self.read_ahead && self.ahead.is_none() {
                    // A spare buffer that cannot be had only means no read-ahead.
                    let spare = match self.spare.take() {
                        Some(spare) => Some(spare),
                        None => take_buffer(self.buffer_size).ok(),
                    };
                    if let Some(spare) = spare {
                        self.ahead = Some(self.submit_read(spare));
                    }
                }
                None
            }
            // Nothing was consumed, so reading again is safe.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.state = State::Idle(buf);
                None
            }
            Err(e) => {
                give_back(buf);
                self.end();
                Some(Some(Err(op_error("getdents", &self.path, e))))
            }
        }
    }

    /// The listing is over: no read is in flight (a read-ahead only starts after a
    /// read that returned entries, and ends the listing only once it is consumed), so
    /// the buffers go back to the pool.
    fn end(&mut self) {
        self.state = State::Done;
        if let Some(spare) = self.spare.take() {
            give_back(spare);
        }
    }

    /// Closes the directory through the ring.
    ///
    /// If a read is in flight (a [`next`](Self::next) future was dropped), it is waited
    /// for first, since its descriptor must not close under it; its entries are
    /// discarded. The descriptor is released even when an error is returned, as with
    /// close(2).
    pub async fn close(self) -> io::Result<()> {
        let mut this = self;
        let state = std::mem::replace(&mut this.state, State::Done);
        let ahead = this.ahead.take();
        let fd = Arc::clone(&this.fd);
        let path = Arc::clone(&this.path);
        // With the state taken, dropping the Dir only drops its descriptor share.
        drop(this);
        match state {
            // The read's share of the descriptor is dropped with its data here.
            State::InFlight(op, _) => drop(op.await),
            State::Blocking(read) => drop(read.await),
            State::Idle(_) | State::Filled { .. } | State::Done => {}
        }
        if let Some((op, _)) = ahead {
            drop(op.await);
        }
        match Arc::try_unwrap(fd) {
            Ok(fd) => ops::close(fd)
                .await
                .map_err(|e| op_error("close", &path, e)),
            // Entries still share it: the last of them closes it when dropped.
            Err(_shared) => Ok(()),
        }
    }
}

/// Buffers kept for reuse on this thread, at most this many: a walk opens and ends
/// directories at a high rate, and allocating and zeroing 32 KiB twice per directory
/// costs about what reading a small one does.
const POOLED_BUFFERS: usize = 64;

thread_local! {
    static BUFFER_POOL: std::cell::RefCell<Vec<Vec<u8>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of `size` bytes from the pool, or a new zeroed one (an error instead of an
/// abort when memory is short).
fn take_buffer(size: usize) -> io::Result<Vec<u8>> {
    let pooled = BUFFER_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().rposition(|buf| buf.len() == size)?;
        Some(pool.swap_remove(at))
    });
    if let Some(buf) = pooled {
        return Ok(buf);
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(size)
        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
    buf.resize(size, 0);
    Ok(buf)
}

/// Returns a buffer no request uses any more to the pool (or frees it when full).
fn give_back(buf: Vec<u8>) {
    BUFFER_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    });
}

/// One hand-off's worth of getdents64(2) for the blocking pool: reading goes on while the
/// buffer is less than half full, so that a small directory's entries and its end come
/// back in one hop instead of two (a hop costs far more than a system call). Returns
/// the bytes filled and whether the end was met. An error after some entries is left
/// for the next read, which starts right after them.
fn read_batch(fd: &OwnedFd, buf: &mut [u8]) -> (io::Result<usize>, bool) {
    let mut filled = 0;
    loop {
        let Some(rest) = buf.get_mut(filled..) else {
            return (Ok(filled), false);
        };
        match read_now(fd, rest) {
            Ok(0) => return (Ok(filled), true),
            Ok(n) => {
                filled += n;
                if filled >= buf.len() / 2 || buf.len() - filled < MIN_BUFFER_SIZE {
                    return (Ok(filled), false);
                }
            }
            Err(_) if filled > 0 => return (Ok(filled), false),
            Err(e) => return (Err(e), false),
        }
    }
}

/// getdents64(2) on the calling thread.
fn read_now(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    getdents64(fd.as_fd(), buf)
}

impl AsFd for Dir {
    /// The directory's descriptor, for calls this crate does not wrap (fstat, openat of
    /// a child). Reading through it moves the position the `Dir` reads from.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::InFlight(op, witness) => {
                witness.before_dropping_the_future();
                drop(op);
            }
            State::Idle(buf) | State::Filled { buf, .. } => give_back(buf),
            State::Blocking(_) | State::Done => {}
        }
        if let Some((op, witness)) = self.ahead.take() {
            witness.before_dropping_the_future();
            drop(op);
        }
        if let Some(spare) = self.spare.take() {
            give_back(spare);
        }
    }
}

impl Stream for Dir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_entry(cx)
    }
}
