//! The io_uring engine: one ring per walker thread, many directories in flight.
//!
//! A directory goes OPENAT -> GETDENTS... -> STATX per entry that is not a directory
//! (subdirectories are counted through the descriptor their OPENAT gives, one path lookup
//! instead of two). The ring carries what measurably gains from it: directory reads
//! once the tree turns out cold, through IORING_OP_GETDENTS (detected once, see
//! uring-getdents), so that many wait for the disk at once off the walker threads
//! (cold Linux tree in the microvm: 1.22 s against 1.46 s with getdents64(2) on the
//! walkers). Everything else is a plain syscall on the walker thread: io_uring runs
//! statx and openat in an io-wq worker, the same blocking call plus two hand-offs, and
//! on a warm tree the same goes for reads. A cold walk instead wakes reserve walkers, so
//! that more calls wait for the disk at once; on kernels without the op, which block
//! the walkers in every read as well, more of them. `TRAVERSE_RING_STAT=1` sends the
//! stats of non-directories and the opens through the ring instead, for comparison (a
//! directory's own stat, through its descriptor, stays inline).
//! Work waits in queues and is submitted while fewer than `MAX_IN_FLIGHT` requests are
//! outstanding, stats first (they finish directories), then directory reads, then opens
//! (which add work), and opens wait while `open_dir_budget()` directories are open.
//! Directories to open are taken newest first, so the walk stays depth first and memory
//! stays bounded.

use crate::count::{Tally, Totals, WalkError};
use crate::stopwatch::{self, Tick};
use crate::sys;
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use uring_getdents::{getdents64, DirFd, DirentIter, Getdents};

/// Requests outstanding in the kernel at most.
const MAX_IN_FLIGHT: usize = 512;
/// Directory read buffer.
const DIR_BUF: usize = 32 * 1024;
/// An inline call slower than this went to the disk (see `Walker::slow_bar`).
const INLINE_STAT_LIMIT: std::time::Duration = std::time::Duration::from_micros(50);
/// ... or this many times the typical cached call on this machine, whichever is more
/// (under emulation a cached stat alone can take tens of microseconds).
const SLOW_FACTOR: u64 = 8;
/// The largest a single call counts in the estimate of a cached call.
const TYPICAL_CAP: std::time::Duration = std::time::Duration::from_micros(20);
/// After a trip to the disk, this many new directories are read through the ring before
/// an inline read is tried again: a cold tree stays cold for a while.
const RING_MODE_DIRS: usize = 256;
/// Slow inline calls seen by one walker before the tree counts as cold and the reserve
/// walkers join. A warm walk of the Linux tree sees a handful (preemption, faults);
/// a cold one thousands.
const COLD_AFTER: usize = 16;
/// Two slow inline calls at most this many calls apart mean a cold tree; a lone one is
/// more likely preemption or a page fault (a warm walk of the Linux tree on a busy
/// machine sees one every few thousand calls).
const SLOW_WINDOW: usize = 256;
/// Descriptors the sync walker may hold when this walker's budget is spent and it counts
/// a subtree with it.
const FALLBACK_BUDGET: usize = 4;

struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    buf: Vec<u8>,
    /// Requests and queued work that still use `fd`.
    users: usize,
    /// getdents reported the end (or failed).
    listed: bool,
}

enum Op {
    Open {
        parent: usize,
        name: CString,
    },
    Getdents {
        dir: usize,
    },
    Statx {
        dir: usize,
        name: CString,
        out: Box<libc::statx>,
    },
}

/// Settings shared by every walker, read once per walk.
#[derive(Clone, Copy)]
struct Config {
    use_op: bool,
    /// Directories one walker may keep open.
    budget: usize,
    adaptive: bool,
    max_in_flight: usize,
    defer_taskrun: bool,
    iowq_workers: Option<u32>,
    /// `INLINE_STAT_LIMIT` and `TYPICAL_CAP` in stopwatch ticks.
    slow_limit: u64,
    typical_cap: u64,
    debug: bool,
}

impl Config {
    fn from_env(walkers: usize, use_op: bool) -> Self {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let set = |name: &str| std::env::var_os(name).is_some();
        Config {
            use_op,
            budget: (sys::open_dir_budget() / walkers).max(2),
            adaptive: !set("TRAVERSE_RING_STAT"),
            max_in_flight: number("TRAVERSE_INFLIGHT").unwrap_or(MAX_IN_FLIGHT),
            defer_taskrun: !set("TRAVERSE_NO_DEFER"),
            iowq_workers: number("TRAVERSE_IOWQ").map(|n: usize| n as u32),
            slow_limit: stopwatch::ticks(
                number("TRAVERSE_SLOW_US")
                    .map(|us: usize| std::time::Duration::from_micros(us as u64))
                    .unwrap_or(INLINE_STAT_LIMIT),
            ),
            typical_cap: stopwatch::ticks(TYPICAL_CAP),
            debug: set("TRAVERSE_DEBUG"),
        }
    }
}

