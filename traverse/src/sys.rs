//! Thin, checked wrappers of the syscalls the engines share.

use crate::count::{strerror, EntryStat, Tally, WalkError};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Flags every directory is opened with: never follow a symlink.
pub const DIR_OPEN_FLAGS: i32 =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The statx fields a walk needs.
pub const STATX_MASK: u32 =
    libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_NLINK | libc::STATX_INO | libc::STATX_SIZE;

/// Converts a filled statx buffer.
pub fn entry_stat(sx: &libc::statx) -> EntryStat {
    EntryStat {
        mode: u32::from(sx.stx_mode),
        size: sx.stx_size,
        nlink: u64::from(sx.stx_nlink),
        // st_dev's encoding, so statx and stat results (the tokio engine's) agree.
        dev: libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
        ino: sx.stx_ino,
    }
}

/// How many times the calling thread has slept (voluntary context switches), or None
/// when the kernel does not say.
pub fn thread_sleeps() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a writable rusage buffer; RUSAGE_THREAD reads this thread's.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded and filled the buffer (it started zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    u64::try_from(usage.ru_nvcsw).ok()
}

/// Reads the whole directory `fd` with getdents64 into `buf`, calling `each` for every
/// entry but `.` and `..`; returns the error that ended the listing early, if one did
/// (what was listed before it has been handed to `each`, as du keeps it).
pub fn list_dir(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    mut each: impl FnMut(&uring_getdents::DirEntry<'_>),
) -> Option<io::Error> {
    loop {
        let n = match uring_getdents::getdents64(fd, buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(e),
        };
        for entry in uring_getdents::DirentIter::new(&buf[..n]) {
            match entry {
                Ok(entry) if is_dot(entry.name()) => {}
                Ok(entry) => each(&entry),
                Err(e) => return Some(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

/// True when `r` failed because the process or the system ran out of descriptors.
pub fn is_out_of_fds<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// statx without following a final symlink; `dir` None means relative to the cwd.
pub fn statx_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<EntryStat> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    statx_raw(
        dirfd,
        name,
        libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
    )
}

/// statx of an open descriptor. An empty path with AT_EMPTY_PATH skips the path lookup
/// (since Linux 6.11 even the copy of the name), so a directory that had to be opened
/// anyway is counted for the price of a plain fstat.
pub fn statx_fd(fd: BorrowedFd<'_>) -> io::Result<EntryStat> {
    statx_raw(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn statx_raw(dirfd: i32, name: &CStr, flags: i32) -> io::Result<EntryStat> {
    let mut sx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `name` is NUL-terminated and `sx` is a writable statx buffer.
    let rc = unsafe { libc::statx(dirfd, name.as_ptr(), flags, STATX_MASK, sx.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded and filled the buffer (zeroed beforehand besides).
    Ok(entry_stat(unsafe { sx.assume_init_ref() }))
}

/// Counts subdirectory `name` of `parent` (at `path`), given the result of opening it,
/// and returns what there is to walk. Listings say which entries are directories
/// (d_type), so they are opened without a stat by name and counted through the new
/// descriptor: one path lookup instead of two. When the open failed the entry is
/// stat'ed by name after all: it may have become a file or symlink since it was listed
/// (counted as what it is now), or be an unreadable directory (counted, and reported
/// as du reports it). Running out of descriptors is the caller's to handle first.
pub fn count_subdir(
    parent: BorrowedFd<'_>,
    name: &CStr,
    path: &std::path::Path,
    opened: io::Result<OwnedFd>,
    tally: &mut Tally,
) -> Option<(OwnedFd, EntryStat)> {
    let open_error = match opened {
        Ok(fd) => match statx_fd(fd.as_fd()) {
            Ok(st) => {
                tally.add(&st);
                return Some((fd, st));
            }
            Err(e) => {
                tally.error(cannot_access(path, &e));
                return None;
            }
        },
        // Removed since it was listed: skipped, as du does.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return None,
        Err(e) => e,
    };
    match statx_at(Some(parent), name) {
        Ok(st) => {
            tally.add(&st);
            if st.is_dir() {
                tally.error(cannot_read(path, &open_error));
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => tally.error(cannot_access(path, &e)),
    }
    None
}

/// Accounts an entry of a listing stat'ed by name (`path` names it in messages) and
/// says whether it is a directory, which the caller opens and counts then (see
/// [`count_subdir`]). An entry removed since it was listed is skipped silently (GNU du
/// would say "cannot access" and exit 1; see the crate documentation); other failures
/// are reported as du reports them.
pub fn account_listed(
    tally: &mut Tally,
    res: io::Result<EntryStat>,
    path: impl FnOnce() -> std::path::PathBuf,
) -> bool {
    match res {
        Ok(st) if st.is_dir() => return true,
        Ok(st) => tally.add(&st),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => tally.error(cannot_access(&path(), &e)),
    }
    false
}

/// Records a directory listing that failed part way: a directory removed after it was
/// opened (ENOENT) vanished and is skipped like any vanished entry (see the crate
/// documentation; du would report it); anything else is reported.
pub fn listing_failed(tally: &mut Tally, path: &std::path::Path, err: &io::Error) {
    if err.raw_os_error() != Some(libc::ENOENT) {
        tally.error(cannot_read(path, err));
    }
}

/// Is this listed entry a directory by its d_type? DT_UNKNOWN (file systems that do not
/// fill d_type) says no: such entries are stat'ed by name first, and a directory among
/// them is counted when it is opened. `TRAVERSE_NO_DTYPE=1` treats every entry so,
/// which is how the tests walk their trees as such a file system would list them.
pub fn listed_as_dir(d_type: u8) -> bool {
    static IGNORE_DTYPE: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("TRAVERSE_NO_DTYPE").is_some());
    d_type == libc::DT_DIR && !*IGNORE_DTYPE
}

/// openat for a directory, relative to `dir` (or the cwd).
pub fn open_dir_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `name` is NUL-terminated.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), DIR_OPEN_FLAGS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The start of every walk: `path` itself is counted, and opened when it is a directory
/// (None when it is not one, or when it cannot be read: that is reported in the tally,
/// as du does, and the walk of it ends there).
pub fn open_top(
    path: &std::path::Path,
) -> Result<(Tally, Option<(OwnedFd, EntryStat)>), WalkError> {
    let (top, st) = cstring(path.as_os_str().as_bytes())
        .and_then(|c| statx_at(None, &c).map(|st| (c, st)))
        .map_err(|source| WalkError::Access {
            path: path.into(),
            source,
        })?;
    let mut tally = Tally::default();
    tally.add(&st);
    if !st.is_dir() {
        return Ok((tally, None));
    }
    match open_dir_at(None, &top) {
        Ok(fd) => Ok((tally, Some((fd, st)))),
        Err(e) => {
            tally.error(cannot_read(path, &e));
            Ok((tally, None))
        }
    }
}

/// A path as a C string (paths cannot contain NUL on Linux, but refuse it cleanly).
pub fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Is this a name the walk skips (`.` or `..`)?
pub fn is_dot(name: &OsStr) -> bool {
    matches!(name.as_bytes(), b"." | b"..")
}

/// How many directories the walk may hold open: a share of RLIMIT_NOFILE.
pub fn open_dir_budget() -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `rl`.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur as usize
    } else {
        1024
    };
    // Leave room for stdio, the ring, and whatever else the process has open.
    (soft.saturating_sub(32) / 2).clamp(8, 4096)
}

/// Formats the error du prints for an unreadable directory.
pub fn cannot_read(path: &std::path::Path, err: &io::Error) -> String {
    format!(
        "cannot read directory '{}': {}",
        path.display(),
        strerror(err)
    )
}

/// Formats the error for a directory whose descriptor was given up (too many open) and
/// that cannot be opened again as the same directory: the rest of it is not walked.
pub fn cannot_return(path: &std::path::Path, err: &io::Error) -> String {
    format!("cannot return to '{}': {}", path.display(), strerror(err))
}

/// Formats the error du prints for an entry it cannot stat.
pub fn cannot_access(path: &std::path::Path, err: &io::Error) -> String {
    format!("cannot access '{}': {}", path.display(), strerror(err))
}
