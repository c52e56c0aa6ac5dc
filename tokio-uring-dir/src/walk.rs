//! A recursive walk of a directory tree with many directories read at once on the
//! runtime's ring.
//!
//! One [`Walk`] is a [`Stream`] driven by whoever polls it: no tasks are spawned. Each
//! poll moves every operation it owns along (opens, directory reads, stats), so that
//! when the runtime next waits, all of them go to the kernel in one submission.

use crate::dir::Record;
use crate::entry::{dev_of, FileType, Metadata};
use crate::error::op_error;
use crate::name::Name;
use crate::ops::{self, OpenDir};
use crate::{Dir, DirOptions};
use futures_core::Stream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// The default bound on directory descriptors a walk holds (see [`WalkDir::max_open`]).
pub const DEFAULT_MAX_OPEN: usize = 32;

/// Stats in flight at most; reading entries pauses while this many wait, so a huge
/// directory with [`WalkDir::metadata`] does not queue one request per entry at once.
const MAX_STATS_IN_FLIGHT: usize = 256;

/// Entries made ready in one poll at most before they are handed out: bounds the
/// queue when the caller is slower than the walk.
const READY_HIGH_WATER: usize = 1024;

/// Which directory is opened next when a walk may open one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The most recently found directory first: the walk goes deep before wide, and
    /// the directories waiting to be opened stay few (about depth x fan-out).
    DepthFirst,
    /// The directory found first, first: level by level (when one directory is read
    /// at a time, exactly so); many more directories wait to be opened.
    BreadthFirst,
}

/// A recursive walk of a directory tree, configured like `walkdir::WalkDir`.
///
/// ```
/// use tokio_uring_dir::WalkDir;
///
/// tokio_uring::start(async {
///     let mut walk = WalkDir::new(".").metadata(true).walk();
///     let mut bytes = 0;
///     while let Some(entry) = walk.next().await {
///         match entry {
///             Ok(entry) => bytes += entry.metadata().map_or(0, |m| m.len()),
///             Err(e) => eprintln!("{e}"),
///         }
///     }
///     assert!(bytes > 0);
///     println!("{bytes} bytes");
/// });
/// ```
///
/// The root itself is the first entry (depth 0); the entries of a directory at depth
/// `d` have depth `d + 1`. Symlinks are reported, not followed, unless
/// [`follow_links`](Self::follow_links) says so; the root is followed if it is one.
#[derive(Debug, Clone)]
pub struct WalkDir {
    root: PathBuf,
    max_depth: usize,
    follow_links: bool,
    same_file_system: bool,
    metadata: bool,
    order: Order,
    max_open: usize,
    dir: DirOptions,
}

impl WalkDir {
    /// A walk of the tree at `root`, with the defaults: any depth, symlinks not
    /// followed, crossing filesystems, no metadata, depth first, [`DEFAULT_MAX_OPEN`]
    /// descriptors, [`DirOptions::new`] for each directory.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
            max_depth: usize::MAX,
            follow_links: false,
            same_file_system: false,
            metadata: false,
            order: Order::DepthFirst,
            max_open: DEFAULT_MAX_OPEN,
            dir: DirOptions::new(),
        }
    }

    /// Entries deeper than `depth` are not reported, and directories at `depth` not
    /// read. 0 reports the root alone.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Descend into symlinks to directories. The entry of such a symlink then reports
    /// the target's type and metadata ([`WalkEntry::path_is_symlink`] still says it is
    /// a link), and a link back to a directory being walked is reported as an error
    /// instead of being walked again.
    pub fn follow_links(mut self, follow: bool) -> Self {
        self.follow_links = follow;
        self
    }

    /// Do not descend into directories on another filesystem than the root's (their
    /// entries, the mount points, are still reported). Costs a stat per directory.
    pub fn same_file_system(mut self, same: bool) -> Self {
        self.same_file_system = same;
        self
    }

    /// Stat every entry (statx on the ring, relative to its directory's descriptor,
    /// many in flight at once) and report the result as [`WalkEntry::metadata`].
    pub fn metadata(mut self, metadata: bool) -> Self {
        self.metadata = metadata;
        self
    }

    /// Which waiting directory is opened next; see [`Order`]. With more than one
    /// directory read at a time, the entries of different directories interleave in
    /// the order their reads complete; each directory's own come in its order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// At most `n` (at least 1) directory descriptors open at once: directories being
    /// opened or read, and parents kept open so that their subdirectories are opened
    /// relative to them. When the bound is reached, the oldest kept parent is closed and
    /// its remaining subdirectories are opened by their full path. Also the number of
    /// directories read at once. (A stat still in flight holds its directory's
    /// descriptor until it completes; entries handed out hold none.)
    pub fn max_open(mut self, n: usize) -> Self {
        self.max_open = n.max(1);
        self
    }

    /// How each directory is read (buffer size, read-ahead, fallback).
    pub fn dir_options(mut self, options: DirOptions) -> Self {
        self.dir = options;
        self
    }

    /// Starts the walk. Nothing happens until the returned stream is polled.
    pub fn walk(self) -> Walk {
        Walk {
            stage: Stage::Start,
            frontier: VecDeque::new(),
            opening: Vec::new(),
            readers: Vec::new(),
            stats: Vec::new(),
            ready: VecDeque::new(),
            kept_parents: VecDeque::new(),
            root_dev: None,
            nudge: Arc::default(),
            options: self,
        }
    }
}