struct Walker {
    ring: IoUring,
    use_op: bool,
    dirs: Vec<Option<Dir>>,
    free_dirs: Vec<usize>,
    open_dirs: usize,
    budget: usize,
    ops: Vec<Option<Op>>,
    free_ops: Vec<usize>,
    in_flight: usize,
    max_in_flight: usize,
    adaptive: bool,
    to_stat: VecDeque<(usize, CString)>,
    to_list: VecDeque<usize>,
    to_open: VecDeque<(usize, CString)>,
    tally: Tally,
    spare_bufs: Vec<Vec<u8>>,
    /// Directories still to be read through the ring after the last trip to the disk.
    ring_mode_dirs: usize,
    /// A reserve walker: takes work only once the walk went cold.
    reserve: bool,
    /// Moving average of fast inline calls.
    typical_call: u64,
    slow_limit: u64,
    typical_cap: u64,
    /// Times this walker waited for the disk; the reserve is woken at `COLD_AFTER`.
    disk_waits: usize,
    /// The thread's sleep count at the last slow call or wait for work; None after a
    /// wait for completions, which sleeps too.
    sleeps_seen: Option<u64>,
    /// Inline calls timed so far, and the number of the last slow one.
    inline_calls: usize,
    last_slow_call: Option<usize>,
    /// Counters printed with `TRAVERSE_DEBUG`.
    debug: WalkerCounters,
    /// Completions taken from the ring, kept to reuse the allocation.
    reaped: Vec<(u64, i32)>,
}

/// What one walker did, printed to stderr at the end when `TRAVERSE_DEBUG` is set:
/// the numbers behind tuning the constants above.
#[derive(Default, Debug)]
struct WalkerCounters {
    idle: std::time::Duration,
    dirs: usize,
    inline_stats: usize,
    ring_stats: usize,
    inline_lists: usize,
    ring_lists: usize,
    /// Calls slow by the clock during which the thread did not sleep.
    clock_only_slow: usize,
    donated: usize,
    claims: usize,
    waits: usize,
}

