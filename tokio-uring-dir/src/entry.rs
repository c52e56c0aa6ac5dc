//! Directory entries and what can be learned about them.

use crate::error::op_error;
use crate::name::Name;
use crate::ops::statx_at;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entry of a directory, as returned by [`Dir::next`](crate::Dir::next).
///
/// It owns its name and shares the directory's path and descriptor, so it can outlive
/// the [`Dir`](crate::Dir) and be sent to other threads; like `std::fs::DirEntry`, it
/// keeps the directory's descriptor open while it lives, since [`metadata`](Self::metadata)
/// looks the name up relative to it. Two entries are equal when they name the same
/// entry of the same path.
#[derive(Debug, Clone)]
pub struct DirEntry {
    dir: Arc<Path>,
    dir_fd: Arc<OwnedFd>,
    name: Name,
    ino: u64,
    d_type: u8,
}

impl PartialEq for DirEntry {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
            && self.name == other.name
            && self.ino == other.ino
            && self.d_type == other.d_type
    }
}

impl Eq for DirEntry {}

impl DirEntry {
    pub(crate) fn new(
        dir: Arc<Path>,
        dir_fd: Arc<OwnedFd>,
        name: Name,
        ino: u64,
        d_type: u8,
    ) -> Self {
        Self {
            dir,
            dir_fd,
            name,
            ino,
            d_type,
        }
    }

    /// The type the directory entry reports, `None` for `DT_UNKNOWN`.
    pub(crate) fn d_type(&self) -> Option<FileType> {
        FileType::from_d_type(self.d_type)
    }

    /// The entry's name: any bytes except `/` and NUL, not necessarily UTF-8.
    pub fn file_name(&self) -> &OsStr {
        &self.name
    }

    /// The inode number reported by the directory (`d_ino`).
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The path the directory was opened with, joined with [`file_name`](Self::file_name).
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The file type, without following symlinks.
    ///
    /// Free when the filesystem reports it in the directory entry (`d_type`), as
    /// ext2/3/4, tmpfs, btrfs, xfs and most others do. Otherwise (`DT_UNKNOWN`) it costs
    /// one statx on the ring, of the name relative to the directory's descriptor; that
    /// can fail, for example with `NotFound` when the entry was removed meanwhile.
    pub async fn file_type(&self) -> io::Result<FileType> {
        if let Some(t) = self.d_type() {
            return Ok(t);
        }
        let stx = self.statx(libc::STATX_TYPE).await?;
        if stx.stx_mask & libc::STATX_TYPE == 0 {
            return Err(self.missing("a file type"));
        }
        Ok(FileType::from_mode(u32::from(stx.stx_mode)))
    }

    /// Metadata of the entry, without following symlinks (like
    /// [`std::fs::DirEntry::metadata`]), through one statx on the ring of the name
    /// relative to the directory's descriptor (fstatat semantics: independent of the
    /// working directory and of the path's length). An `InvalidData` error when the
    /// filesystem does not report the type, mode or size.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let stx = self.statx(libc::STATX_BASIC_STATS).await?;
        let needed = libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_SIZE;
        if stx.stx_mask & needed != needed {
            return Err(self.missing("the type, mode and size"));
        }
        Ok(Metadata::from_statx(&stx))
    }

    async fn statx(&self, mask: u32) -> io::Result<libc::statx> {
        statx_at(
            Some(&self.dir_fd),
            &self.name,
            libc::AT_SYMLINK_NOFOLLOW,
            mask,
        )
        .await
        .map_err(|e| op_error("statx", &self.path(), e))
    }

    fn missing(&self, what: &str) -> io::Error {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the filesystem did not report {what}"),
        );
        op_error("statx", &self.path(), err)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Dir,
    File,
    Symlink,
    BlockDevice,
    CharDevice,
    Fifo,
    Socket,
    /// A mode this crate does not know; every `is_*` is false.
    Other,
}

/// The type of a file, as far as a directory listing or a stat can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType(Kind);

impl From<std::fs::FileType> for FileType {
    /// The same classification from a std file type (what `std::fs` reports).
    fn from(t: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Other
        };
        FileType(kind)
    }
}

impl FileType {
    /// From a `d_type`; `None` for `DT_UNKNOWN` and anything unexpected, which need a stat.
    pub(crate) fn from_d_type(d_type: u8) -> Option<Self> {
        let kind = match d_type {
            libc::DT_DIR => Kind::Dir,
            libc::DT_REG => Kind::File,
            libc::DT_LNK => Kind::Symlink,
            libc::DT_BLK => Kind::BlockDevice,
            libc::DT_CHR => Kind::CharDevice,
            libc::DT_FIFO => Kind::Fifo,
            libc::DT_SOCK => Kind::Socket,
            _ => return None,
        };
        Some(Self(kind))
    }

    /// From the `S_IFMT` bits of a mode.
    pub(crate) fn from_mode(mode: u32) -> Self {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::Other,
        };
        Self(kind)
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.0 == Kind::Dir
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.0 == Kind::File
    }

    /// A symbolic link (never followed by this crate).
    pub fn is_symlink(&self) -> bool {
        self.0 == Kind::Symlink
    }

    /// A block device.
    pub fn is_block_device(&self) -> bool {
        self.0 == Kind::BlockDevice
    }

    /// A character device.
    pub fn is_char_device(&self) -> bool {
        self.0 == Kind::CharDevice
    }

    /// A named pipe.
    pub fn is_fifo(&self) -> bool {
        self.0 == Kind::Fifo
    }

    /// A Unix domain socket.
    pub fn is_socket(&self) -> bool {
        self.0 == Kind::Socket
    }
}

