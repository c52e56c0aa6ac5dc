//! Guest binaries, the ext2 root image (what goes in: manifest.txt, see [`manifest`]),
//! and ext2 snapshots of host directories.
//!
//! Images are made with `mke2fs -t ext2 -d DIR`, which needs neither root nor loop
//! devices, and are cached by the content of their inputs.

use anyhow::{bail, Context, Result};
use host_tools::cache::{self, KeyBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod manifest;
use manifest::Entry;

/// The shared objects `ldd` lists for `tool`, as `(host file, path in the image)`.
fn shared_objects(tool: &str) -> Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let out = Command::new("ldd")
        .arg(tool)
        .output()
        .with_context(|| format!("ldd {tool}"))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-... (0x...)"
        let lib = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(lib) = lib {
            let entry = (PathBuf::from(lib), lib.trim_start_matches('/').to_string());
            if !files.contains(&entry) {
                files.push(entry);
            }
        }
    }
    Ok(files)
}

/// Root images kept in the cache (most recently used first).
const KEEP_ROOT_IMAGES: usize = 4;
/// Directory snapshots kept in the cache (most recently used first).
const KEEP_DIR_IMAGES: usize = 16;

/// Bumped when the image layout changes, so stale cached images are not reused.
const LAYOUT_VERSION: &str = "root-image-v2";

pub use host_tools::cargo::workspace_dir;

/// Builds the static guest binaries (release, glibc static); returns the target dir.
pub fn build_guest_binaries() -> Result<PathBuf> {
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    rustflags.push_str(" -C target-feature=+crt-static");
    let workspace = workspace_dir();
    if !workspace.join("Cargo.toml").is_file() || !workspace.join("init").is_dir() {
        bail!(
            "the checkout this runner was built from, {}, is gone: the guest is built from it. \
             Reinstall from a checkout with `cargo install --path host-runner`",
            workspace.display()
        );
    }
    let mut cmd = host_tools::cargo::command();
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("RUSTFLAGS", rustflags.trim());
    let mut packages: Vec<String> = manifest::entries()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Guest { package, .. } => Some(package),
            _ => None,
        })
        .collect();
    packages.dedup();
    for package in &packages {
        cmd.args(["-p", package]);
    }
    let bin_dir = host_tools::cargo::target_dir().join("x86_64-unknown-linux-gnu/release");
    // A no-op `cargo build` costs about 0.4 s of every run-in-vm: skip it when nothing
    // it reads has changed since the last build that succeeded.
    let stamp = bin_dir.join(".guest-sources.stamp");
    // Sources as they are before the build: one edited while cargo runs means
    // another build next time.
    let sources = sources_fingerprint(&workspace, &rustflags, &packages);
    if std::fs::read_to_string(&stamp)
        .is_ok_and(|s| s == format!("{sources} {}", binaries_fingerprint(&bin_dir)))
    {
        return Ok(bin_dir);
    }
    let status = cmd.status().context("running cargo build for the guest")?;
    if !status.success() {
        bail!("building the guest binaries failed ({status})");
    }
    // A stamp that cannot be written only means cargo runs again next time.
    let tmp = stamp.with_extension(format!("tmp.{}", std::process::id()));
    let now = format!("{sources} {}", binaries_fingerprint(&bin_dir));
    if std::fs::write(&tmp, now).is_ok() {
        let _ = std::fs::rename(&tmp, &stamp);
    }
    Ok(bin_dir)
}

/// The workspace paths the guest binaries are built from: their crates, the crates
/// those depend on by path, and the workspace's manifest and lock file.
const GUEST_SOURCES: &[&str] = &[
    "init",
    "guest-tests",
    "traverse",
    "uring-getdents",
    "tokio-uring-dir",
    "vm-wire",
    "Cargo.toml",
    "Cargo.lock",
];

