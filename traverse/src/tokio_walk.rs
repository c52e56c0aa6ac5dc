//! The tokio engine: the walk as a tokio user who knows the *at calls writes it.
//!
//! Directories are tasks, a few per core in flight (`hops_in_flight`), and each is exactly one
//! hop to the blocking pool (`spawn_blocking`) doing what the sync engine does for one
//! directory, with the sync engine's own functions: openat of the name under the
//! parent's descriptor (never following a symlink), a stat of the new descriptor, one
//! getdents64 loop and an fstatat by name for every entry that is not a directory. The
//! hop hands back its counts and the open directory with the names of its
//! subdirectories, which the async side turns into further tasks. Full paths serve only
//! messages (and the rare reopening below), so depth (PATH_MAX) does not matter, and a
//! comparison with the uring engine measures io_uring and scheduling, not path lookups.
//!
//! The descriptor of a directory whose subdirectories still wait stays open for them.
//! Descriptors are bounded: the tasks in flight and the directories kept open share
//! twice the budget (`open_dir_budget()` is half of what RLIMIT_NOFILE leaves, and no
//! other walker runs in the process); past that the oldest waiting directories give
//! theirs up and are opened again by path, checked by device and inode, when their turn
//! comes, as the sync engine returns to a directory.

use crate::count::{EntryStat, Tally, Totals, WalkError};
use crate::{sync_walk, sys};
use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;

/// The multi-threaded runtime both tokio engines walk on.
pub fn runtime(path: &Path) -> Result<tokio::runtime::Runtime, WalkError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| WalkError::Engine {
            path: path.into(),
            what: "tokio runtime",
            source,
        })
}

/// Counts `path` on a multi-threaded tokio runtime.
pub fn count(path: &Path) -> Result<Totals, WalkError> {
    let rt = runtime(path)?;
    rt.block_on(async {
        let top = path.to_path_buf();
        let start = tokio::task::spawn_blocking(move || {
            let (mut tally, opened) = sys::open_top(&top)?;
            let read = opened.and_then(|(fd, st)| read_opened(fd, top, &st, &mut tally));
            Ok(Hop {
                tally,
                parent: None,
                read,
            })
        })
        .await
        .map_err(|e| WalkError::Engine {
            path: path.into(),
            what: "tokio blocking task",
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(walk(start).await.totals)
    })
}

/// A directory that has been read, with the names of the subdirectories not yet walked.
struct Batch {
    /// Its descriptor, None once given up for others (reopened by path to go on).
    dir: Option<Arc<OwnedFd>>,
    path: PathBuf,
    /// (device, inode), to recognise it when it has to be reopened by path.
    id: (u64, u64),
    /// Never empty while the batch waits on the walk's stack.
    subdirs: Vec<CString>,
}

/// What one blocking hop hands back to the async side.
struct Hop {
    tally: Tally,
    /// The parent descriptor the hop opened from, handed back rather than dropped on the
    /// blocking thread, so the walk knows when the last user has closed it.
    parent: Option<Arc<OwnedFd>>,
    /// The directory read, when it has subdirectories to walk.
    read: Option<Batch>,
}

/// The work of one blocking hop.
enum Job {
    /// Open, count and read the listed subdirectory (name, full path) of a directory.
    Subdir(Arc<OwnedFd>, CString, PathBuf),
    /// Open again a directory whose descriptor was given up, to walk the rest of it.
    Resume(Batch),
}

impl Job {
    fn run(self) -> Hop {
        let mut tally = Tally::default();
        match self {
            Job::Subdir(parent, name, path) => {
                let opened = sync_walk::open_subdir_waiting(parent.as_fd(), &name);
                let read = sys::count_subdir(parent.as_fd(), &name, &path, opened, &mut tally)
                    .and_then(|(fd, st)| read_opened(fd, path, &st, &mut tally));
                Hop {
                    tally,
                    parent: Some(parent),
                    read,
                }
            }
            Job::Resume(mut batch) => {
                let read = match sync_walk::reopen_by_path(&batch.path, batch.id) {
                    Ok(fd) => {
                        batch.dir = Some(Arc::new(fd));
                        Some(batch)
                    }
                    // Its subdirectories go unwalked, as in the sync engine.
                    Err(e) => {
                        tally.error(sys::cannot_return(&batch.path, &e));
                        None
                    }
                };
                Hop {
                    tally,
                    parent: None,
                    read,
                }
            }
        }
    }
}

/// Reads the open directory `fd` (counted already) and keeps it open when it has
/// subdirectories.
fn read_opened(fd: OwnedFd, path: PathBuf, st: &EntryStat, tally: &mut Tally) -> Option<Batch> {
    thread_local! {
        // One buffer per blocking thread: a fresh zeroed one per directory costs real
        // time, and the pool's threads live across many directories.
        static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 32 * 1024]);
    }
    let subdirs = BUF.with_borrow_mut(|buf| sync_walk::read_listing(&fd, &path, buf, tally));
    (!subdirs.is_empty()).then(|| Batch {
        dir: Some(Arc::new(fd)),
        path,
        id: (st.dev, st.ino),
        subdirs,
    })
}

