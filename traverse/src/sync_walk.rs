//! The sync engine: one thread, getdents64 + statx, depth first.
//!
//! Each directory is read completely (names and stats) before its subdirectories are
//! visited, so a frame only keeps the names of the subdirectories still to visit. Frames
//! keep their descriptor so children are opened with openat (no path walks, no
//! PATH_MAX limit at any depth); when more descriptors are open than the budget allows,
//! the oldest frames give theirs up and get it back through the child's `..` when the
//! walk returns to them, checked by device and inode.

use crate::count::{EntryStat, Tally, Totals, WalkError};
use crate::sys;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

struct Frame {
    fd: Option<OwnedFd>,
    path: PathBuf,
    dev: u64,
    ino: u64,
    subdirs: Vec<CString>,
    next: usize,
}

/// Counts `path` on the calling thread.
pub fn count(path: &Path) -> Result<Totals, WalkError> {
    let (mut tally, top) = sys::open_top(path)?;
    if let Some((fd, st)) = top {
        walk(fd, path.to_path_buf(), &st, &mut tally);
    }
    Ok(tally.totals)
}

/// Reads one directory: counts every entry but the subdirectories (counted when they
/// are opened) and returns their names, with the error that ended the listing early if
/// one did: what was listed before it is kept, as du keeps it.
pub fn read_dir_counting(
    fd: &OwnedFd,
    path: &Path,
    buf: &mut [u8],
    tally: &mut Tally,
) -> (Vec<CString>, Option<io::Error>) {
    let mut subdirs = Vec::new();
    let error = sys::list_dir(fd.as_fd(), buf, |entry| {
        // Directories are counted when they are opened (see sys::count_subdir).
        if sys::listed_as_dir(entry.d_type) {
            subdirs.push(entry.c_name.to_owned());
            return;
        }
        let res = sys::statx_at(Some(fd.as_fd()), entry.c_name);
        if sys::account_listed(tally, res, || path.join(entry.name())) {
            subdirs.push(entry.c_name.to_owned());
        }
    });
    (subdirs, error)
}

/// [`read_dir_counting`], and a listing that failed part way reported (or, vanished,
/// skipped) as [`sys::listing_failed`] says: one directory's whole share of the walk
/// once it is open, which the tokio engine runs as its one blocking hop per directory.
pub fn read_listing(fd: &OwnedFd, path: &Path, buf: &mut [u8], tally: &mut Tally) -> Vec<CString> {
    let (subdirs, error) = read_dir_counting(fd, path, buf, tally);
    if let Some(e) = error {
        sys::listing_failed(tally, path, &e);
    }
    subdirs
}

/// Counts an entry whose path may exceed PATH_MAX: its parent is reached by openat one
/// component at a time. Counts the entry itself when `count_self`, and its contents if
/// it is a directory.
pub fn count_long_path(path: &Path, count_self: bool, tally: &mut Tally) {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => {
            tally.error(format!(
                "cannot access '{}': not a walkable path",
                path.display()
            ));
            return;
        }
    };
    let result = open_long(parent).and_then(|pfd| {
        let name = sys::cstring(name.as_bytes())?;
        let st = sys::statx_at(Some(pfd.as_fd()), &name)?;
        Ok((pfd, name, st))
    });
    let (pfd, name, st) = match result {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return,
        Err(e) => {
            tally.error(sys::cannot_access(path, &e));
            return;
        }
    };
    if count_self {
        tally.add(&st);
    }
    if st.is_dir() {
        match sys::open_dir_at(Some(pfd.as_fd()), &name) {
            Ok(fd) => walk(fd, path.to_path_buf(), &st, tally),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => tally.error(sys::cannot_read(path, &e)),
        }
    }
}

/// How many 1 ms waits [`count_subtree_at`] makes for a free descriptor.
const OUT_OF_FDS_WAITS: u32 = 1000;

/// Counts the listed subdirectory `name` of `parent` and everything below it.
pub fn count_subtree_at(
    parent: &OwnedFd,
    name: &CStr,
    path: PathBuf,
    budget: usize,
    tally: &mut Tally,
) {
    let opened = open_subdir_waiting(parent.as_fd(), name);
    if let Some((fd, st)) = sys::count_subdir(parent.as_fd(), name, &path, opened, tally) {
        walk_within(fd, path, &st, budget, tally);
    }
}