/// What a guest build reads, as a key: every source file's path, size and modification
/// time (build outputs left out), the flags and the packages.
fn sources_fingerprint(workspace: &Path, rustflags: &str, packages: &[String]) -> String {
    let mut files = Vec::new();
    for source in GUEST_SOURCES {
        collect_files(&workspace.join(source), &mut files);
    }
    files.sort();
    let mut key = KeyBuilder::new("guest-sources-v1");
    key.add(rustflags.as_bytes());
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PROFILE_") || name.starts_with("CARGO_BUILD_") {
            key.add(name.as_bytes()).add(value.as_encoded_bytes());
        }
    }
    for p in packages {
        key.add(p.as_bytes());
    }
    add_file_metadata(&mut key, &files);
    key.finish()
}

/// The guest binaries as they are now, as a key: a deleted or replaced one means a
/// build.
fn binaries_fingerprint(bin_dir: &Path) -> String {
    let files: Vec<PathBuf> = manifest::entries()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Guest { binary, .. } => Some(bin_dir.join(binary)),
            _ => None,
        })
        .collect();
    let mut key = KeyBuilder::new("guest-binaries-v1");
    add_file_metadata(&mut key, &files);
    key.finish()
}

fn add_file_metadata(key: &mut KeyBuilder, files: &[PathBuf]) {
    for f in files {
        use std::os::unix::fs::MetadataExt;
        key.add(f.as_os_str().as_encoded_bytes());
        match std::fs::metadata(f) {
            Ok(m) => key
                .add(&m.len().to_le_bytes())
                .add(&m.mtime().to_le_bytes())
                .add(&m.mtime_nsec().to_le_bytes()),
            Err(_) => key.add(b"missing"),
        };
    }
}

/// Every file under `path` (or `path` itself), skipping build output directories.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_name() == "target" {
                    continue;
                }
                collect_files(&entry.path(), out);
            }
        }
        Err(_) => out.push(path.to_path_buf()),
    }
}

/// What goes into the root image: (source file, path inside the image).
pub fn root_image_inputs(bin_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for entry in manifest::entries() {
        match entry {
            Entry::Guest { binary, dest, .. } => files.push((bin_dir.join(binary), dest)),
            Entry::Host {
                path,
                dest,
                with_libs,
            } => {
                files.push((PathBuf::from(&path), dest));
                if with_libs {
                    for lib in shared_objects(&path)? {
                        if !files.contains(&lib) {
                            files.push(lib);
                        }
                    }
                }
            }
            Entry::Dir(_) | Entry::Applets(_) => {}
        }
    }
    Ok(files)
}

/// Returns the cached root image for these inputs, building it when missing.
pub fn ensure_root_image(inputs: &[(PathBuf, String)]) -> Result<PathBuf> {
    let mut key = KeyBuilder::new(LAYOUT_VERSION);
    for (src, dest) in inputs {
        key.add(dest.as_bytes()).add_file(src)?;
    }
    let dir = cache::cache_dir("images")?;
    let image = dir.join(format!("root-{}.ext2", key.finish()));
    cache::build_once(&image, "root-image", || {
        let staging = tempfile::Builder::new()
            .prefix("root-staging-")
            .tempdir_in(&dir)?;
        let root = staging.path();
        stage_root(root, inputs)?;
        // Room for tests that build large trees on the root filesystem (writes go to a
        // per-VM overlay, the image itself stays pristine).
        let tmp = dir.join(format!("{}.tmp", image.display()));
        make_ext2(root, &tmp, 1024, 400_000)?;
        cache::publish(&tmp, &image)?;
        // Every change to a guest binary makes a new image: keep the cache bounded.
        cache::prune(&dir, "root-", ".ext2", KEEP_ROOT_IMAGES, cache::PRUNE_GRACE);
        Ok(())
    })?;
    Ok(image)
}

