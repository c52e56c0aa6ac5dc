//! The tokio engine: tokio::fs (read_dir, symlink_metadata) on tokio's blocking pool.
//!
//! This is the baseline an async runtime gives without io_uring: every directory read
//! and every stat is a hop to a blocking thread. Directories are read as tasks, at most
//! `open_dir_budget()` at a time. Paths longer than PATH_MAX (very deep trees) cannot be
//! handed to tokio::fs; such a subtree is counted by the sync walker on the blocking pool
//! from a descriptor opened component by component.

use crate::count::{EntryStat, Tally, Totals, WalkError};
use crate::sys;
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
    let err = |source| WalkError {
        path: path.into(),
        source,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    rt.block_on(async {
        let meta = tokio::fs::symlink_metadata(path).await.map_err(err)?;
        let mut tally = Tally::default();
        tally.add(&entry_stat(&meta));
        if meta.is_dir() {
            walk(path.to_path_buf(), &mut tally).await;
        }
        Ok(tally.totals)
    })
}

/// One directory's results.
struct Listed {
    tally: Tally,
    subdirs: Vec<PathBuf>,
}

async fn walk(top: PathBuf, tally: &mut Tally) {
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

async fn read_one(dir: PathBuf) -> Listed {
    let mut out = Listed {
        tally: Tally::default(),
        subdirs: Vec::new(),
    };
    let mut rd = match tokio::fs::read_dir(&dir).await {
        Ok(rd) => rd,
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            out.tally = deep_subtree(dir, false).await;
            return out;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.tally.error(sys::cannot_read(&dir, &e));
            return out;
        }
    };
    loop {
        let entry = match rd.next_entry().await {
            Ok(Some(e)) => e,
            Ok(None) => return out,
            Err(e) => {
                sys::listing_failed(&mut out.tally, &dir, &e);
                return out;
            }
        };
        let path = entry.path();
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) => {
                out.tally.add(&entry_stat(&m));
                if m.is_dir() {
                    out.subdirs.push(path);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                out.tally.merge(deep_subtree(path, true).await);
            }
            Err(e) => out.tally.error(crate::sys::cannot_access(&path, &e)),
        }
    }
}

/// Counts `path` (itself too when `count_self`) and, if it is a directory, its contents
/// with the sync walker, reaching it component by component.
async fn deep_subtree(path: PathBuf, count_self: bool) -> Tally {
    tokio::task::spawn_blocking(move || {
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