/// One entry of a walk: a name in a directory, with what the walk learned of it.
///
/// Holds no descriptor, so a caller may keep any number of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// The directory's path; for the root, the root's path.
    dir: Arc<Path>,
    /// None for the root.
    name: Option<Name>,
    ino: u64,
    file_type: FileType,
    depth: usize,
    /// Boxed: entries move through the walk's queue and out, and most walks have none.
    metadata: Option<Box<Metadata>>,
    is_symlink: bool,
}

impl WalkEntry {
    /// The path: the root's path joined with every name down to this entry.
    pub fn path(&self) -> PathBuf {
        match &self.name {
            Some(name) => self.dir.join(name),
            None => self.dir.to_path_buf(),
        }
    }

    /// The entry's name in its directory; for the root, the last component of its path
    /// (or the whole path when it has none, like `/` or `..`).
    pub fn file_name(&self) -> &OsStr {
        match &self.name {
            Some(name) => name,
            None => self.dir.file_name().unwrap_or(self.dir.as_os_str()),
        }
    }

    /// The file type, without following symlinks unless the walk follows them (then a
    /// followed link has its target's type).
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The inode number (from the directory entry; from the stat when there is one).
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// 0 for the root, 1 for its entries, and so on.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The stat of the entry, when the walk was asked for [`WalkDir::metadata`].
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_deref()
    }

    /// True when the entry itself is a symlink (also when the walk followed it).
    pub fn path_is_symlink(&self) -> bool {
        self.is_symlink
    }
}

/// A directory whose subdirectories wait to be opened relative to its descriptor.
struct Parent {
    path: Arc<Path>,
    /// Given up (None) when the walk needs the descriptor for another directory.
    fd: RefCell<Option<Arc<OwnedFd>>>,
    ancestry: Option<Rc<Ancestor>>,
}

/// The (device, inode) of a directory and of those above it: kept only when following
/// symlinks, to tell a link back up the tree from a new directory.
struct Ancestor {
    dev: u64,
    ino: u64,
    up: Option<Rc<Ancestor>>,
}

impl Ancestor {
    fn contains(this: &Option<Rc<Ancestor>>, dev: u64, ino: u64) -> bool {
        let mut at = this.as_deref();
        while let Some(a) = at {
            if a.dev == dev && a.ino == ino {
                return true;
            }
            at = a.up.as_deref();
        }
        false
    }
}

/// A directory found and not yet opened.
struct Pending {
    /// None for the root, which is opened by its path.
    parent: Option<Rc<Parent>>,
    name: Name,
    path: Arc<Path>,
    depth: usize,
    /// Reached through a symlink the walk follows: open it following.
    via_symlink: bool,
    /// This directory and those above, when following symlinks.
    ancestry: Option<Rc<Ancestor>>,
}

struct Opening {
    open: OpenDir,
    pending: Pending,
    /// Polled once, so a completion will wake the walk.
    polled: bool,
}

