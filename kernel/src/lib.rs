//! The guest kernel: config fragment (data), patch series, cached incremental build.
//!
//! Layout under the cache (`<cache>/kernel/`):
//! - `src-<source id>/tree/`     the unpacked Debian source, patched to the current series
//! - `src-<source id>/applied/`  copies of the patches applied to `tree/`, in order
//! - `obj-<source id>/`          the `O=` build directory (reused: builds are incremental);
//!   `obj-<source id>-debug/` the same for the debug variant (kernel/debug.config)
//! - `out/<build key>/vmlinux`   finished kernels, keyed by source + fragment + patches
//!
//! A kernel whose key exists is never rebuilt. A changed patch re-applies the series and
//! `make` recompiles only what the change touched.

use anyhow::{bail, Context, Result};
use host_tools::cache::{self, KeyBuilder};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The microvm fragment, kept in kernel/microvm.config.
pub const MICROVM_FRAGMENT: &str = include_str!("../microvm.config");

/// What the debug variant adds on top of the microvm fragment (kernel/debug.config).
pub const DEBUG_FRAGMENT: &str = include_str!("../debug.config");

/// Debian's kernel source, the default.
pub const DEBIAN_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// One option of a config fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOption {
    /// Name without the CONFIG_ prefix.
    pub name: String,
    /// `y`, a number or a quoted string; `None` means "is not set".
    pub value: Option<String>,
}

/// A kernel config fragment as data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFragment {
    /// Options in file order.
    pub options: Vec<ConfigOption>,
}

impl ConfigFragment {
    /// Parses Kconfig fragment syntax (`CONFIG_X=v`, `# CONFIG_X is not set`, comments).
    pub fn parse(text: &str) -> Result<Self> {
        let mut options = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    options.push(ConfigOption {
                        name: name.to_string(),
                        value: None,
                    });
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .strip_prefix("CONFIG_")
                .and_then(|l| l.split_once('='))
                .with_context(|| {
                    format!("fragment line {}: not CONFIG_NAME=value: {line}", n + 1)
                })?;
            options.push(ConfigOption {
                name: name.to_string(),
                value: Some(value.to_string()),
            });
        }
        Ok(Self { options })
    }

    /// The fragment for the microvm guest.
    pub fn microvm() -> Result<Self> {
        Self::parse(MICROVM_FRAGMENT).context("kernel/microvm.config")
    }

    /// The microvm fragment with kernel/debug.config on top: lockdep, sleep-in-atomic
    /// checks and KASAN.
    pub fn microvm_debug() -> Result<Self> {
        let mut fragment = Self::microvm()?;
        fragment.merge(&Self::parse(DEBUG_FRAGMENT).context("kernel/debug.config")?);
        Ok(fragment)
    }

    /// Applies `other` on top: its options replace ours of the same name.
    pub fn merge(&mut self, other: &ConfigFragment) {
        for o in &other.options {
            self.set(&o.name, o.value.as_deref());
        }
    }

    /// The value of an option: `Some(None)` if explicitly unset, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.options
            .iter()
            .rev()
            .find(|o| o.name == name)
            .map(|o| o.value.as_deref())
    }

    /// Sets or overrides an option.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        self.options.retain(|o| o.name != name);
        self.options.push(ConfigOption {
            name: name.into(),
            value: value.map(Into::into),
        });
    }

    /// Renders the fragment in the syntax merge_config.sh reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for o in &self.options {
            let _ = match &o.value {
                Some(v) => writeln!(out, "CONFIG_{}={v}", o.name),
                None => writeln!(out, "# CONFIG_{} is not set", o.name),
            };
        }
        out
    }

    /// Options of the fragment that the final .config does not honour (Kconfig silently
    /// drops options whose dependencies are missing).
    pub fn unmet(&self, final_config: &str) -> Vec<String> {
        let have = ConfigFragment::parse(final_config).unwrap_or_default();
        self.options
            .iter()
            .filter(|o| {
                let got = have.get(&o.name).flatten();
                match &o.value {
                    Some(v) => got != Some(v.as_str()),
                    None => got.is_some_and(|g| g != "n"),
                }
            })
            .map(|o| o.name.clone())
            .collect()
    }
}

