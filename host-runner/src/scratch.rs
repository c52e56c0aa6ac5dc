//! Scratch disks: an empty, writable filesystem made fresh for one VM
//! (`run-in-vm --scratch ext4:/mnt/s`, a test's `scratch=ext4,^dir_index:/mnt/nodx`).
//!
//! The root image and `--disk` snapshots are ext2, made by `mke2fs -d`. Testing the
//! directory code of the ext4 driver on what it was written for (extents, a journal,
//! hash-tree directories that the kernel itself builds as a directory grows) needs a
//! filesystem the guest fills itself: this module makes it, without root, as a sparse
//! file in the VM's own temporary directory, so it disappears with the VM.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Size of every scratch filesystem; sparse, so only what the guest writes is stored.
pub const SIZE_MIB: u64 = 2048;
/// Inodes of every scratch filesystem: room for a few 100 000-entry directories.
pub const INODES: u64 = 600_000;

/// A parsed `TYPE[,FEATURE...]:GUESTDIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchSpec {
    /// `ext2`, `ext3` or `ext4`: the mke2fs type and the guest's mount type.
    pub fstype: String,
    /// mke2fs `-O` features, e.g. `^dir_index` (in the order given).
    pub features: Vec<String>,
    /// Absolute mount point in the guest.
    pub target: PathBuf,
}

/// Parses a scratch disk specification; the error names what is wrong.
pub fn parse(spec: &str) -> std::result::Result<ScratchSpec, String> {
    let (fs, target) = spec
        .split_once(':')
        .ok_or_else(|| format!("scratch {spec:?}: expected TYPE[,FEATURE...]:GUESTDIR"))?;
    if !target.starts_with('/') || target.contains(':') {
        return Err(format!(
            "scratch {spec:?}: the mount point must be an absolute guest path"
        ));
    }
    let mut parts = fs.split(',');
    let fstype = parts.next().unwrap_or_default();
    if !matches!(fstype, "ext2" | "ext3" | "ext4") {
        return Err(format!(
            "scratch {spec:?}: type {fstype:?} is not ext2, ext3 or ext4"
        ));
    }
    let features: Vec<String> = parts.map(str::to_string).collect();
    if let Some(bad) = features.iter().find(|f| {
        let name = f.strip_prefix('^').unwrap_or(f);
        name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }) {
        return Err(format!(
            "scratch {spec:?}: {bad:?} is no mke2fs feature name"
        ));
    }
    Ok(ScratchSpec {
        fstype: fstype.to_string(),
        features,
        target: PathBuf::from(target),
    })
}

/// The mke2fs arguments (after the program name) that make `spec` in `image`.
pub fn mke2fs_args(spec: &ScratchSpec, image: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["-q", "-F", "-t", &spec.fstype, "-b", "4096"]
        .iter()
        .map(Into::into)
        .collect();
    args.push("-N".into());
    args.push(INODES.to_string().into());
    // Zero the inode tables and journal now, on the host, rather than leave the guest's
    // ext4lazyinit thread writing them in the background of a measurement.
    args.push("-E".into());
    args.push("lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0".into());
    if !spec.features.is_empty() {
        args.push("-O".into());
        args.push(spec.features.join(",").into());
    }
    args.push(image.into());
    args.push(format!("{SIZE_MIB}M").into());
    args
}

/// Makes the empty filesystem of `spec` as `dir/scratch-N.img` and returns its path.
pub fn create(spec: &ScratchSpec, dir: &Path, n: usize) -> Result<PathBuf> {
    let image = dir.join(format!("scratch-{n}.img"));
    let out = crate::child::dies_with_runner(&mut Command::new("mke2fs"))
        .args(mke2fs_args(spec, &image))
        .stdin(Stdio::null())
        .output()
        .context("running mke2fs")?;
    if !out.status.success() {
        bail!(
            "mke2fs for scratch disk {} failed: {}",
            spec.target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_features_and_target() {
        let s = parse("ext4,^dir_index,^has_journal:/mnt/nodx").unwrap();
        assert_eq!(s.fstype, "ext4");
        assert_eq!(s.features, ["^dir_index", "^has_journal"]);
        assert_eq!(s.target, Path::new("/mnt/nodx"));
        assert_eq!(parse("ext2:/s").unwrap().features, Vec::<String>::new());
    }

    #[test]
    fn refuses_what_mke2fs_or_mount_would_misread() {
        for bad in [
            "ext4",
            "ext4:mnt",
            "xfs:/mnt",
            "ext4,:/mnt",
            "ext4,dir index:/mnt",
            "ext4,-E:/mnt",
            "ext4:/a:b",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn mke2fs_gets_features_only_when_given() {
        let img = Path::new("/t/x.img");
        let plain = mke2fs_args(&parse("ext4:/m").unwrap(), img);
        assert!(!plain.iter().any(|a| a == "-O"));
        let nodx = mke2fs_args(&parse("ext4,^dir_index:/m").unwrap(), img);
        let o = nodx.iter().position(|a| a == "-O").unwrap();
        assert_eq!(nodx[o + 1], "^dir_index");
        assert_eq!(nodx[nodx.len() - 2], "/t/x.img");
    }

    #[test]
    fn makes_a_filesystem_with_the_features_asked_for() {
        if Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("mke2fs not installed; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = create(&parse("ext4,^dir_index:/m").unwrap(), dir.path(), 0).unwrap();
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&image)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let features = text
            .lines()
            .find(|l| l.starts_with("Filesystem features:"))
            .unwrap();
        assert!(features.contains("extent"), "{features}");
        assert!(!features.contains("dir_index"), "{features}");
        // Sparse: a 2 GiB filesystem must not cost 2 GiB of host disk.
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&image).unwrap().blocks() * 512 < SIZE_MIB << 19);
    }
}