/// Opens the listed subdirectory `name` of `parent` for a caller that holds no
/// descriptor it could give back: other threads of the process close directories as
/// they finish them, so running out of descriptors is waited out (boundedly) before the
/// subtree is called unreadable.
pub fn open_subdir_waiting(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let mut opened = sys::open_dir_at(Some(parent), name);
    let mut waits = 0;
    while sys::is_out_of_fds(&opened) && waits < OUT_OF_FDS_WAITS {
        std::thread::sleep(std::time::Duration::from_millis(1));
        waits += 1;
        opened = sys::open_dir_at(Some(parent), name);
    }
    opened
}

/// Opens again, by its path of any length, a directory whose descriptor was given up,
/// refusing it unless it still has the device and inode `id` it was read with.
pub fn reopen_by_path(path: &Path, id: (u64, u64)) -> io::Result<OwnedFd> {
    open_long(path).and_then(|fd| same_dir(fd, id))
}

/// `fd` if it is the directory `id` (device, inode) names, an error if it is another.
fn same_dir(fd: OwnedFd, id: (u64, u64)) -> io::Result<OwnedFd> {
    let st = sys::statx_fd(fd.as_fd())?;
    if (st.dev, st.ino) != id {
        return Err(io::Error::other("directory moved during the walk"));
    }
    Ok(fd)
}

/// Opens a directory by a path of any length, one component at a time.
fn open_long(path: &Path) -> io::Result<OwnedFd> {
    let start = sys::open_dir_at(None, if path.is_absolute() { c"/" } else { c"." })?;
    open_below(&start, path)
}

/// Opens the directory `path` names below `base` (`..` included; a root or `.` names
/// nothing), one component at a time, so its length does not matter.
fn open_below(base: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    let mut fd: Option<OwnedFd> = None;
    for comp in path.components() {
        let name = match comp {
            std::path::Component::Normal(c) => sys::cstring(c.as_bytes())?,
            std::path::Component::ParentDir => c"..".to_owned(),
            _ => continue,
        };
        let from = fd.as_ref().unwrap_or(base);
        fd = Some(sys::open_dir_at(Some(from.as_fd()), &name)?);
    }
    match fd {
        Some(fd) => Ok(fd),
        None => sys::open_dir_at(Some(base.as_fd()), c"."),
    }
}

fn walk(fd: OwnedFd, path: PathBuf, st: &EntryStat, tally: &mut Tally) {
    walk_within(fd, path, st, sys::open_dir_budget(), tally);
}

/// [`walk`] holding at most `budget` descriptors.
fn walk_within(fd: OwnedFd, path: PathBuf, st: &EntryStat, budget: usize, tally: &mut Tally) {
    let mut stack: Vec<Frame> = Vec::new();
    let mut open = 0usize;
    // One buffer for the whole walk: a fresh zeroed one per directory costs real time.
    let mut buf = vec![0u8; 32 * 1024];
    enter(&mut stack, &mut open, fd, path, st, &mut buf, tally);
    while let Some(top) = stack.last_mut() {
        if top.next < top.subdirs.len() {
            let name = top.subdirs[top.next].clone();
            top.next += 1;
            let child_path = top.path.join(OsStr::from_bytes(name.as_bytes()));
            let Some(parent_fd) = top.fd.as_ref() else {
                tally.error(format!("lost the descriptor of '{}'", top.path.display()));
                continue;
            };
            // SAFETY: the innermost frame owns the descriptor until this iteration
            // ends; release_oldest never closes the innermost frame's descriptor.
            let parent = unsafe { BorrowedFd::borrow_raw(parent_fd.as_raw_fd()) };
            let open_child = || sys::open_dir_at(Some(parent), &name);
            let mut opened = open_child();
            // Other threads of the process hold descriptors too: when the process runs
            // out, give one of ours back and try once more.
            if sys::is_out_of_fds(&opened) && release_oldest(&mut stack, &mut open) {
                opened = open_child();
            }
            if let Some((fd, st)) = sys::count_subdir(parent, &name, &child_path, opened, tally) {
                if open >= budget {
                    release_oldest(&mut stack, &mut open);
                }
                enter(&mut stack, &mut open, fd, child_path, &st, &mut buf, tally);
            }
            continue;
        }
        // Done with this directory: return to the parent, reopening it if needed.
        let Some(done) = stack.pop() else { break };
        if done.fd.is_some() {
            open -= 1;
        }
        // The parent still open (or none left): nothing to reopen.
        if stack.last().is_none_or(|p| p.fd.is_some()) {
            continue;
        }
        let mut reopened = reopen_top(&stack, done.fd.as_ref());
        // Out of descriptors (other threads hold some): give one back, try once more.
        if sys::is_out_of_fds(&reopened) && release_oldest(&mut stack, &mut open) {
            reopened = reopen_top(&stack, done.fd.as_ref());
        }
        let Some(parent) = stack.last_mut() else {
            continue;
        };
        match reopened {
            Ok(fd) => {
                parent.fd = Some(fd);
                open += 1;
            }
            Err(e) => {
                tally.error(sys::cannot_return(&parent.path, &e));
                parent.next = parent.subdirs.len();
            }
        }
    }
}