/// The waker the walk's requests hold: it notes that one of them completed before
/// waking the walk's task, so that a poll with nothing completed does not poll every
/// request in flight again (in tokio-uring each such poll borrows the driver and looks
/// the request up: a third of a walk's per-directory instructions went there).
#[derive(Default)]
struct Nudge {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Nudge {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *task {
            Some(known) if known.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
    }
}

impl Wake for Nudge {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

struct Reader {
    dir: Dir,
    depth: usize,
    ancestry: Option<Rc<Ancestor>>,
    /// This directory as the parent of the subdirectories found so far.
    as_parent: Option<Rc<Parent>>,
}

type StatFuture = Pin<Box<dyn Future<Output = io::Result<libc::statx>>>>;

/// An entry waiting for its stat.
struct Stat {
    stat: StatFuture,
    entry: Record,
    depth: usize,
    parent: Rc<Parent>,
    /// The stat follows the entry's symlink.
    following: bool,
}

enum Stage {
    /// The root is not looked at yet.
    Start,
    /// The root's stat is in flight.
    Root(StatFuture),
    /// Directories are being read.
    Walking,
}

/// A walk in progress: a [`Stream`] of [`WalkEntry`]s; see [`WalkDir`].
///
/// An error (a directory that cannot be opened or read, an entry that cannot be
/// stat'ed, a symlink loop) is one item of the stream, and the walk goes on with the
/// rest; each error names its operation and path (see [`OpError`](crate::OpError)).
/// Entries removed while the walk runs show up as `NotFound` errors when the walk
/// needed more than their name.
///
/// **Dropping** a walk at any point is safe: requests still in flight keep the memory
/// and descriptors they use until the kernel is done with them (see [`Dir`]), and are
/// closed then; none is leaked.
pub struct Walk {
    options: WalkDir,
    stage: Stage,
    frontier: VecDeque<Pending>,
    opening: Vec<Opening>,
    readers: Vec<Reader>,
    stats: Vec<Stat>,
    ready: VecDeque<io::Result<WalkEntry>>,
    /// Parents of finished directories still holding a descriptor for their waiting
    /// subdirectories, oldest first.
    kept_parents: VecDeque<Weak<Parent>>,
    /// The root's filesystem, for [`WalkDir::same_file_system`].
    root_dev: Option<u64>,
    nudge: Arc<Nudge>,
}

impl std::fmt::Debug for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk")
            .field("root", &self.options.root)
            .field("waiting_dirs", &self.frontier.len())
            .field("opening", &self.opening.len())
            .field("reading", &self.readers.len())
            .field("stats", &self.stats.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl Walk {
    /// The next entry, `None` once the whole tree was walked.
    pub async fn next(&mut self) -> Option<io::Result<WalkEntry>> {
        std::future::poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// Polls for the next entry: the building block of [`next`](Self::next) and of the
    /// [`Stream`] implementation.
    pub fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<WalkEntry>>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            let progressed = match std::mem::replace(&mut self.stage, Stage::Walking) {
                Stage::Start => {
                    self.stage = Stage::Root(self.stat_root());
                    true
                }
                Stage::Root(mut stat) => match stat.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.stage = Stage::Root(stat);
                        return Poll::Pending;
                    }
                    Poll::Ready(res) => {
                        self.found_root(res);
                        true
                    }
                },
                Stage::Walking => self.step(cx),
            };
            if !progressed {
                let idle = self.frontier.is_empty()
                    && self.opening.is_empty()
                    && self.readers.is_empty()
                    && self.stats.is_empty();
                return if idle {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
        }
    }

    /// The root, like `stat` (following a symlink).
    fn stat_root(&self) -> StatFuture {
        let root = self.options.root.clone().into_os_string();
        let mask = self.stat_mask();
        Box::pin(async move { ops::statx_at(None, &root, 0, mask).await })
    }

    fn stat_mask(&self) -> u32 {
        if self.options.metadata {
            libc::STATX_BASIC_STATS
        } else {
            libc::STATX_TYPE | libc::STATX_INO
        }
    }

    fn found_root(&mut self, res: io::Result<libc::statx>) {
        let root: Arc<Path> = Arc::from(self.options.root.as_path());
        let stx = match res {
            Ok(stx) => stx,
            Err(e) => {
                self.ready.push_back(Err(op_error("statx", &root, e)));
                return;
            }
        };
        let file_type = FileType::from_mode(u32::from(stx.stx_mode));
        self.root_dev = Some(dev_of(&stx));
        let ancestry = self.options.follow_links.then(|| {
            Rc::new(Ancestor {
                dev: dev_of(&stx),
                ino: stx.stx_ino,
                up: None,
            })
        });
        self.ready.push_back(Ok(WalkEntry {
            dir: Arc::clone(&root),
            name: None,
            ino: stx.stx_ino,
            file_type,
            depth: 0,
            metadata: self
                .options
                .metadata
                .then(|| Box::new(Metadata::from_statx(&stx))),
            is_symlink: false,
        }));
        if file_type.is_dir() && self.options.max_depth > 0 {
            self.frontier.push_back(Pending {
                parent: None,
                name: Name::from(root.as_os_str()),
                path: root,
                depth: 0,
                via_symlink: true,
                ancestry,
            });
        }
    }

    /// One round over everything in flight; false when nothing moved.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        self.nudge.set_task(cx.waker());
        // Swapped before anything is polled: a completion from here on sets it again
        // and is seen by the next step.
        let completed = self.nudge.woken.swap(false, Ordering::AcqRel);
        let waker = Waker::from(Arc::clone(&self.nudge));
        let cx = &mut Context::from_waker(&waker);
        let mut progressed = self.start_opens();
        progressed |= self.poll_opens(cx, completed);
        progressed |= self.poll_stats(cx);
        progressed |= self.poll_readers(cx, completed);
        // Opens made possible by directories that just ended start in this round, so
        // that they go to the kernel with the rest.
        progressed |= self.start_opens();
        progressed
    }