/// Lays out the root filesystem tree in `root` (an empty or new directory): the same
/// tree the ext2 image is made from and the Dockerfile copies.
pub fn stage_root(root: &Path, inputs: &[(PathBuf, String)]) -> Result<()> {
    let entries = manifest::entries();
    for entry in &entries {
        if let Entry::Dir(d) = entry {
            std::fs::create_dir_all(root.join(d))?;
        }
    }
    for (src, dest) in inputs {
        let to = root.join(dest);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(src, &to)
            .with_context(|| format!("copying {} into the image", src.display()))?;
    }
    for entry in &entries {
        if let Entry::Applets(busybox) = entry {
            link_busybox_applets(root, busybox)?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\ntty:x:5:\n")?;
    Ok(())
}

/// One symlink per busybox applet, at the path busybox itself reports.
fn link_busybox_applets(root: &Path, busybox: &str) -> Result<()> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("running busybox --list-full")?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        // PID 1 is ours; busybox is the binary itself.
        if applet.is_empty()
            || applet == "sbin/init"
            || applet == "linuxrc"
            || applet.ends_with("/busybox")
        {
            continue;
        }
        let link = root.join(applet);
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// `mke2fs -t ext2 -d DIR`: a sparse image of `size_mib` with at least `inodes` inodes.
pub fn make_ext2(dir: &Path, image: &Path, size_mib: u64, inodes: u64) -> Result<()> {
    let _ = std::fs::remove_file(image);
    let out = host_tools::child::dies_with_runner(&mut Command::new("mke2fs"))
        .args([
            "-q", "-F", "-t", "ext2", "-b", "4096", "-I", "256", "-m", "0",
        ])
        .arg("-N")
        .arg(inodes.to_string())
        .arg("-E")
        .arg("root_owner=0:0")
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg(format!("{size_mib}M"))
        .output()
        .context("running mke2fs")?;
    if !out.status.success() {
        bail!(
            "mke2fs -d {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Which files of a host directory go into its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// Everything under the directory (an explicit `--disk`, a benchmark tree).
    Everything,
    /// In a git work tree, the files git sees: tracked and untracked, not the ignored
    /// ones (build outputs: `target/` alone is GBs here, and changes with every build);
    /// everything when the directory is not in a work tree or git is missing. The
    /// implicit `/src`.
    GitVisible,
}

/// The files of `dir` that git does not ignore, relative to it; None when `dir` is not
/// in a work tree (or git is not installed).
fn git_visible_files(dir: &Path) -> Option<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("git")
        // The directory's own repository, whatever the caller's environment points at.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .arg("-C")
        .arg(dir)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        // A nested repository is listed as "name/": taken whole.
        .map(|name| {
            PathBuf::from(std::ffi::OsStr::from_bytes(
                name.strip_suffix(b"/").unwrap_or(name),
            ))
        })
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// The names in directory `dir`, sorted.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names = rd
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Adds the entries `rels` of `root` (paths relative to it; a directory with everything
/// below it) to `key` by name, size, mtime, inode and mode, without following
/// symlinks;
/// returns their bytes and count. Listed entries that are gone (a tracked file deleted
/// and not yet committed) are skipped.
fn usage(root: &Path, rels: &[PathBuf], key: &mut KeyBuilder) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut entries) = (0u64, 0u64);
    // Reversed, so that entries come off the stack in order.
    let mut stack: Vec<PathBuf> = rels.iter().rev().cloned().collect();
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        key.add(rel.as_os_str().as_encoded_bytes())
            .add(&meta.size().to_le_bytes())
            .add(&meta.mtime().to_le_bytes())
            .add(&meta.mtime_nsec().to_le_bytes())
            // The inode tells a file replaced by another of the same size, mode and
            // mtime (`rsync -t` and editors write a new file and rename it over the old
            // one). Not the ctime: staging hard-links the files, which sets it, so every
            // run would miss the cache. A file rewritten in place with its old mtime put
            // back (`cp -p` onto it) still looks unchanged.
            .add(&meta.ino().to_le_bytes())
            .add(&meta.mode().to_le_bytes());
        entries += 1;
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            let names = sorted_names(&path)?;
            stack.extend(names.into_iter().rev().map(|name| rel.join(name)));
        }
    }
    Ok((bytes, entries))
}

/// Lays out `files` of `root` in the empty directory `stage` for mke2fs: hard links
/// where the cache shares the file system, copies elsewhere; directories recursively.
fn stage_files(root: &Path, files: &[PathBuf], stage: &Path) -> Result<()> {
    for rel in files {
        let (from, to) = (root.join(rel), stage.join(rel));
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if meta.is_dir() {
            std::fs::create_dir_all(&to)?;
            let inner: Vec<PathBuf> = sorted_names(&from)?
                .into_iter()
                .map(|name| rel.join(name))
                .collect();
            stage_files(root, &inner, stage)?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if meta.is_file() && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}

/// Suffixes of the work files of a snapshot build: the image before its publish, and the
/// staged tree of a git-visible snapshot.
const PARTIAL_SUFFIXES: &[&str] = &[".tmp", ".stage"];

/// Deletes the work files (see [`PARTIAL_SUFFIXES`]) whose names start with `tag` in
/// `dir`, whatever their age; returns how many went. The caller holds the lock of that
/// tag, so none of them belongs to a build in progress.
fn remove_partial_builds(dir: &Path, tag: &str) -> usize {
    PARTIAL_SUFFIXES
        .iter()
        .map(|suffix| cache::prune(dir, tag, suffix, 0, std::time::Duration::ZERO))
        .sum()
}

/// An ext2 snapshot of a host directory, rebuilt only when something in it changed.
pub fn ensure_dir_image(host_dir: &Path, what: Snapshot) -> Result<PathBuf> {
    let host_dir = host_dir
        .canonicalize()
        .with_context(|| format!("directory to snapshot {}", host_dir.display()))?;
    if !host_dir.is_dir() {
        bail!(
            "{} is not a directory: nothing to snapshot",
            host_dir.display()
        );
    }
    let selected = match what {
        Snapshot::GitVisible => git_visible_files(&host_dir),
        Snapshot::Everything => None,
    };
    let mut key = KeyBuilder::new("dir-image-v1");
    let (bytes, entries) = match &selected {
        Some(files) => {
            key.add(b"git-visible");
            let (bytes, entries) = usage(&host_dir, files, &mut key)?;
            // The directories on the way to each file, counted again for every file:
            // an overestimate, which only sizes the inode table generously.
            let parents: u64 = files
                .iter()
                .map(|f| f.components().count() as u64 - 1)
                .sum();
            (bytes, entries + parents)
        }
        None => {
            let top: Vec<PathBuf> = sorted_names(&host_dir)?
                .into_iter()
                .map(PathBuf::from)
                .collect();
            usage(&host_dir, &top, &mut key)?
        }
    };
    let dir = cache::cache_dir("disks")?;
    // One tag per directory and selection: the two selections of one directory are
    // different snapshots, and each replaces only its own older ones.
    let mut path_tag = KeyBuilder::new("dir");
    path_tag.add(host_dir.as_os_str().as_encoded_bytes());
    if selected.is_some() {
        path_tag.add(b"git-visible");
    }
    let path_tag = path_tag.finish();
    let image = dir.join(format!("{}-{}.ext2", &path_tag[..12], key.finish()));
    let lock_name = format!("disk-{}", &path_tag[..12]);
    cache::build_once(&image, &lock_name, || {
        // Older snapshots of the same directory are stale now, but a concurrent runner
        // may have chosen one and not attached it yet: only those unused for the grace
        // period go.
        cache::prune(&dir, &path_tag[..12], ".ext2", 0, cache::PRUNE_GRACE);
        // Partial files of an interrupted build of this directory go at once: only a
        // holder of this lock writes them, and a stale stage of the same key would
        // otherwise be filled again on top of its old contents.
        remove_partial_builds(&dir, &path_tag[..12]);
        let size_mib = bytes * 5 / 4 / (1 << 20) + 64;
        let inodes = entries * 5 / 4 + 1024;
        let tmp = dir.join(format!("{}.tmp", image.display()));
        match &selected {
            Some(files) => {
                let stage = dir.join(format!("{}.stage", image.display()));
                std::fs::create_dir_all(&stage)?;
                let made = stage_files(&host_dir, files, &stage)
                    .and_then(|()| make_ext2(&stage, &tmp, size_mib, inodes));
                let _ = std::fs::remove_dir_all(&stage);
                made?;
            }
            None => make_ext2(&host_dir, &tmp, size_mib, inodes)?,
        }
        cache::publish(&tmp, &image)?;
        // Snapshots of directories that are gone (test trees in temporary
        // directories) would otherwise pile up.
        cache::prune(&dir, "", ".ext2", KEEP_DIR_IMAGES, cache::PRUNE_GRACE);
        Ok(())
    })?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_fingerprint_changes_with_any_source_and_with_the_binaries() {
        let ws = tempfile::tempdir().unwrap();
        let bins = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("init/src")).unwrap();
        std::fs::create_dir_all(ws.path().join("init/target/junk")).unwrap();
        std::fs::write(ws.path().join("init/src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(ws.path().join("Cargo.lock"), "").unwrap();
        let pkgs = vec!["microvm-init".to_string()];
        let fp = || {
            format!(
                "{} {}",
                sources_fingerprint(ws.path(), "-C x", &pkgs),
                binaries_fingerprint(bins.path())
            )
        };
        let first = fp();
        assert_eq!(fp(), first, "stable while nothing changes");
        // Build output under target/ does not count.
        std::fs::write(ws.path().join("init/target/junk/x"), "1").unwrap();
        assert_eq!(fp(), first);
        std::fs::write(ws.path().join("init/src/main.rs"), "fn main() { }").unwrap();
        let edited = fp();
        assert_ne!(edited, first, "an edit (new size) counts");
        std::fs::write(ws.path().join("init/src/new.rs"), "").unwrap();
        let added = fp();
        assert_ne!(added, edited, "a new file counts");
        std::fs::write(bins.path().join("init"), "elf").unwrap();
        assert_ne!(fp(), added, "a binary that appeared counts");
        assert_ne!(
            sources_fingerprint(ws.path(), "-C y", &pkgs),
            sources_fingerprint(ws.path(), "-C x", &pkgs),
            "flags count"
        );
    }

    #[test]
    fn the_staged_tree_holds_every_line_of_the_manifest() {
        let bins = tempfile::tempdir().unwrap();
        for e in manifest::entries() {
            if let Entry::Guest { binary, .. } = e {
                std::fs::write(bins.path().join(binary), b"\x7fELF stand-in").unwrap();
            }
        }
        let inputs = root_image_inputs(bins.path()).unwrap();
        let root = tempfile::tempdir().unwrap();
        stage_root(root.path(), &inputs).unwrap();
        for e in manifest::entries() {
            let (path, is_dir) = match &e {
                Entry::Guest { dest, .. } | Entry::Host { dest, .. } => (dest.clone(), false),
                Entry::Dir(d) => (d.clone(), true),
                // The shell every job's `sh -c` needs, linked to busybox.
                Entry::Applets(_) => ("bin/sh".to_string(), false),
            };
            let meta = std::fs::symlink_metadata(root.path().join(&path))
                .unwrap_or_else(|err| panic!("{e:?}: {path} not staged: {err}"));
            assert_eq!(meta.is_dir(), is_dir, "{e:?}");
        }
        // A host+libs entry brought its loader along.
        assert!(
            inputs.iter().any(|(_, d)| d.contains("ld-linux")),
            "{inputs:?}"
        );
    }

    #[test]
    fn a_file_renamed_over_with_its_old_size_and_mtime_changes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let key = || {
            let mut k = KeyBuilder::new("test");
            usage(dir.path(), &[PathBuf::from("f")], &mut k).unwrap();
            k.finish()
        };
        let before = key();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        // As `rsync -t` leaves it: a new file with the old size and mtime, renamed over.
        let tmp = dir.path().join(".f.tmp");
        std::fs::write(&tmp, b"two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), mtime);
        assert_ne!(key(), before, "the snapshot would be reused stale");
    }

    #[test]
    fn partial_builds_of_the_tag_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "aaaa-1.ext2",
            "aaaa-1.ext2.tmp",
            "aaaa-2.ext2.tmp",
            "bbbb-1.ext2.tmp",
            "bbbb-1.ext2",
        ] {
            std::fs::write(d.join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(d.join("aaaa-3.ext2.stage/sub")).unwrap();
        std::fs::write(d.join("aaaa-3.ext2.stage/sub/f"), b"x").unwrap();
        std::fs::create_dir(d.join("bbbb-2.ext2.stage")).unwrap();
        assert_eq!(remove_partial_builds(d, "aaaa"), 3);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "aaaa-1.ext2",
                "bbbb-1.ext2",
                "bbbb-1.ext2.tmp",
                "bbbb-2.ext2.stage"
            ]
        );
    }
}