/// The async side's state: totals, and the directories whose subdirectories wait.
struct Walk {
    tally: Tally,
    /// Last in, first out, so that the directories kept open stay few (depth first).
    stack: Vec<Batch>,
    /// Every batch below this index has given up its descriptor; the rest have theirs.
    released: usize,
    /// Directory descriptors open outside the hops in flight: those of the stack's
    /// batches and those hops still borrow as parents.
    held: usize,
    /// Counters printed with `TRAVERSE_DEBUG`.
    debug: Counters,
}

/// What the walk did, printed to stderr at the end when `TRAVERSE_DEBUG` is set (the
/// tests check with it that a small descriptor limit makes directories reopen).
#[derive(Default)]
struct Counters {
    /// Hops run, directories read or reopened.
    hops: u64,
    /// Waiting directories that gave up their descriptor.
    given_up: u64,
    /// Directories opened again by path.
    reopened: u64,
    /// Of those, the ones whose path is longer than PATH_MAX allows.
    reopened_deep: u64,
    /// Most descriptors held at once (see [`Walk::held`]).
    peak_held: usize,
    /// Most hops in flight at once.
    peak_in_flight: usize,
}

impl Walk {
    /// Takes in what a hop found.
    fn absorb(&mut self, hop: Hop) {
        self.tally.merge(hop.tally);
        self.close(hop.parent);
        self.debug.hops += 1;
        if let Some(batch) = hop.read {
            self.held += 1;
            self.debug.peak_held = self.debug.peak_held.max(self.held);
            self.stack.push(batch);
        }
    }

    /// Drops one user of a directory descriptor; the last closes it.
    fn close(&mut self, dir: Option<Arc<OwnedFd>>) {
        if dir.and_then(Arc::into_inner).is_some() {
            self.held -= 1;
        }
    }

    /// The next hop to run, if any directory waits.
    fn next_job(&mut self) -> Option<Job> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(dir) = top.dir.clone() else {
                let batch = self.stack.pop()?;
                self.released = self.released.min(self.stack.len());
                self.debug.reopened += 1;
                if batch.path.as_os_str().len() >= libc::PATH_MAX as usize {
                    self.debug.reopened_deep += 1;
                }
                return Some(Job::Resume(batch));
            };
            let next = top.subdirs.pop().map(|name| {
                let path = top.path.join(OsStr::from_bytes(name.as_bytes()));
                (name, path)
            });
            if top.subdirs.is_empty() {
                if let Some(done) = self.stack.pop() {
                    self.close(done.dir);
                }
                self.released = self.released.min(self.stack.len());
            }
            match next {
                Some((name, path)) => return Some(Job::Subdir(dir, name, path)),
                None => self.close(Some(dir)),
            }
        }
    }

    /// Gives up the descriptors of the oldest waiting directories until the hops in
    /// flight (each opening one more) and those held fit in `limit`.
    fn shed(&mut self, in_flight: usize, limit: usize) {
        while self.held + in_flight > limit && self.released < self.stack.len() {
            let dir = self.stack[self.released].dir.take();
            self.released += 1;
            self.debug.given_up += 1;
            self.close(dir);
        }
    }
}

/// Directories in flight: 4 per core (TRAVERSE_TOKIO_INFLIGHT overrides). Each is a
/// blocking-pool thread busy in system calls; more than a few per core only adds
/// threads that contend for the same cores. Measured warm on the 2-core host (/usr,
/// 133 603 entries, 15 runs each): 2 in flight 634 ms, 8 414 ms, 64 580 ms, 4 096 (the
/// descriptor budget) 633 ms.
fn hops_in_flight(budget: usize) -> usize {
    let per_core = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
    std::env::var("TRAVERSE_TOKIO_INFLIGHT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(per_core)
        .min(budget)
}

async fn walk(start: Hop) -> Tally {
    let budget = sys::open_dir_budget();
    let limit = 2 * budget;
    let in_flight = hops_in_flight(budget);
    let mut w = Walk {
        tally: Tally::default(),
        stack: Vec::new(),
        released: 0,
        held: 0,
        debug: Counters::default(),
    };
    w.absorb(start);
    let mut running = JoinSet::new();
    loop {
        while running.len() < in_flight {
            let Some(job) = w.next_job() else { break };
            running.spawn_blocking(move || job.run());
            w.debug.peak_in_flight = w.debug.peak_in_flight.max(running.len());
            w.shed(running.len(), limit);
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(hop) => w.absorb(hop),
            Err(e) => w.tally.error(format!("directory task failed: {e}")),
        }
        w.shed(running.len(), limit);
    }
    if std::env::var_os("TRAVERSE_DEBUG").is_some() {
        let c = &w.debug;
        eprintln!(
            "traverse tokio: {} hops, {} in flight at most (cap {in_flight}), {} descriptors \
             held at most (limit {limit} with those in flight), {} given up, {} reopened \
             ({} beyond PATH_MAX)",
            c.hops, c.peak_in_flight, c.peak_held, c.given_up, c.reopened, c.reopened_deep
        );
    }
    w.tally
}