    /// Descriptors held now: directories opening and being read, and kept parents.
    fn descriptors(&mut self) -> usize {
        self.kept_parents.retain(|p| {
            p.upgrade()
                .is_some_and(|parent| parent.fd.borrow().is_some())
        });
        self.opening.len() + self.readers.len() + self.kept_parents.len()
    }

    fn start_opens(&mut self) -> bool {
        let mut started = false;
        while !self.frontier.is_empty() {
            let held = self.descriptors();
            if held >= self.options.max_open {
                // Give up the oldest kept parent's descriptor, if there is one.
                let Some(oldest) = self.kept_parents.pop_front() else {
                    break;
                };
                if let Some(parent) = oldest.upgrade() {
                    parent.fd.borrow_mut().take();
                }
                continue;
            }
            let next = match self.options.order {
                Order::DepthFirst => self.frontier.pop_back(),
                Order::BreadthFirst => self.frontier.pop_front(),
            };
            let Some(pending) = next else { break };
            started = true;
            let nofollow = !pending.via_symlink;
            let parent_fd = pending
                .parent
                .as_ref()
                .and_then(|parent| parent.fd.borrow().clone());
            let open = match &parent_fd {
                Some(fd) => ops::open_dir_at(Some(fd), &pending.name, nofollow),
                None => ops::open_dir_at(None, pending.path.as_os_str(), nofollow),
            };
            match open {
                Ok(open) => self.opening.push(Opening {
                    open,
                    pending,
                    polled: false,
                }),
                Err(e) => self
                    .ready
                    .push_back(Err(op_error("open", &pending.path, e))),
            }
        }
        started
    }

    /// Polls the opens that may have completed: all after a completion, else only
    /// those never polled.
    fn poll_opens(&mut self, cx: &mut Context<'_>, completed: bool) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.opening.len() {
            let opening = &mut self.opening[i];
            if opening.polled && !completed {
                i += 1;
                continue;
            }
            let Poll::Ready(res) = Pin::new(&mut opening.open).poll(cx) else {
                opening.polled = true;
                i += 1;
                continue;
            };
            progressed = true;
            let Opening { pending, .. } = self.opening.swap_remove(i);
            let dir = res
                .map_err(|e| op_error("open", &pending.path, e))
                .and_then(|fd| self.options.dir.wrap_fd(fd, Arc::clone(&pending.path)));
            match dir {
                Ok(dir) => self.readers.push(Reader {
                    dir,
                    depth: pending.depth,
                    ancestry: pending.ancestry,
                    as_parent: None,
                }),
                Err(e) => self.ready.push_back(Err(e)),
            }
        }
        progressed
    }