/// Where the kernel source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// A tarball (Debian's linux-source by default), unpacked into the cache and patched.
    Tarball(PathBuf),
    /// A kernel tree used as it is (patches are not applied to a user's tree).
    Tree(PathBuf),
}

/// Everything that determines a kernel build.
#[derive(Debug, Clone)]
pub struct KernelRequest {
    /// Where the source comes from.
    pub source: KernelSource,
    /// The patch series, in order.
    pub patches: Vec<PathBuf>,
    /// The config fragment on top of tinyconfig.
    pub fragment: ConfigFragment,
    /// The debug variant: built in a directory of its own, so switching between it and
    /// the normal kernel does not rebuild everything each time.
    pub debug: bool,
}

/// The patch series in `dir`: every `*.patch`, in name order.
pub fn patch_series(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut patches = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "patch") {
                patches.push(path);
            }
        }
    }
    patches.sort();
    Ok(patches)
}

impl KernelRequest {
    fn source_id(&self) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let mut key = KeyBuilder::new("kernel-source");
        match &self.source {
            KernelSource::Tarball(path) => {
                // The key depends on the tarball, so Debian's must be installed before a
                // cached build can even be looked up (a fresh machine has none).
                if path == Path::new(DEBIAN_TARBALL) && !path.exists() {
                    host_tools::deps::ensure(&[host_tools::deps::KERNEL_SOURCE])?;
                }
                let meta = std::fs::metadata(path)
                    .with_context(|| format!("kernel source {}", path.display()))?;
                key.add(path.as_os_str().as_encoded_bytes())
                    .add(&meta.len().to_le_bytes())
                    .add(&meta.mtime().to_le_bytes());
            }
            KernelSource::Tree(dir) => {
                let dir = dir
                    .canonicalize()
                    .with_context(|| format!("kernel tree {}", dir.display()))?;
                key.add(dir.as_os_str().as_encoded_bytes());
            }
        }
        Ok(key.finish())
    }

    /// The cache key of the finished kernel.
    pub fn build_key(&self) -> Result<String> {
        let mut key = KeyBuilder::new("kernel-build");
        key.add(self.source_id()?.as_bytes())
            .add(self.fragment.render().as_bytes());
        if matches!(self.source, KernelSource::Tarball(_)) {
            for p in &self.patches {
                key.add_file(p)?;
            }
        }
        Ok(key.finish())
    }
}

/// Kernel builds kept in the cache (most recently used first): the patched and the
/// stock kernel, and room for a few experiments.
const KEEP_KERNELS: usize = 6;

/// Kernel sources (unpacked trees with their build directories) kept in the cache: the
/// Debian tarball's (its build directory and the debug variant's) and one tree of the
/// user's.
const KEEP_SOURCES: usize = 3;

/// Returns the vmlinux for `req`, building it if no cached one matches.
pub fn ensure_kernel(req: &KernelRequest) -> Result<PathBuf> {
    let outputs = cache::cache_dir("kernel/out")?;
    let out_dir = outputs.join(req.build_key()?);
    let vmlinux = out_dir.join("vmlinux");
    // A user's tree may change under the same key: always let make decide.
    // Touched first, so a concurrent prune sees it as used before we rely on it; its
    // source and build directories too, which `kernel --check` reuses.
    cache::touch(&out_dir);
    let (src_dir, obj) = build_dirs(&req.source_id()?, req.debug)?;
    cache::touch(&src_dir);
    cache::touch(&obj);
    if vmlinux.is_file() && matches!(req.source, KernelSource::Tarball(_)) {
        return Ok(vmlinux);
    }
    host_tools::deps::ensure(host_tools::deps::KERNEL_BUILD)?;
    let _lock = cache::lock("kernel")?;
    if vmlinux.is_file() && matches!(req.source, KernelSource::Tarball(_)) {
        return Ok(vmlinux);
    }
    let tree = match &req.source {
        KernelSource::Tarball(tarball) => {
            let tree = unpack(tarball, &src_dir)?;
            apply_series(&tree, &src_dir.join("applied"), &req.patches)?;
            tree
        }
        KernelSource::Tree(dir) => dir.clone(),
    };
    std::fs::create_dir_all(&obj)?;
    std::fs::create_dir_all(&out_dir)?;
    let log = out_dir.join("build.log");
    configure(&tree, &obj, &req.fragment, &log)?;
    make(&tree, &obj, &["vmlinux"], &log, true)?;
    let tmp = out_dir.join("vmlinux.tmp");
    std::fs::copy(obj.join("vmlinux"), &tmp).context("copying vmlinux")?;
    cache::publish(&tmp, &vmlinux)?;
    std::fs::copy(obj.join(".config"), out_dir.join("config")).context("saving .config")?;
    cache::prune(&outputs, "", "", KEEP_KERNELS, cache::PRUNE_GRACE);
    // Each source (a new Debian tarball, each --kernel-src tree) has a GB-sized
    // unpacked tree and build directory; older ones are not needed for the kernels
    // kept above (and are rebuilt should one be asked for again). Under the kernel
    // lock, so no build uses them.
    let kernel_cache = cache::cache_dir("kernel")?;
    cache::prune(&kernel_cache, "src-", "", KEEP_SOURCES, cache::PRUNE_GRACE);
    cache::prune(&kernel_cache, "obj-", "", KEEP_SOURCES, cache::PRUNE_GRACE);
    Ok(vmlinux)
}

