//! What a walk adds up, shared by every engine.

use std::collections::HashMap;
use std::path::PathBuf;

/// The result of counting one tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Regular-file entries (`find -type f` count).
    pub files: u64,
    /// Apparent bytes (`du -bs`), hard-linked inodes once.
    pub bytes: u64,
    /// Directories that could not be read; their own size is still counted.
    pub errors: Vec<String>,
}

/// Why a walk gave no totals.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The top path itself could not be examined (it does not exist, no permission):
    /// the user's input, as in `du`.
    #[error("cannot access '{}': {}", path.display(), strerror(source))]
    Access {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The engine itself failed part-way (an io_uring wait that errs, a walker thread
    /// that panics, a runtime that cannot start): the counts would be incomplete, so
    /// none are given, and the message says it was the tool, not the tree.
    #[error("walk of '{}' stopped: {what}: {}", path.display(), strerror(source))]
    Engine {
        /// The path given.
        path: PathBuf,
        /// Which part of the engine failed.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// The part of a stat result a walk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStat {
    /// st_mode.
    pub mode: u32,
    /// st_size.
    pub size: u64,
    /// st_nlink.
    pub nlink: u64,
    /// Device as st_dev encodes it (makedev), for hard-link identity.
    pub dev: u64,
    /// Inode, for hard-link identity.
    pub ino: u64,
}

impl EntryStat {
    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    /// Is it a regular file?
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// Adds entries up the way du -bs and find do.
#[derive(Default)]
pub struct Tally {
    /// The running totals.
    pub totals: Totals,
    /// Inodes with more than one link already counted, with their size.
    linked: HashMap<(u64, u64), u64>,
}

impl Tally {
    /// Counts one entry.
    pub fn add(&mut self, st: &EntryStat) {
        if st.is_file() {
            self.totals.files += 1;
        }
        // Directories cannot be hard-linked; their nlink counts subdirectories.
        if st.nlink > 1 && !st.is_dir() && self.linked.insert((st.dev, st.ino), st.size).is_some() {
            return;
        }
        self.totals.bytes += st.size;
    }

    /// Records a directory that could not be read.
    pub fn error(&mut self, msg: String) {
        self.totals.errors.push(msg);
    }

    /// Folds in a tally of another part of the same tree; an inode both counted is
    /// counted once.
    pub fn merge(&mut self, other: Tally) {
        self.totals.files += other.totals.files;
        self.totals.bytes += other.totals.bytes;
        self.totals.errors.extend(other.totals.errors);
        for (key, size) in other.linked {
            if self.linked.insert(key, size).is_some() {
                self.totals.bytes -= size;
            }
        }
    }
}

/// The error's text as the C library words it, without Rust's " (os error N)".
pub(crate) fn strerror(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.split_once(" (os error") {
        Some((words, _)) => words.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_failure_is_not_worded_as_a_missing_path() {
        let access = WalkError::Access {
            path: "/t".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            access.to_string(),
            "cannot access '/t': No such file or directory"
        );
        let engine = WalkError::Engine {
            path: "/t".into(),
            what: "io_uring",
            source: std::io::Error::from_raw_os_error(libc::EBADR),
        };
        assert_eq!(
            engine.to_string(),
            "walk of '/t' stopped: io_uring: Invalid request descriptor"
        );
    }

    fn st(mode: u32, size: u64, nlink: u64, ino: u64) -> EntryStat {
        EntryStat {
            mode,
            size,
            nlink,
            dev: 1,
            ino,
        }
    }

    #[test]
    fn hard_links_count_bytes_once_and_files_each_time() {
        let mut t = Tally::default();
        t.add(&st(libc::S_IFREG, 100, 2, 7));
        t.add(&st(libc::S_IFREG, 100, 2, 7));
        t.add(&st(libc::S_IFDIR, 4096, 3, 8));
        t.add(&st(libc::S_IFLNK, 5, 1, 9));
        assert_eq!((t.totals.files, t.totals.bytes), (2, 4201));
    }

    #[test]
    fn merging_counts_shared_inodes_once() {
        let mut a = Tally::default();
        a.add(&st(libc::S_IFREG, 100, 2, 7));
        let mut b = Tally::default();
        b.add(&st(libc::S_IFREG, 100, 2, 7));
        b.add(&st(libc::S_IFREG, 1, 1, 3));
        a.merge(b);
        assert_eq!((a.totals.files, a.totals.bytes), (3, 101));
    }
}
