//! The build cache outside the repository: location, content keys and locking.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

/// `$XDG_CACHE_HOME/uring-getdents`, else `~/.cache/uring-getdents`.
pub fn cache_root() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home =
                std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?;
            PathBuf::from(home).join(".cache")
        }
    };
    let root = base.join("uring-getdents");
    private_dir(&root)?;
    Ok(root)
}

/// A subdirectory of the cache, created on demand.
pub fn cache_dir(name: &str) -> Result<PathBuf> {
    let dir = cache_root()?.join(name);
    private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (and missing parents) and makes it 0700, also when it already existed
/// with wider permissions: the cache holds images of the user's directories
/// (`--disk ~/private:/x`) and console logs of their jobs, which no other local user
/// may read.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Permissions for per-run temporary directories (sockets, scratch disks): the owner
/// only.
pub fn private_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o700)
}

/// Accumulates the inputs of a cached artifact into a short hex key.
#[derive(Default)]
pub struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    /// Starts a key; `kind` keeps keys of different artifacts apart.
    pub fn new(kind: &str) -> Self {
        let mut k = Self::default();
        k.add(kind.as_bytes());
        k
    }

    /// Adds a length-delimited piece, so ("ab","c") and ("a","bc") differ.
    pub fn add(&mut self, data: &[u8]) -> &mut Self {
        self.hasher.update((data.len() as u64).to_le_bytes());
        self.hasher.update(data);
        self
    }

    /// Adds a file's name and whole content. Not the directory it is in: the same
    /// inputs in another checkout (a CI clone, a worktree) give the same key, so the
    /// kernel and images built for one serve all.
    pub fn add_file(&mut self, path: &Path) -> Result<&mut Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().unwrap_or(path.as_os_str());
        self.add(name.as_encoded_bytes());
        Ok(self.add(&data))
    }

    /// The key: 16 bytes of SHA-256 in hex.
    pub fn finish(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An exclusive lock on a file in the cache, held until dropped. Serialises builds of
/// the same artifact by concurrent runners (parallel tests, `--jobs`).
pub struct CacheLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Takes the named lock, waiting for other holders.
pub fn lock(name: &str) -> Result<CacheLock> {
    let path = cache_dir("locks")?.join(name);
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(CacheLock { _lock: lock })
}

/// Makes sure `artifact` exists, running `build` under the lock `lock_name` when it
/// does not. Checked before taking the lock, so a cached artifact costs one stat, and
/// again after it, because another runner may have built it while this one waited.
/// `build` must create `artifact` last, with [`publish`], so that its existence means
/// it is complete. An artifact found is marked used ([`touch`]) before it is relied
/// on; a new one is as fresh as can be.
pub fn build_once(
    artifact: &Path,
    lock_name: &str,
    build: impl FnOnce() -> Result<()>,
) -> Result<()> {
    // Touched before it is relied on, so that a concurrent prune sees it as in use.
    touch(artifact);
    if artifact.exists() {
        return Ok(());
    }
    let _lock = lock(lock_name)?;
    if artifact.exists() {
        return Ok(());
    }
    build()?;
    if !artifact.exists() {
        anyhow::bail!("building {} did not create it", artifact.display());
    }
    Ok(())
}

/// Moves a finished artifact into place atomically so readers never see half a file.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    // A file is flushed first, so that a crash after the rename cannot leave a cached
    // artifact with holes that the next run trusts; and it is made owner-only (a root
    // image holds copies of the user's files).
    if tmp.is_file() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", tmp.display()))?;
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", tmp.display()))?;
    }
    std::fs::rename(tmp, dest)
        .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))
}