/// The cache directories of a source: `src-<id>` (tree and applied series, for the
/// tarball) and `obj-<id>` (the `O=` build directory; `obj-<id>-debug` for the debug
/// variant).
fn build_dirs(src_id: &str, debug: bool) -> Result<(PathBuf, PathBuf)> {
    let kernel_cache = cache::cache_dir("kernel")?;
    let suffix = if debug { "-debug" } else { "" };
    Ok((
        kernel_cache.join(format!("src-{src_id}")),
        kernel_cache.join(format!("obj-{src_id}{suffix}")),
    ))
}

/// What `check_series` found wrong with the patch series; empty when it is clean.
#[derive(Debug, Default)]
pub struct SeriesReport {
    /// checkpatch.pl complaints, one block per patch that has any.
    pub checkpatch: Vec<String>,
    /// Compiler warnings and errors in the C files the series touches.
    pub compiler: Vec<String>,
}

impl SeriesReport {
    /// No complaints at all.
    pub fn is_clean(&self) -> bool {
        self.checkpatch.is_empty() && self.compiler.is_empty()
    }
}

/// Reviews the series the way a maintainer's tooling would: checkpatch.pl (from the
/// tree itself) on every patch, and a fresh compile of every C file the series touches
/// with the kernel's own warning flags. The build is incremental, so a warning in a
/// patched file scrolls past once and is never seen again; this recompiles those files
/// on purpose. `req` must name the Debian tarball; the kernel is built first if needed.
pub fn check_series(req: &KernelRequest) -> Result<SeriesReport> {
    if !matches!(req.source, KernelSource::Tarball(_)) {
        bail!("the series check needs the Debian source (it patches it itself), not --kernel-src");
    }
    if req.patches.is_empty() {
        bail!("no patches to check (--stock?)");
    }
    let vmlinux = ensure_kernel(req)?;
    // A cached kernel skips the build and its packages; the check needs them all.
    host_tools::deps::ensure(host_tools::deps::KERNEL_BUILD)?;
    let _lock = cache::lock("kernel")?;
    // ensure_kernel marked them used.
    let (src_dir, obj) = build_dirs(&req.source_id()?, req.debug)?;
    // A cached kernel does not need its source any more, and a build of another source
    // may have pruned it: bring back what the check compiles in.
    let KernelSource::Tarball(tarball) = &req.source else {
        unreachable!("checked above");
    };
    let tree = unpack(tarball, &src_dir)?;
    // Another build may have left the shared tree at a different series meanwhile.
    apply_series(&tree, &src_dir.join("applied"), &req.patches)?;
    if !obj.join(".config").is_file() {
        std::fs::create_dir_all(&obj)?;
        configure(
            &tree,
            &obj,
            &req.fragment,
            &vmlinux.with_file_name("build.log"),
        )?;
    }
    let mut report = SeriesReport::default();
    let mut texts = Vec::new();
    for patch in &req.patches {
        let out = Command::new("perl")
            .arg(tree.join("scripts/checkpatch.pl"))
            // The only thing --no-tree cannot judge: whether MAINTAINERS covers a new
            // file (io_uring/ is covered as a whole).
            .args(["--no-tree", "--quiet", "--ignore", "FILE_PATH_CHANGES"])
            .arg(patch)
            .stdin(Stdio::null())
            .output()
            .context("running checkpatch.pl")?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !said.is_empty() {
            report
                .checkpatch
                .push(format!("{}:\n{said}", patch.display()));
        }
        texts.push(std::fs::read_to_string(patch)?);
    }
    let files = touched_c_files(texts.iter().map(String::as_str));
    let mut targets = Vec::new();
    for file in &files {
        let object = format!("{}.o", file.trim_end_matches(".c"));
        let _ = std::fs::remove_file(obj.join(&object));
        targets.push(object);
    }
    // Next to the build's own log; fresh each time, as make() appends.
    let log = vmlinux.with_file_name("series-check.log");
    let _ = std::fs::remove_file(&log);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    // A failed compile is an error naming the log and its tail, errors included.
    make(&tree, &obj, &targets, &log, false)?;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    report.compiler = compiler_complaints(&text);
    Ok(report)
}