/// Reopens the innermost frame of `stack`, whose descriptor was given up: through the
/// `..` of the child just left when it has a descriptor, else (or when that `..` is no
/// longer this directory: the child was moved) by its names from the nearest ancestor
/// still open, or from the top. Checked by device and inode either way.
fn reopen_top(stack: &[Frame], child: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let Some((target, ancestors)) = stack.split_last() else {
        return Err(io::Error::other("no directory to return to"));
    };
    let expect = |fd: OwnedFd| same_dir(fd, (target.dev, target.ino));
    if let Some(child) = child {
        let via_dotdot = sys::open_dir_at(Some(child.as_fd()), c"..").and_then(expect);
        if via_dotdot.is_ok() || sys::is_out_of_fds(&via_dotdot) {
            return via_dotdot;
        }
    }
    let by_names = match ancestors
        .iter()
        .rev()
        .find_map(|a| a.fd.as_ref().map(|fd| (fd, &a.path)))
    {
        Some((fd, base)) => {
            let rel = target
                .path
                .strip_prefix(base)
                .map_err(|_| io::Error::other("not below its ancestor"))?;
            open_below(fd, rel)
        }
        None => open_long(&target.path),
    };
    by_names.and_then(expect)
}

fn enter(
    stack: &mut Vec<Frame>,
    open: &mut usize,
    fd: OwnedFd,
    path: PathBuf,
    st: &EntryStat,
    buf: &mut [u8],
    tally: &mut Tally,
) {
    let subdirs = read_listing(&fd, &path, buf, tally);
    *open += 1;
    stack.push(Frame {
        fd: Some(fd),
        path,
        dev: st.dev,
        ino: st.ino,
        subdirs,
        next: 0,
    });
}

/// Closes the descriptor of the outermost frame that still has one; false if none.
fn release_oldest(stack: &mut [Frame], open: &mut usize) -> bool {
    // The innermost frame is about to open a child through its descriptor: keep it.
    let keep = stack.len().saturating_sub(1);
    match stack[..keep].iter_mut().find(|f| f.fd.is_some()) {
        Some(f) => {
            f.fd = None;
            *open -= 1;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(path: &Path, fd: Option<OwnedFd>) -> Frame {
        let st = sys::statx_at(None, &sys::cstring(path.as_os_str().as_bytes()).unwrap()).unwrap();
        Frame {
            fd,
            path: path.to_path_buf(),
            dev: st.dev,
            ino: st.ino,
            subdirs: Vec::new(),
            next: 0,
        }
    }

    fn open(path: &Path) -> OwnedFd {
        sys::open_dir_at(None, &sys::cstring(path.as_os_str().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn returning_to_a_released_directory_survives_a_moved_child() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("a/b"));
        std::fs::create_dir_all(b.join("c")).unwrap();
        std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        let c_fd = open(&b.join("c"));
        // The walk is in c, having given up the descriptors of a and b; c moves away,
        // so its `..` is no longer b.
        std::fs::rename(b.join("c"), tmp.path().join("elsewhere/c")).unwrap();
        let want = frame(&b, None);

        // No ancestor open: b is found from the top by its path.
        let stack = [frame(&a, None), frame(&b, None)];
        let fd = reopen_top(&stack, Some(&c_fd)).unwrap();
        let st = sys::statx_fd(fd.as_fd()).unwrap();
        assert_eq!((st.dev, st.ino), (want.dev, want.ino));

        // An ancestor open: b is found below it.
        let stack = [frame(&a, Some(open(&a))), frame(&b, None)];
        let fd = reopen_top(&stack, Some(&c_fd)).unwrap();
        let st = sys::statx_fd(fd.as_fd()).unwrap();
        assert_eq!((st.dev, st.ino), (want.dev, want.ino));

        // b itself replaced by another directory: refused, not mistaken for it.
        std::fs::rename(&b, tmp.path().join("old-b")).unwrap();
        std::fs::create_dir(&b).unwrap();
        let err = reopen_top(&stack, Some(&c_fd)).unwrap_err();
        assert!(err.to_string().contains("moved"), "{err}");
    }
}