/// The `st_dev` of a statx result.
pub(crate) fn dev_of(stx: &libc::statx) -> u64 {
    libc::makedev(stx.stx_dev_major, stx.stx_dev_minor)
}

/// File metadata from statx(2), with lstat semantics (symlinks are not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    blocks: u64,
    modified: Option<SystemTime>,
}

impl Metadata {
    pub(crate) fn from_statx(stx: &libc::statx) -> Self {
        let mode = u32::from(stx.stx_mode);
        let modified = if stx.stx_mask & libc::STATX_MTIME != 0 {
            timestamp(stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec)
        } else {
            None
        };
        Self {
            len: stx.stx_size,
            dev: dev_of(stx),
            ino: stx.stx_ino,
            nlink: u64::from(stx.stx_nlink),
            mode,
            uid: stx.stx_uid,
            gid: stx.stx_gid,
            blocks: stx.stx_blocks,
            modified,
        }
    }

    /// The device of the filesystem holding the file (`st_dev`): with
    /// [`ino`](Self::ino), what tells hard links of one file apart from distinct files.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Size in bytes (for a symlink: the length of its target).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }

    /// The full `st_mode`: file type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Owner user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Owner group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Allocated size in 512-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The file type, from the mode.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }

    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }

    /// Last modification time; an `Unsupported` error when the filesystem did not
    /// report one.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.modified.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the filesystem did not report a modification time",
            )
        })
    }
}

/// A statx timestamp as a `SystemTime`; the nanoseconds always count forward, also
/// before the epoch, as in `struct timespec`.
fn timestamp(sec: i64, nsec: u32) -> Option<SystemTime> {
    let whole = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nsec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d_type_mapping() {
        assert!(FileType::from_d_type(libc::DT_DIR).is_some_and(|t| t.is_dir()));
        assert!(FileType::from_d_type(libc::DT_REG).is_some_and(|t| t.is_file()));
        assert!(FileType::from_d_type(libc::DT_LNK).is_some_and(|t| t.is_symlink()));
        assert!(FileType::from_d_type(libc::DT_FIFO).is_some_and(|t| t.is_fifo()));
        assert!(FileType::from_d_type(libc::DT_SOCK).is_some_and(|t| t.is_socket()));
        assert!(FileType::from_d_type(libc::DT_BLK).is_some_and(|t| t.is_block_device()));
        assert!(FileType::from_d_type(libc::DT_CHR).is_some_and(|t| t.is_char_device()));
        assert_eq!(FileType::from_d_type(libc::DT_UNKNOWN), None);
        // DT_WHT (whiteout) and garbage must be resolved by a stat, not guessed.
        assert_eq!(FileType::from_d_type(14), None);
        assert_eq!(FileType::from_d_type(200), None);
    }

    #[test]
    fn mode_mapping_agrees_with_d_type() {
        for (mode, dt) in [
            (libc::S_IFDIR, libc::DT_DIR),
            (libc::S_IFREG, libc::DT_REG),
            (libc::S_IFLNK, libc::DT_LNK),
            (libc::S_IFBLK, libc::DT_BLK),
            (libc::S_IFCHR, libc::DT_CHR),
            (libc::S_IFIFO, libc::DT_FIFO),
            (libc::S_IFSOCK, libc::DT_SOCK),
        ] {
            assert_eq!(
                Some(FileType::from_mode(mode | 0o644)),
                FileType::from_d_type(dt)
            );
        }
        let other = FileType::from_mode(0);
        assert!(!(other.is_dir() || other.is_file() || other.is_symlink()));
    }

    #[test]
    fn unknown_d_type_is_resolved_by_statx_on_the_ring() {
        let tmp = tempfile::tempdir().unwrap();
        let dir: Arc<Path> = Arc::from(tmp.path());
        std::fs::create_dir(dir.join("d")).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", dir.join("l")).unwrap();
        let dir_fd = Arc::new(OwnedFd::from(std::fs::File::open(&*dir).unwrap()));
        tokio_uring::start(async {
            // What a filesystem without d_type (some FUSE, old XFS) reports.
            let unknown = |name: &str| {
                DirEntry::new(
                    dir.clone(),
                    dir_fd.clone(),
                    Name::new(name.as_bytes()),
                    0,
                    libc::DT_UNKNOWN,
                )
            };
            assert!(unknown("d").file_type().await.unwrap().is_dir());
            assert!(unknown("f").file_type().await.unwrap().is_file());
            assert!(unknown("l").file_type().await.unwrap().is_symlink());
            let err = unknown("missing").file_type().await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            let msg = err.to_string();
            assert!(
                msg.starts_with("statx ") && msg.contains("missing"),
                "{msg}"
            );
        });
    }

    #[test]
    fn timestamps_before_and_after_the_epoch() {
        assert_eq!(timestamp(1, 5), Some(UNIX_EPOCH + Duration::new(1, 5)));
        // -1 s + 0.25 s = 0.75 s before the epoch.
        assert_eq!(
            timestamp(-1, 250_000_000),
            Some(UNIX_EPOCH - Duration::from_millis(750))
        );
        assert_eq!(timestamp(0, 0), Some(UNIX_EPOCH));
    }
}
