//! The tokio-per-entry engine: tokio::fs as a naive user writes it, one spawn_blocking
//! per entry, full paths.
//!
//! Kept as a labelled comparison, not as the tokio baseline (that is
//! [`crate::tokio_walk`]): every stat is `tokio::fs::symlink_metadata` of the entry's
//! full path, one hop to the blocking pool each, awaited one after the other, so the
//! kernel walks the whole path again for every entry. Directories are read as tasks, at
//! most `open_dir_budget()` at a time. Paths longer than PATH_MAX (very deep trees)
//! cannot be handed to tokio::fs; such a subtree is counted by the sync walker on the
//! blocking pool from a descriptor opened component by component.

use crate::count::{EntryStat, Tally, Totals, WalkError};
use crate::sys;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::task::JoinSet;

fn entry_stat(m: &std::fs::Metadata) -> EntryStat {
    EntryStat {
        mode: m.mode(),
        size: m.size(),
        nlink: m.nlink(),
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// Counts `path` on a multi-threaded tokio runtime.
pub fn count(path: &Path) -> Result<Totals, WalkError> {
    let rt = crate::tokio_walk::runtime(path)?;
    rt.block_on(async {
        let meta = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|source| WalkError::Access {
                path: path.into(),
                source,
            })?;
        let mut tally = Tally::default();
        let top = entry_stat(&meta);
        tally.add(&top);
        if meta.is_dir() {
            walk((path.to_path_buf(), (top.dev, top.ino)), &mut tally).await;
        }
        Ok(tally.totals)
    })
}

/// A directory to read, with the (device, inode) it had when it was listed.
type Subdir = (PathBuf, (u64, u64));

/// One directory's results.
struct Listed {
    tally: Tally,
    subdirs: Vec<Subdir>,
}

async fn walk(top: Subdir, tally: &mut Tally) {
    let budget = sys::open_dir_budget();
    let mut pending = vec![top];
    let mut running = JoinSet::new();
    loop {
        while running.len() < budget {
            let Some(dir) = pending.pop() else { break };
            running.spawn(read_one(dir));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(listed) => {
                tally.merge(listed.tally);
                pending.extend(listed.subdirs);
            }
            Err(e) => tally.error(format!("directory task failed: {e}")),
        }
    }
}

async fn read_one((dir, id): Subdir) -> Listed {
    let mut out = Listed {
        tally: Tally::default(),
        subdirs: Vec::new(),
    };
    let listing = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || list_checked(&dir, id)).await
    };
    let (names, error) = match listing {
        Ok(Ok(Some(listed))) => listed,
        // Vanished, or no longer the directory that was listed: skipped.
        Ok(Ok(None)) => return out,
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            out.tally = deep_subtree(dir, false).await;
            return out;
        }
        Ok(Err(e)) => {
            out.tally.error(sys::cannot_read(&dir, &e));
            return out;
        }
        Err(e) => {
            out.tally.error(format!("directory task failed: {e}"));
            return out;
        }
    };
    for name in names {
        let path = dir.join(name);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) => {
                let st = entry_stat(&m);
                out.tally.add(&st);
                if m.is_dir() {
                    out.subdirs.push((path, (st.dev, st.ino)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                out.tally.merge(deep_subtree(path, true).await);
            }
            Err(e) => out.tally.error(crate::sys::cannot_access(&path, &e)),
        }
    }
    if let Some(e) = error {
        sys::listing_failed(&mut out.tally, &dir, &e);
    }
    out
}

/// The names in `dir` if it still is the directory `id` (None if it vanished or was
/// replaced, by a symlink for one), with the error that ended the listing early if one
/// did. tokio::fs::read_dir would open the path as it is now, following a symlink that
/// replaced the directory since it was listed: out of the tree, which du never does.
/// So the directory is opened without following, checked, and read through that very
/// descriptor, with getdents64 and a 32 KiB buffer as glibc's readdir (under
/// std::fs::read_dir) reads.
fn list_checked(
    dir: &Path,
    id: (u64, u64),
) -> std::io::Result<Option<(Vec<OsString>, Option<std::io::Error>)>> {
    let fd = match sys::open_dir_at(None, &sys::cstring(dir.as_os_str().as_bytes())?) {
        Ok(fd) => fd,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let st = sys::statx_fd(fd.as_fd())?;
    if (st.dev, st.ino) != id {
        return Ok(None);
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut names = Vec::new();
    let error = sys::list_dir(fd.as_fd(), &mut buf, |entry| {
        names.push(entry.name().to_os_string());
    });
    Ok(Some((names, error)))
}

/// Counts `path` (itself too when `count_self`) and, if it is a directory, its contents
/// with the sync walker, reaching it component by component.
async fn deep_subtree(path: PathBuf, count_self: bool) -> Tally {
    // One at a time: the sync walker may hold the descriptor budget (half of
    // RLIMIT_NOFILE, the other half is the listings'), so two deep subtrees at once
    // could run out. They are rare (paths beyond PATH_MAX), so waiting costs nothing.
    static ONE_DEEP_WALK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    tokio::task::spawn_blocking(move || {
        let _turn = ONE_DEEP_WALK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tally = Tally::default();
        crate::sync_walk::count_long_path(&path, count_self, &mut tally);
        tally
    })
    .await
    .unwrap_or_else(|e| {
        let mut t = Tally::default();
        t.error(format!("deep subtree task failed: {e}"));
        t
    })
}