/// The C files a series of patches creates or changes, each once, in first-seen order.
pub fn touched_c_files<'a>(patches: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for text in patches {
        for line in text.lines() {
            let Some(path) = line.strip_prefix("+++ b/") else {
                continue;
            };
            if path.ends_with(".c") && !files.iter().any(|f| f == path) {
                files.push(path.to_string());
            }
        }
    }
    files
}

/// The compiler's warning and error lines in a build log (kbuild's own chatter and the
/// notes and source excerpts that follow each complaint are left out).
pub fn compiler_complaints(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(": warning: ") || l.contains(": error: "))
        .map(str::to_string)
        .collect()
}

/// Unpacks the tarball once; returns the top directory of the tree.
fn unpack(tarball: &Path, src_dir: &Path) -> Result<PathBuf> {
    let tree = src_dir.join("tree");
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    eprintln!("host-runner: unpacking {} (once)", tarball.display());
    let staging = src_dir.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&tree);
    let _ = std::fs::remove_dir_all(src_dir.join("applied"));
    std::fs::create_dir_all(&staging)?;
    run(
        host_tools::child::dies_with_runner(&mut Command::new("tar"))
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&staging)
            .arg("--strip-components=1"),
    )
    .context("unpacking the kernel source")?;
    cache::publish(&staging, &tree)?;
    Ok(tree)
}

/// Brings `tree` from the series recorded in `applied/` to `patches`: reverts the old
/// series in reverse order, then applies the new one, keeping copies for next time.
fn apply_series(tree: &Path, applied: &Path, patches: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(applied)?;
    let old = patch_series(applied)?;
    let same = old.len() == patches.len()
        && old
            .iter()
            .zip(patches)
            .all(|(a, b)| std::fs::read(a).ok() == std::fs::read(b).ok());
    if same {
        return Ok(());
    }
    for p in old.iter().rev() {
        patch_tree(tree, p, Direction::Revert).with_context(|| {
            format!(
                "reverting {} from the cached tree; delete {} to start over",
                p.display(),
                tree.parent().unwrap_or(tree).display()
            )
        })?;
        std::fs::remove_file(p)?;
    }
    for (i, p) in patches.iter().enumerate() {
        patch_tree(tree, p, Direction::Apply)
            .with_context(|| format!("applying {}", p.display()))?;
        let name = p.file_name().context("patch without a name")?;
        let mut copy = std::ffi::OsString::from(format!("{i:04}-"));
        copy.push(name);
        std::fs::copy(p, applied.join(copy))?;
    }
    Ok(())
}

/// Which way [`patch_tree`] moves a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Apply,
    Revert,
}