    /// Takes entries from the readers; one waiting for a read is polled only after a
    /// completion (its read was polled when it started, so it wakes the walk).
    fn poll_readers(&mut self, cx: &mut Context<'_>, completed: bool) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.readers.len() {
            if self.stats.len() >= MAX_STATS_IN_FLIGHT || self.ready.len() >= READY_HIGH_WATER {
                break;
            }
            if !completed && self.readers[i].dir.waits_for_completion() {
                i += 1;
                continue;
            }
            match self.readers[i].dir.poll_next_record(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Some(Ok(entry))) => {
                    progressed = true;
                    self.found(i, entry);
                }
                Poll::Ready(Some(Err(e))) => {
                    progressed = true;
                    // A Dir ends its listing after an error.
                    self.ready.push_back(Err(e));
                }
                Poll::Ready(None) => {
                    progressed = true;
                    let reader = self.readers.swap_remove(i);
                    if let Some(parent) = reader.as_parent {
                        if Rc::strong_count(&parent) > 1 {
                            self.kept_parents.push_back(Rc::downgrade(&parent));
                        }
                    }
                    // Dropping the Dir closes its descriptor, unless a stat of one of
                    // its entries is still in flight (that holds a share).
                }
            }
        }
        progressed
    }

    /// The parent handle of reader `i`, made when first needed.
    fn parent_of(&mut self, i: usize) -> Rc<Parent> {
        let reader = &mut self.readers[i];
        let parent = reader.as_parent.get_or_insert_with(|| {
            Rc::new(Parent {
                path: Arc::from(reader.dir.path()),
                fd: RefCell::new(Some(Arc::clone(reader.dir.fd_share()))),
                ancestry: reader.ancestry.clone(),
            })
        });
        Rc::clone(parent)
    }

    /// An entry of reader `i`: reported at once, or after a stat when the walk needs
    /// more than the directory entry says.
    fn found(&mut self, i: usize, entry: Record) {
        let depth = self.readers[i].depth + 1;
        let d_type = FileType::from_d_type(entry.d_type);
        let may_descend = depth < self.options.max_depth;
        let following =
            self.options.follow_links && may_descend && d_type.is_some_and(|t| t.is_symlink());
        let parent = self.parent_of(i);
        match d_type {
            Some(file_type)
                if !self.options.metadata
                    && !following
                    && !(may_descend
                        && file_type.is_dir()
                        && (self.options.follow_links || self.options.same_file_system)) =>
            {
                self.report(entry, depth, file_type, None, &parent, false);
            }
            _ => {
                let fd = Arc::clone(self.readers[i].dir.fd_share());
                let name = entry.name.clone();
                let flags = if following {
                    0
                } else {
                    libc::AT_SYMLINK_NOFOLLOW
                };
                let mask = self.stat_mask();
                let stat: StatFuture =
                    Box::pin(async move { ops::statx_at(Some(&fd), &name, flags, mask).await });
                self.stats.push(Stat {
                    stat,
                    entry,
                    depth,
                    parent,
                    following,
                });
            }
        }
    }

    fn poll_stats(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.stats.len() {
            let Poll::Ready(res) = self.stats[i].stat.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            progressed = true;
            let Stat {
                entry,
                depth,
                parent,
                following,
                ..
            } = self.stats.swap_remove(i);
            match res {
                Ok(stx) => {
                    let file_type = FileType::from_mode(u32::from(stx.stx_mode));
                    self.report(entry, depth, file_type, Some(&stx), &parent, following);
                }
                Err(e) => {
                    self.ready
                        .push_back(Err(op_error("statx", &parent.path.join(&entry.name), e)))
                }
            }
        }
        progressed
    }

    /// Hands `entry` out, and queues it for opening when it is a directory to walk.
    fn report(
        &mut self,
        entry: Record,
        depth: usize,
        file_type: FileType,
        stx: Option<&libc::statx>,
        parent: &Rc<Parent>,
        following: bool,
    ) {
        let is_symlink = following || file_type.is_symlink();
        let Record {
            name, ino: d_ino, ..
        } = entry;
        if file_type.is_dir() && depth < self.options.max_depth {
            let path: Arc<Path> = Arc::from(joined(&parent.path, &name));
            let dev = stx.map(dev_of);
            let ino = stx.map_or(d_ino, |s| s.stx_ino);
            let other_fs = self.options.same_file_system && dev != self.root_dev;
            let ancestry = match (self.options.follow_links, dev) {
                (true, Some(dev)) => {
                    if Ancestor::contains(&parent.ancestry, dev, ino) {
                        let err = io::Error::other(
                            "a symlink loop: this directory is also one of its ancestors",
                        );
                        self.ready.push_back(Err(op_error("walk", &path, err)));
                        return;
                    }
                    Some(Rc::new(Ancestor {
                        dev,
                        ino,
                        up: parent.ancestry.clone(),
                    }))
                }
                _ => None,
            };
            if !other_fs {
                self.frontier.push_back(Pending {
                    parent: Some(Rc::clone(parent)),
                    name: name.clone(),
                    path,
                    depth,
                    via_symlink: following,
                    ancestry,
                });
            }
        }
        self.ready.push_back(Ok(WalkEntry {
            dir: Arc::clone(&parent.path),
            name: Some(name),
            ino: stx.map_or(d_ino, |s| s.stx_ino),
            file_type,
            depth,
            metadata: if self.options.metadata {
                stx.map(|stx| Box::new(Metadata::from_statx(stx)))
            } else {
                None
            },
            is_symlink,
        }));
    }
}

/// `dir.join(name)` in one allocation (join grows its buffer twice for most paths).
fn joined(dir: &Path, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
    path.push(dir);
    path.push(name);
    path
}

impl Stream for Walk {
    type Item = io::Result<WalkEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_entry(cx)
    }
}