/// Marks a cached artifact as used now, so pruning keeps it.
pub fn touch(path: &Path) {
    // Best effort: a read-only cache only loses the recency hint. futimens needs
    // ownership, not write access, so a read-only descriptor does.
    if let Ok(file) = File::open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Deletes a cached file, or a directory with its contents (`is_dir` as the entry's own
/// metadata says, without following a symlink).
pub fn remove(path: &Path, is_dir: bool) -> std::io::Result<()> {
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Cached artifacts used this recently are never pruned.
pub const PRUNE_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the files and directories in `dir` whose names start with `prefix` and end
/// with `suffix` (finished artifacts, not the work files of a build), except
/// the `keep` most recently used ones (see [`touch`]) and any used within `grace` (a
/// concurrent runner may have chosen one and not opened it yet; a VM that has a file
/// open keeps its data after the unlink). Returns how many were deleted. Errors are
/// ignored: pruning only saves space.
pub fn prune(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    keep: usize,
    grace: std::time::Duration,
) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut entries: Vec<(std::time::SystemTime, PathBuf, bool)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .filter_map(|e| {
            // Not followed: a symlink is neither, and is left alone.
            let meta = e.metadata().ok().filter(|m| m.is_file() || m.is_dir())?;
            Some((meta.modified().ok()?, e.path(), meta.is_dir()))
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut deleted = 0;
    for (used, path, is_dir) in entries.into_iter().skip(keep) {
        if now.duration_since(used).map_or(true, |age| age < grace) {
            continue;
        }
        if remove(&path, is_dir).is_ok() {
            deleted += 1;
        }
    }
    deleted
}

#[cfg(test)]
mod private_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn cache_dirs_and_published_files_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        // New, nested.
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // Existing and world-readable (an older version's cache).
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        // A published file.
        let src = tmp.path().join("img.tmp");
        std::fs::write(&src, b"data").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dest = tmp.path().join("img");
        publish(&src, &dest).unwrap();
        assert_eq!(mode(&dest), 0o600);
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_and_the_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let now = std::time::SystemTime::now();
        for (name, age_hours) in [("img-a", 5), ("img-b", 4), ("img-c", 3), ("img-d", 0)] {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            file.set_modified(now - hour * age_hours).unwrap();
        }
        File::create(dir.path().join("other")).unwrap();
        // A directory (a kernel build's outputs) is an entry like a file.
        let old_dir = dir.path().join("img-e");
        std::fs::create_dir(&old_dir).unwrap();
        File::create(old_dir.join("vmlinux")).unwrap();
        File::open(&old_dir)
            .unwrap()
            .set_modified(now - hour * 6)
            .unwrap();
        // Keep 1 (img-d); of the rest, img-c was used within the grace period.
        let deleted = prune(dir.path(), "img-", "", 1, hour * 3 + hour / 2);
        assert_eq!(deleted, 3);
        assert!(!old_dir.exists());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["img-c", "img-d", "other"]);
        // Touching makes a file the most recent.
        touch(&dir.path().join("img-c"));
        assert_eq!(
            prune(dir.path(), "img-", "", 1, std::time::Duration::ZERO),
            1
        );
        assert!(dir.path().join("img-c").exists());
        assert!(!dir.path().join("img-d").exists());
    }

    #[test]
    fn prune_leaves_the_work_files_of_builds_alone() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(9 * 3600);
        for name in ["root-1.ext2", "root-2.ext2", "root-2.ext2.tmp"] {
            File::create(dir.path().join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        std::fs::create_dir(dir.path().join("root-staging-x")).unwrap();
        // Keep 1 of the images: the work files neither take that place nor go.
        assert_eq!(
            prune(dir.path(), "root-", ".ext2", 1, std::time::Duration::ZERO),
            1
        );
        let left = |name: &str| dir.path().join(name).exists();
        assert_eq!(
            [left("root-1.ext2"), left("root-2.ext2")]
                .iter()
                .filter(|&&l| l)
                .count(),
            1
        );
        assert!(left("root-2.ext2.tmp") && left("root-staging-x"));
    }

    #[test]
    fn keys_separate_pieces_and_kinds() {
        let a = KeyBuilder::new("k").add(b"ab").add(b"c").finish();
        let b = KeyBuilder::new("k").add(b"a").add(b"bc").finish();
        let c = KeyBuilder::new("j").add(b"ab").add(b"c").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, KeyBuilder::new("k").add(b"ab").add(b"c").finish());
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn file_keys_ignore_the_directory_but_not_the_name() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&one, &two] {
            std::fs::write(dir.path().join("0001-x.patch"), b"same").unwrap();
            std::fs::write(dir.path().join("0002-x.patch"), b"same").unwrap();
        }
        let key = |path: &Path| KeyBuilder::new("k").add_file(path).unwrap().finish();
        let first = key(&one.path().join("0001-x.patch"));
        assert_eq!(first, key(&two.path().join("0001-x.patch")));
        assert_ne!(first, key(&one.path().join("0002-x.patch")));
    }
}