/// Applies or reverts one patch on `tree`, all or nothing. patch(1) on its own writes
/// the hunks that fit and leaves `.rej` files for the rest; the series record in
/// `applied/` would then not describe the tree, and every later build would trip over
/// the half-applied patch. A dry run first means a patch that does not fit changes
/// nothing; the error carries patch's own report of what failed.
fn patch_tree(tree: &Path, patch: &Path, direction: Direction) -> Result<()> {
    let flags: &[&str] = match direction {
        Direction::Apply => &["-p1", "--batch", "--forward", "--quiet"],
        Direction::Revert => &["-R", "-p1", "--batch", "--quiet"],
    };
    host_tools::deps::ensure(&[host_tools::deps::PATCH])?;
    for dry_run in [true, false] {
        let mut cmd = Command::new("patch");
        cmd.args(flags);
        if dry_run {
            cmd.arg("--dry-run");
        }
        let out = cmd
            .arg("-d")
            .arg(tree)
            .arg("-i")
            .arg(patch)
            .stdin(Stdio::null())
            .output()
            .context("running patch")?;
        if !out.status.success() {
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let what = if dry_run {
                "does not fit; nothing was changed"
            } else {
                "failed after a clean dry run; the tree may be half patched"
            };
            bail!("patch {what} ({}):\n{}", out.status, said.trim_end());
        }
    }
    Ok(())
}

/// tinyconfig + fragment + olddefconfig in `obj`; fails when Kconfig dropped an option.
fn configure(tree: &Path, obj: &Path, fragment: &ConfigFragment, log: &Path) -> Result<()> {
    make(tree, obj, &["tinyconfig"], log, false)?;
    let frag_path = obj.join("microvm.fragment");
    std::fs::write(&frag_path, fragment.render())?;
    run(Command::new(tree.join("scripts/kconfig/merge_config.sh"))
        .current_dir(tree)
        .arg("-m")
        .arg("-O")
        .arg(obj)
        .arg(obj.join(".config"))
        .arg(&frag_path)
        .stdout(log_file(log)?)
        .stderr(log_file(log)?))
    .context("merge_config.sh")?;
    make(tree, obj, &["olddefconfig"], log, false)?;
    let config = std::fs::read_to_string(obj.join(".config"))?;
    let unmet = fragment.unmet(&config);
    if !unmet.is_empty() {
        bail!(
            "the kernel config does not honour these fragment options (missing dependencies?): {}",
            unmet.join(", ")
        );
    }
    Ok(())
}

fn log_file(log: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))
}