/// Counts `path` with io_uring.
pub fn count(path: &Path) -> Result<Totals, WalkError> {
    let (mut tally, top) = sys::open_top(path)?;
    let Some((fd, _)) = top else {
        return Ok(tally.totals);
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    // One walker per core does the work while the tree is cached; when a walker has to
    // wait for the disk, the reserve joins in, so more reads are in flight than cores
    // (the waits overlap, the CPU work does not grow).
    // Without the op every cold directory read blocks a walker too, so more are needed
    // to keep as many reads in flight (cold Linux tree on the host: 387 ms with 3 per
    // core, 367 ms with 5, no better with 7 or 10; with the op in the microvm 3 per core
    // beat 5 by 13%).
    let use_op =
        std::env::var_os("TRAVERSE_NO_OP").is_none() && uring_getdents::detect().is_available();
    let threads = env("TRAVERSE_THREADS").unwrap_or(cores).max(1);
    let reserve_per_core = if use_op { 3 } else { 5 };
    let reserve = env("TRAVERSE_RESERVE").unwrap_or(reserve_per_core * cores);
    // Each walker needs a ring and at least two directories open.
    let total = (threads + reserve).min(sys::open_dir_budget() / 3).max(1);
    let threads = threads.min(total);
    let cfg = Config::from_env(total, use_op);
    let shared = Shared {
        queue: Mutex::new(SharedQueue {
            dirs: vec![(fd, path.to_path_buf())],
            walkers: total,
            idle: 0,
            hungry: 0,
            done: false,
        }),
        wake: Condvar::new(),
        hungry: AtomicUsize::new(0),
        queued: AtomicUsize::new(1),
        cold: AtomicBool::new(false),
    };
    let normal_slots = AtomicUsize::new(threads);
    let ringless = RinglessForTests::from_env();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..total)
            .map(|i| {
                let (shared, cfg, normal_slots) = (&shared, &cfg, &normal_slots);
                let ringless = &ringless;
                s.spawn(move || {
                    let _finish = FinishOnPanic(shared);
                    let walker = if ringless.covers(i) {
                        Err(io::Error::other("no ring (TRAVERSE_TEST_NO_RING)"))
                    } else {
                        Walker::new(cfg)
                    };
                    match walker {
                        Ok(mut w) => {
                            // The first walkers to get a ring do the work from the
                            // start, whichever they are: were the reserve the only ones
                            // with rings, nobody would ever wake them.
                            w.reserve = normal_slots
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_err();
                            let started = std::time::Instant::now();
                            let result = w.run(shared);
                            if cfg.debug {
                                eprintln!(
                                    "walker {i}: {:?} disk_waits {} total {:?}",
                                    w.debug,
                                    w.disk_waits,
                                    started.elapsed()
                                );
                            }
                            match result {
                                Ok(()) => Outcome::Walked(std::mem::take(&mut w.tally)),
                                Err(e) => {
                                    // Its work is lost: nobody may wait for it any more.
                                    shared.finish();
                                    Outcome::Failed("io_uring", e)
                                }
                            }
                        }
                        Err(_) => {
                            // No ring for this walker (locked memory spent, io_uring refused):
                            // the others do its share.
                            shared.leave();
                            Outcome::NoRing
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                // Its FinishOnPanic has already stopped the others.
                h.join().unwrap_or_else(|_| {
                    Outcome::Failed("walker thread", io::Error::other("panicked"))
                })
            })
            .collect()
    });
    let mut walked = false;
    for outcome in outcomes {
        match outcome {
            Outcome::Walked(t) => {
                tally.merge(t);
                walked = true;
            }
            Outcome::Failed(what, source) => {
                return Err(WalkError::Engine {
                    path: path.into(),
                    what,
                    source,
                })
            }
            Outcome::NoRing => {}
        }
    }
    if !walked {
        // io_uring is unusable here (disabled by sysctl or seccomp): walk without it
        // rather than fail.
        return crate::sync_walk::count(path);
    }
    Ok(tally.totals)
}

/// Walkers whose ring setup fails on purpose, from `TRAVERSE_TEST_NO_RING` (walker
/// indices separated by commas, or `all`): how the tests reach the paths of a kernel
/// that gives only some threads a ring (locked memory spent) or none (io_uring disabled).
struct RinglessForTests {
    all: bool,
    walkers: Vec<usize>,
}

impl RinglessForTests {
    fn from_env() -> Self {
        let spec = std::env::var("TRAVERSE_TEST_NO_RING").unwrap_or_default();
        RinglessForTests {
            all: spec == "all",
            walkers: spec.split(',').filter_map(|i| i.parse().ok()).collect(),
        }
    }

    fn covers(&self, walker: usize) -> bool {
        self.all || self.walkers.contains(&walker)
    }
}

/// How one walker thread ended.
enum Outcome {
    Walked(Tally),
    /// Its ring could not be set up; it took no work.
    NoRing,
    /// It failed while walking (which part, why); the counts are incomplete.
    Failed(&'static str, io::Error),
}

/// Work shared between walker threads: opened directories nobody has claimed yet.
struct SharedQueue {
    dirs: Vec<(OwnedFd, PathBuf)>,
    /// Walkers taking part (those whose ring could not be set up leave).
    walkers: usize,
    /// Threads waiting for work, reserve walkers included.
    idle: usize,
    /// Idle threads that take work (reserve walkers only once the walk went cold).
    hungry: usize,
    /// Every thread was idle with nothing queued: the walk is over.
    done: bool,
}

impl SharedQueue {
    /// Ends the walk when every remaining walker waits and nothing is queued.
    fn check_done(&mut self) -> bool {
        if self.idle == self.walkers && self.dirs.is_empty() {
            self.done = true;
        }
        self.done
    }
}

struct Shared {
    queue: Mutex<SharedQueue>,
    wake: Condvar,
    /// Idle walkers that take work, read without the lock on the hot path.
    hungry: AtomicUsize,
    /// Directories waiting in the queue (each holds a descriptor), likewise.
    queued: AtomicUsize,
    /// Some walker waited for the disk: the reserve walkers take part from now on.
    cold: AtomicBool,
}

impl Shared {
    /// Stops every walker.
    fn finish(&self) {
        // Also when a walker panicked holding the lock: the others must still stop.
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.done = true;
        self.wake.notify_all();
    }

    /// A walker that never took work leaves; the walk may be over without it.
    fn leave(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.walkers -= 1;
            if q.walkers == 0 || q.check_done() {
                q.done = true;
                self.wake.notify_all();
            }
        }
    }

    /// The walk turned cold: wake the reserve, which counts as hungry from now on.
    fn wake_reserve(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.hungry = q.idle;
            self.hungry.store(q.hungry, Ordering::Relaxed);
            self.wake.notify_all();
        }
    }
}

impl Walker {
    /// A walker with its ring; it starts as one that works from the start.
    fn new(cfg: &Config) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(4 * MAX_IN_FLIGHT as u32);
        let plain = builder.clone();
        // Completions are only reaped by this thread, inside submit_and_wait: with
        // DEFER_TASKRUN the kernel runs their task work there, in one batch, instead of
        // interrupting the walker for each (fewer wake-ups: 4% off a cold walk in the
        // microvm). Kernels before 6.1 refuse the flags; then the plain ring.
        if cfg.defer_taskrun {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        let ring = builder.build(256).or_else(|_| plain.build(256))?;
        if let Some(n) = cfg.iowq_workers {
            let mut workers = [n, n];
            let _ = ring.submitter().register_iowq_max_workers(&mut workers);
        }
        Ok(Walker {
            ring,
            use_op: cfg.use_op,
            dirs: Vec::new(),
            free_dirs: Vec::new(),
            open_dirs: 0,
            budget: cfg.budget,
            ops: Vec::new(),
            free_ops: Vec::new(),
            in_flight: 0,
            adaptive: cfg.adaptive,
            max_in_flight: cfg.max_in_flight,
            to_stat: VecDeque::new(),
            to_list: VecDeque::new(),
            to_open: VecDeque::new(),
            tally: Tally::default(),
            spare_bufs: Vec::new(),
            ring_mode_dirs: 0,
            reserve: false,
            typical_call: 0,
            slow_limit: cfg.slow_limit,
            typical_cap: cfg.typical_cap,
            disk_waits: 0,
            inline_calls: 0,
            last_slow_call: None,
            sleeps_seen: sys::thread_sleeps(),
            debug: WalkerCounters::default(),
            reaped: Vec::new(),
        })
    }

    fn local_work_left(&self) -> bool {
        self.in_flight > 0
            || !self.to_stat.is_empty()
            || !self.to_list.is_empty()
            || !self.to_open.is_empty()
    }

    /// Takes a directory from the shared queue, waiting while other threads still work.
    /// Returns false when the walk is over.
    fn claim(&mut self, shared: &Shared) -> bool {
        let Ok(mut q) = shared.queue.lock() else {
            return false;
        };
        loop {
            let takes_work = !self.reserve || shared.cold.load(Ordering::Relaxed);
            if takes_work {
                if let Some((fd, path)) = q.dirs.pop() {
                    shared.queued.store(q.dirs.len(), Ordering::Relaxed);
                    drop(q);
                    self.debug.claims += 1;
                    self.add_dir(fd, path);
                    return true;
                }
            }
            if q.done {
                return false;
            }
            q.idle += 1;
            if takes_work {
                q.hungry += 1;
                shared.hungry.store(q.hungry, Ordering::Relaxed);
            }
            if q.check_done() {
                shared.wake.notify_all();
                return false;
            }
            let started = std::time::Instant::now();
            self.debug.waits += 1;
            let r = shared.wake.wait(q);
            // Rare (a walker runs out of work), so worth a syscall to keep judging by
            // sleeps.
            self.sleeps_seen = sys::thread_sleeps();
            self.debug.idle += started.elapsed();
            q = match r {
                Ok(q) => q,
                Err(_) => return false,
            };
            q.idle -= 1;
            // Counted as hungry when it went to sleep, or by the cold switch since.
            if takes_work || shared.cold.load(Ordering::Relaxed) {
                q.hungry = q.hungry.saturating_sub(1);
                shared.hungry.store(q.hungry, Ordering::Relaxed);
            }
        }
    }

    /// Hands up to half of the queued subdirectories, oldest first (the biggest subtrees,
    /// likely), to idle threads, opened here so the receivers need nothing of ours.
    fn donate(&mut self, shared: &Shared) {
        let hungry = shared.hungry.load(Ordering::Relaxed);
        if hungry == 0 || self.to_open.is_empty() {
            return;
        }
        // Gifts wait in the queue holding descriptors that no walker's budget counts:
        // at most one walker's budget per hungry walker in the queue altogether (the
        // hungry count drops only once a woken walker runs, so this walker may come
        // here again before: without the total, gifts piled up to EMFILE).
        let room = (self.budget * hungry).saturating_sub(shared.queued.load(Ordering::Relaxed));
        let mut gifts = Vec::new();
        for _ in 0..self.to_open.len().div_ceil(2).min(room) {
            let Some((parent, name)) = self.to_open.pop_front() else {
                break;
            };
            let opened = sys::open_dir_at(Some(self.dir(parent).fd.as_fd()), &name);
            match self.child_opened(parent, name, opened) {
                Ok(Some(gift)) => gifts.push(gift),
                Ok(None) => {}
                Err(name) => {
                    self.to_open.push_front((parent, name));
                    break;
                }
            }
        }
        self.debug.donated += gifts.len();
        if gifts.is_empty() {
            return;
        }
        if let Ok(mut q) = shared.queue.lock() {
            q.dirs.extend(gifts);
            shared.queued.store(q.dirs.len(), Ordering::Relaxed);
            shared.wake.notify_all();
        }
    }

    /// Takes the result of opening subdirectory `name` of `parent`: the descriptor and
    /// path to walk, or `None` when there is nothing to walk (vanished, or the error is
    /// reported). Out of descriptors, `name` comes back to be queued again.
    fn child_opened(
        &mut self,
        parent: usize,
        name: CString,
        opened: io::Result<OwnedFd>,
    ) -> Result<Option<(OwnedFd, PathBuf)>, CString> {
        if sys::is_out_of_fds(&opened) {
            return Err(name);
        }
        let Some(d) = self.dirs[parent].as_ref() else {
            unreachable!("directory slot {parent} is free");
        };
        let path = d.path.join(OsStr::from_bytes(name.as_bytes()));
        let counted = sys::count_subdir(d.fd.as_fd(), &name, &path, opened, &mut self.tally);
        self.dir(parent).users -= 1;
        self.maybe_finish(parent);
        Ok(counted.map(|(fd, _)| (fd, path)))
    }

    /// Out of descriptors although the budget allowed one more (others in the process
    /// use some): shrink the budget and retry `name` once a directory closes.
    fn retry_when_fds_free(&mut self, parent: usize, name: CString) {
        self.budget = self.open_dirs.max(1);
        self.to_open.push_back((parent, name));
    }

    fn add_dir(&mut self, fd: OwnedFd, path: PathBuf) {
        let read_in_ring = self.use_op && (!self.adaptive || self.ring_mode_dirs > 0);
        self.ring_mode_dirs = self.ring_mode_dirs.saturating_sub(1);
        let dir = Dir {
            fd,
            path,
            buf: self.spare_bufs.pop().unwrap_or_else(|| vec![0u8; DIR_BUF]),
            users: 0,
            listed: false,
        };
        let idx = match self.free_dirs.pop() {
            Some(i) => {
                self.dirs[i] = Some(dir);
                i
            }
            None => {
                self.dirs.push(Some(dir));
                self.dirs.len() - 1
            }
        };
        self.open_dirs += 1;
        self.debug.dirs += 1;
        if read_in_ring {
            self.to_list.push_back(idx);
        } else {
            self.list_inline(idx);
        }
    }

    fn dir(&mut self, idx: usize) -> &mut Dir {
        // Indices come from our own live requests: a missing slot is a logic error that
        // would otherwise corrupt the counts, so stop loudly.
        self.dirs[idx]
            .as_mut()
            .unwrap_or_else(|| unreachable!("directory slot {idx} is free"))
    }

    /// Releases a directory once it is listed and nothing uses its descriptor.
    fn maybe_finish(&mut self, idx: usize) {
        let d = self.dir(idx);
        if !d.listed || d.users > 0 {
            return;
        }
        if let Some(d) = self.dirs[idx].take() {
            // Reused: zeroing a fresh 32 KiB buffer per directory cost more than 10% of
            // a warm walk.
            self.spare_bufs.push(d.buf);
            // Closed here rather than through the ring: a queued CLOSE would keep the
            // descriptor allocated after the budget already counted it free.
            drop(d.fd);
            self.free_dirs.push(idx);
            self.open_dirs -= 1;
        }
    }

    /// Reads a directory with getdents64(2) on this thread while that stays cheap. With
    /// the op, a slow read (the directory's blocks came from the disk) hands the rest to
    /// the ring, where reads wait off this thread; without it, everything is read here.
    fn list_inline(&mut self, idx: usize) {
        loop {
            let d = self.dir(idx);
            let mut buf = std::mem::take(&mut d.buf);
            let started = Tick::now();
            let res = getdents64(std::os::fd::AsFd::as_fd(&d.fd), &mut buf);
            let took = started.elapsed();
            let n = res.unwrap_or_else(|e| {
                let path = self.dir(idx).path.clone();
                sys::listing_failed(&mut self.tally, &path, &e);
                0
            });
            let slow = self.is_slow_list(took, n);
            self.debug.inline_lists += 1;
            if n == 0 {
                self.dir(idx).buf = buf;
                self.dir(idx).listed = true;
                self.maybe_finish(idx);
                return;
            }
            if slow {
                self.disk_wait_seen();
            }
            // Not listed yet, so the directory outlives the stats of its entries.
            self.queue_entries(idx, &buf[..n]);
            self.dir(idx).buf = buf;
            if slow && self.use_op {
                self.to_list.push_back(idx);
                return;
            }
        }
    }

    /// Takes one filled directory buffer: every entry that is not a directory is stat'ed
    /// on this thread, named straight from the buffer (or queued for the ring when not
    /// adaptive); directories are queued to be opened, and counted then. A slow stat is
    /// noted as a disk wait but changes nothing else: handing the directory's next
    /// stats to io-wq as probes cost more than the waits it spared (cold Linux tree:
    /// 11% slower in the microvm, 10% on the host).
    fn queue_entries(&mut self, idx: usize, filled: &[u8]) {
        for entry in DirentIter::new(filled) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let msg = format!(
                        "malformed directory data in '{}': {e}",
                        self.dir(idx).path.display()
                    );
                    self.tally.error(msg);
                    return;
                }
            };
            if sys::is_dot(entry.name()) {
                continue;
            }
            if sys::listed_as_dir(entry.d_type) {
                self.queue_open(idx, entry.c_name);
            } else if !self.adaptive {
                self.dir(idx).users += 1;
                self.to_stat.push_back((idx, entry.c_name.to_owned()));
            } else {
                let started = Tick::now();
                let res = sys::statx_at(Some(self.dir(idx).fd.as_fd()), entry.c_name);
                self.debug.inline_stats += 1;
                if self.is_slow(started.elapsed()) {
                    self.disk_wait_seen();
                }
                // The directory is not listed yet, so it outlives this call.
                self.stat_done(idx, entry.c_name, res);
            }
        }
    }

    /// Queues subdirectory `name` of `dir` to be opened; the open keeps using the
    /// parent's descriptor.
    fn queue_open(&mut self, dir: usize, name: &CStr) {
        self.dir(dir).users += 1;
        self.to_open.push_back((dir, name.to_owned()));
    }

    fn new_op(&mut self, op: Op) -> usize {
        match self.free_ops.pop() {
            Some(i) => {
                self.ops[i] = Some(op);
                i
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        }
    }

    /// Moves queued work into the submission queue while there is room and budget.
    fn fill(&mut self, shared: &Shared) {
        loop {
            if self.in_flight >= self.max_in_flight || self.ring.submission().is_full() {
                return;
            }
            let idx = if let Some((dir, name)) = self.to_stat.pop_front() {
                let fd = self.dir(dir).fd.as_raw_fd();
                let mut out: Box<libc::statx> = Box::new(
                    // SAFETY: statx is plain data; all-zero is a valid value.
                    unsafe { std::mem::zeroed() },
                );
                let sqe = opcode::Statx::new(
                    types::Fd(fd),
                    name.as_ptr(),
                    (&mut *out as *mut libc::statx).cast(),
                )
                .flags(libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT)
                .mask(sys::STATX_MASK)
                .build();
                self.debug.ring_stats += 1;
                let i = self.new_op(Op::Statx { dir, name, out });
                (sqe, i)
            } else if let Some(dir) = self.to_list.pop_front() {
                let d = self.dir(dir);
                let sqe = Getdents::new(
                    DirFd::Fd(d.fd.as_raw_fd()),
                    d.buf.as_mut_ptr(),
                    d.buf.len() as u32,
                )
                .build();
                d.users += 1;
                self.debug.ring_lists += 1;
                let i = self.new_op(Op::Getdents { dir });
                (sqe, i)
            } else if self.open_dirs < self.budget && !self.to_open.is_empty() {
                let Some((parent, name)) = self.to_open.pop_back() else {
                    return;
                };
                if self.adaptive {
                    // An open waits for the disk only for the subdirectory's inode,
                    // which its siblings' stats usually brought in already (ext4 reads
                    // inode tables 32 blocks ahead); through the ring, opens measured
                    // slower even in a cold tree. So inline.
                    self.open_inline(parent, name);
                    // An inline open lists and stats the child at once, so this loop can
                    // run for the whole subtree: share work as soon as someone is idle.
                    self.donate(shared);
                    continue;
                }
                let fd = self.dir(parent).fd.as_raw_fd();
                let sqe = opcode::OpenAt::new(types::Fd(fd), name.as_ptr())
                    .flags(sys::DIR_OPEN_FLAGS)
                    .build();
                // Reserve the descriptor now so the budget holds while opens are in flight.
                self.open_dirs += 1;
                let i = self.new_op(Op::Open { parent, name });
                (sqe, i)
            } else {
                return;
            };
            let (sqe, i) = idx;
            // SAFETY: every buffer the entry names (name, statx box, directory buffer) is
            // owned by `self.ops[i]` or a live `Dir`, neither freed before completion.
            if unsafe { self.ring.submission().push(&sqe.user_data(i as u64)) }.is_err() {
                unreachable!("checked for room above");
            }
            self.in_flight += 1;
        }
    }

    fn run(&mut self, shared: &Shared) -> io::Result<()> {
        loop {
            if !self.local_work_left() && !self.claim(shared) {
                return Ok(());
            }
            // Loaded first: a swap on every turn would bounce the cache line that every
            // walker reads.
            if self.disk_waits >= COLD_AFTER
                && !shared.cold.load(Ordering::Relaxed)
                && !shared.cold.swap(true, Ordering::Relaxed)
            {
                shared.wake_reserve();
            }
            self.donate(shared);
            self.fill(shared);
            if self.in_flight == 0 {
                if !self.local_work_left() {
                    continue;
                }
                // Every open directory waits for a child to be opened and the budget is
                // spent: count the newest pending subtree with the sync walker, which
                // gives descriptors back as it goes.
                if let Some((parent, name)) = self.to_open.pop_back() {
                    if let Some(mut d) = self.dirs[parent].take() {
                        let path = d.path.join(OsStr::from_bytes(name.as_bytes()));
                        crate::sync_walk::count_subtree_at(
                            &d.fd,
                            &name,
                            path,
                            FALLBACK_BUDGET,
                            &mut self.tally,
                        );
                        d.users -= 1;
                        self.dirs[parent] = Some(d);
                        self.maybe_finish(parent);
                    }
                }
                continue;
            }
            self.sleeps_seen = None;
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let mut reaped = std::mem::take(&mut self.reaped);
            reaped.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            // Counted before they are handled: should handling one panic, the rest are
            // off the ring too, and Drop must not wait for them.
            self.in_flight -= reaped.len();
            for &(ud, res) in &reaped {
                self.complete(ud as usize, res);
            }
            reaped.clear();
            self.reaped = reaped;
        }
    }

    /// Was an inline call slow enough to have waited for the disk? Fast calls train
    /// the estimate of a cached call.
    fn is_slow(&mut self, took: u64) -> bool {
        self.inline_calls += 1;
        if took > self.slow_bar(0) {
            return self.slept();
        }
        // Moving average over about 16 calls, each counted at most at TYPICAL_CAP so
        // that a stream of moderately slow (disk) calls cannot raise the bar for itself.
        self.typical_call = (self.typical_call * 15 + took.min(self.typical_cap)) / 16;
        false
    }

    /// Was an inline directory read of `bytes` slow enough to have waited for the disk?
    /// A cached read costs more the more entries it copies (a stat per ~32 bytes of
    /// records is a generous allowance); it does not train the estimate.
    fn is_slow_list(&mut self, took: u64, bytes: usize) -> bool {
        self.inline_calls += 1;
        took > self.slow_bar(bytes as u64 / 32) && self.slept()
    }

    /// The time beyond which an inline call doing the work of `1 + extra_stats` cached
    /// stats probably waited for the disk.
    fn slow_bar(&self, extra_stats: u64) -> u64 {
        self.slow_limit.max(self.typical_call * SLOW_FACTOR) + self.typical_call * extra_stats
    }

    /// Did this thread sleep since the last slow call? A call that read from the disk
    /// slept waiting for it; one that was only slow by the clock was preempted, or its
    /// vCPU was descheduled by the host (under emulation a cached walk sees dozens of
    /// those, and each sent a directory's work through io-wq for nothing). After a wait
    /// for completions the count says nothing, so the clock alone decides.
    fn slept(&mut self) -> bool {
        let Some(now) = sys::thread_sleeps() else {
            return true;
        };
        let slept = match self.sleeps_seen {
            Some(seen) => now > seen,
            None => true,
        };
        self.sleeps_seen = Some(now);
        if !slept {
            self.debug.clock_only_slow += 1;
        }
        slept
    }

    /// An inline call waited for the disk. A second one soon after means the tree is
    /// cold, not that this thread was preempted: then the next `RING_MODE_DIRS`
    /// directories are read through the ring and the wait counts towards waking the
    /// reserve.
    fn disk_wait_seen(&mut self) {
        let recent = self
            .last_slow_call
            .is_some_and(|at| self.inline_calls - at <= SLOW_WINDOW);
        self.last_slow_call = Some(self.inline_calls);
        if recent {
            self.ring_mode_dirs = RING_MODE_DIRS;
            self.disk_waits += 1;
        }
    }

    /// Opens a subdirectory on this thread; a slow open counts as a disk wait.
    fn open_inline(&mut self, parent: usize, name: CString) {
        let started = Tick::now();
        let opened = sys::open_dir_at(Some(self.dir(parent).fd.as_fd()), &name);
        if self.is_slow(started.elapsed()) {
            self.disk_wait_seen();
        }
        match self.child_opened(parent, name, opened) {
            Ok(Some((fd, path))) => self.add_dir(fd, path),
            Ok(None) => {}
            Err(name) => self.retry_when_fds_free(parent, name),
        }
    }

    /// Accounts one stat'ed entry of `dir`. A directory (listed without a type) is
    /// queued to be opened, and counted then.
    fn stat_done(&mut self, dir: usize, name: &CStr, res: io::Result<crate::count::EntryStat>) {
        let Some(d) = self.dirs[dir].as_ref() else {
            unreachable!("directory slot {dir} is free");
        };
        let path = || d.path.join(OsStr::from_bytes(name.to_bytes()));
        if sys::account_listed(&mut self.tally, res, path) {
            self.queue_open(dir, name);
        }
    }

    fn complete(&mut self, i: usize, res: i32) {
        let Some(op) = self.ops[i].take() else { return };
        self.free_ops.push(i);
        match op {
            Op::Statx { dir, name, out } => {
                let res = if res >= 0 {
                    Ok(sys::entry_stat(&out))
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                self.stat_done(dir, &name, res);
                self.dir(dir).users -= 1;
                self.maybe_finish(dir);
            }
            Op::Getdents { dir } => {
                self.dir(dir).users -= 1;
                if res > 0 {
                    let buf = std::mem::take(&mut self.dir(dir).buf);
                    // The kernel never returns more than it was given; a broken one
                    // must not make us read past the buffer either.
                    let filled = (res as usize).min(buf.len());
                    self.queue_entries(dir, &buf[..filled]);
                    self.dir(dir).buf = buf;
                    // The read brought the directory's first blocks in; the next read
                    // (often just the end) is likely cached: try it here.
                    self.list_inline(dir);
                } else {
                    if res < 0 {
                        let e = io::Error::from_raw_os_error(-res);
                        let path = self.dir(dir).path.clone();
                        sys::listing_failed(&mut self.tally, &path, &e);
                    }
                    self.dir(dir).listed = true;
                    self.maybe_finish(dir);
                }
            }
            Op::Open { parent, name } => {
                self.open_dirs -= 1;
                let opened = if res >= 0 {
                    // SAFETY: the kernel returned a new descriptor that nobody else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(res) })
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                match self.child_opened(parent, name, opened) {
                    Ok(Some((fd, path))) => self.add_dir(fd, path),
                    Ok(None) => {}
                    Err(name) => self.retry_when_fds_free(parent, name),
                }
            }
        }
    }
}

impl Drop for Walker {
    /// A walker that stops early (a ring error, a panic) may leave requests in flight
    /// that the kernel still completes into our buffers, names and descriptors: wait
    /// for them, and leak what they use if the ring cannot say they are done.
    fn drop(&mut self) {
        let mut attempts = 0;
        while self.in_flight > 0 && attempts < 100 {
            attempts += 1;
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => break,
            }
            let done = self.ring.completion().count();
            self.in_flight = self.in_flight.saturating_sub(done);
        }
        if self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.dirs));
            std::mem::forget(std::mem::take(&mut self.ops));
        }
    }
}

/// Ends the walk for everyone when a walker thread unwinds: the others would otherwise
/// wait for its work forever (and the join would wait for them).
struct FinishOnPanic<'a>(&'a Shared);

impl Drop for FinishOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.finish();
        }
    }
}