/// Runs make with output to the log, printing progress every few seconds when asked.
fn make(tree: &Path, obj: &Path, targets: &[&str], log: &Path, progress: bool) -> Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = Command::new("make");
    // make and its compilers run for minutes; a killed runner must not leave them.
    host_tools::child::dies_with_runner(&mut cmd)
        .arg("-C")
        .arg(tree)
        .arg(format!("O={}", obj.display()))
        .arg(format!("-j{jobs}"))
        .args(targets)
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting make")?;
    let mut last = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if progress && last.elapsed() >= Duration::from_secs(10) {
            last = Instant::now();
            let compiled = std::fs::read_to_string(log)
                .map(|t| {
                    t.lines()
                        .filter(|l| l.trim_start().starts_with("CC "))
                        .count()
                })
                .unwrap_or(0);
            eprintln!(
                "host-runner: kernel build {}s, {compiled} files compiled (log: {})",
                start.elapsed().as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        bail!(
            "make {} failed ({status}); full log: {}\n{}",
            targets.join(" "),
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    if progress {
        eprintln!(
            "host-runner: kernel built in {:.1}s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    // The runner's standard input may be the job's (run-in-vm passes it on).
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microvm_fragment_has_what_the_guest_needs() {
        let f = ConfigFragment::microvm().unwrap();
        for name in [
            "VIRTIO_MMIO",
            "VIRTIO_MMIO_CMDLINE_DEVICES",
            "VIRTIO_BLK",
            "EXT4_FS",
            "EXT4_USE_FOR_EXT2",
            "DEVTMPFS",
            "DEVTMPFS_MOUNT",
            "PROC_FS",
            "PROC_SYSCTL",
            "SYSFS",
            "TMPFS",
            "IO_URING",
            "VSOCKETS",
            "VIRTIO_VSOCKETS",
            "SERIAL_8250_CONSOLE",
            "PVH",
            "SIGNALFD",
            "UNIX98_PTYS",
        ] {
            assert_eq!(f.get(name), Some(Some("y")), "{name}");
        }
        for name in ["PCI", "ACPI", "MODULES"] {
            assert_eq!(f.get(name), Some(None), "{name} must be off");
        }
    }

    #[test]
    fn fragment_renders_and_parses_back() {
        let mut f = ConfigFragment::microvm().unwrap();
        f.set("SMP", None);
        f.set("NR_CPUS", Some("4"));
        let again = ConfigFragment::parse(&f.render()).unwrap();
        assert_eq!(again, f);
        assert_eq!(again.get("SMP"), Some(None));
        assert_eq!(again.get("NR_CPUS"), Some(Some("4")));
    }

    #[test]
    fn malformed_fragment_lines_are_refused() {
        assert!(ConfigFragment::parse("CONFIG_X\n").is_err());
        assert!(ConfigFragment::parse("X=y\n").is_err());
    }

    #[test]
    fn touched_c_files_come_from_the_new_side_of_each_diff() {
        let one = "--- a/fs/readdir.c\n+++ b/fs/readdir.c\n@@ -1 +1 @@\n+++ b/not-a-header\n\
                   --- a/fs/internal.h\n+++ b/fs/internal.h\n";
        let two =
            "--- /dev/null\n+++ b/io_uring/getdents.c\n--- a/fs/readdir.c\n+++ b/fs/readdir.c\n";
        assert_eq!(
            touched_c_files([one, two]),
            ["fs/readdir.c", "io_uring/getdents.c"]
        );
    }

    #[test]
    fn compiler_complaints_keep_only_warnings_and_errors() {
        let log = "  CC      fs/readdir.o\n\
                   tree/fs/readdir.c:453:5: warning: no previous prototype for 'vfs_getdents' [-Wmissing-prototypes]\n\
                     453 | int vfs_getdents(struct file *file,\n\
                   tree/io_uring/getdents.c:9:1: error: unknown type name 'foo'\n\
                   tree/fs/readdir.c:10:2: note: declared here\n";
        let found = compiler_complaints(log);
        assert_eq!(found.len(), 2);
        assert!(found[0].contains("-Wmissing-prototypes"));
        assert!(found[1].contains("unknown type name"));
        assert!(compiler_complaints("  CC      fs/readdir.o\n  LD      vmlinux\n").is_empty());
    }

    /// A tree with `a.txt` and `b.txt`, and a patch that changes both.
    fn tree_and_patch(b_content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(tree.join("b.txt"), b_content).unwrap();
        let patch = dir.path().join("0001-x.patch");
        std::fs::write(
            &patch,
            "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n\
             --- a/b.txt\n+++ b/b.txt\n@@ -1,3 +1,3 @@\n red\n-green\n+GREEN\n blue\n",
        )
        .unwrap();
        (dir, patch)
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_patch_that_does_not_fit_changes_nothing() {
        let (dir, patch) = tree_and_patch("something\nelse\nentirely\n");
        let tree = dir.path().join("tree");
        let err = patch_tree(&tree, &patch, Direction::Apply).unwrap_err();
        assert!(
            format!("{err:#}").contains("nothing was changed"),
            "{err:#}"
        );
        // The hunk for a.txt fits, but it must not have been written either.
        assert_eq!(
            std::fs::read_to_string(tree.join("a.txt")).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(files_in(&tree), ["a.txt", "b.txt"], "no .rej or .orig left");
    }

    #[test]
    fn a_patch_that_fits_applies_and_reverts() {
        let (dir, patch) = tree_and_patch("red\ngreen\nblue\n");
        let tree = dir.path().join("tree");
        patch_tree(&tree, &patch, Direction::Apply).unwrap();
        let read = |name: &str| std::fs::read_to_string(tree.join(name)).unwrap();
        assert_eq!(read("a.txt"), "one\nTWO\nthree\n");
        assert_eq!(read("b.txt"), "red\nGREEN\nblue\n");
        // Applied twice: refused, not doubled.
        assert!(patch_tree(&tree, &patch, Direction::Apply).is_err());
        patch_tree(&tree, &patch, Direction::Revert).unwrap();
        assert_eq!(read("a.txt"), "one\ntwo\nthree\n");
        assert_eq!(read("b.txt"), "red\ngreen\nblue\n");
        assert_eq!(files_in(&tree), ["a.txt", "b.txt"]);
    }

    #[test]
    fn unmet_options_are_found() {
        let f = ConfigFragment::parse("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n").unwrap();
        let final_config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n";
        assert_eq!(
            f.unmet(final_config),
            vec!["B".to_string(), "C".to_string()]
        );
    }
}
