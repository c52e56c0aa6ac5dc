//! Named VM targets from a TOML file (default `vm-targets.toml` in the current
//! directory), in the spirit of vmtest.toml: each says which kernel, how many vCPUs and
//! how much memory, which disks, shares and scratch filesystems, and optionally a
//! command. `run-in-vm --target NAME` and `host-runner test --target NAME` take one;
//! `host-runner targets` runs them all as a matrix with a summary line per target.
//!
//! ```toml
//! [target.patched-2cpu]
//! cpus = 2
//! mem = 1024
//! tests = ["getdents_"]          # the guest tests this target runs in the matrix
//!
//! [target.stock]
//! kernel = "stock"               # "patched" (default), "stock", "debug",
//!                                # { tree = "DIR" } or { file = "vmlinux" }
//! command = ["guest-tests", "run", "getdents_absent_on_stock"]
//!
//! [target.with-data]
//! disks = ["testdata:/data"]     # paths relative to this file
//! shares = ["out:/out"]
//! command = ["sh", "-c", "ls /data > /out/listing"]
//! ```

use crate::UsageError;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file `--targets` defaults to, looked up in the current directory.
pub const DEFAULT_FILE: &str = "vm-targets.toml";

/// Where a target's kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The cached build with kernel/patches.
    #[default]
    Patched,
    /// The cached build without them.
    Stock,
    /// The debug variant of the patched build (kernel/debug.config).
    Debug,
    /// A kernel tree built as is.
    Tree(PathBuf),
    /// A prebuilt vmlinux or bzImage.
    File(PathBuf),
}

/// One target, with paths made absolute against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Its name, the key under `[target]`.
    pub name: String,
    /// The kernel.
    pub kernel: KernelChoice,
    /// vCPUs, if the target sets them.
    pub cpus: Option<u32>,
    /// Memory in MiB, if the target sets it.
    pub mem: Option<u32>,
    /// `HOSTDIR:GUESTDIR` disk specifications, as `--disk` takes them.
    pub disks: Vec<String>,
    /// `HOSTDIR:GUESTDIR[:ro|rw]`, as `--share` takes them.
    pub shares: Vec<String>,
    /// `TYPE[,FEATURE...]:GUESTDIR`, as `--scratch` takes them.
    pub scratch: Vec<String>,
    /// The command `run-in-vm --target` and the matrix run; without one the matrix
    /// runs the guest tests.
    pub command: Option<Vec<String>>,
    /// Name filters for the guest tests the matrix runs on this target (all if empty).
    pub tests: Vec<String>,
}

/// A target as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    kernel: Option<RawKernel>,
    cpus: Option<u32>,
    mem: Option<u32>,
    #[serde(default)]
    disks: Vec<String>,
    #[serde(default)]
    shares: Vec<String>,
    #[serde(default)]
    scratch: Vec<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    tests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawKernel {
    Named(String),
    Tree { tree: PathBuf },
    File { file: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    target: toml::Table,
}

/// Parses a targets file's text; relative paths are taken from `base`. Targets keep
/// the order of the file.
pub fn parse(text: &str, base: &Path) -> Result<Vec<Target>, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    for (name, value) in raw.target {
        let t: RawTarget = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("target {name}: {}", e.message()))?;
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let kernel = match t.kernel {
            None => KernelChoice::Patched,
            Some(RawKernel::Named(n)) => match n.as_str() {
                "patched" => KernelChoice::Patched,
                "stock" => KernelChoice::Stock,
                "debug" => KernelChoice::Debug,
                other => {
                    return Err(format!(
                        "target {name}: kernel {other:?} is none of \"patched\", \"stock\", \"debug\", {{ tree = \"DIR\" }}, {{ file = \"PATH\" }}"
                    ))
                }
            },
            Some(RawKernel::Tree { tree }) => KernelChoice::Tree(at(tree)),
            Some(RawKernel::File { file }) => KernelChoice::File(at(file)),
        };
        if t.cpus == Some(0) || t.mem.is_some_and(|m| m < 64) {
            return Err(format!(
                "target {name}: cpus must be positive, mem at least 64"
            ));
        }
        if t.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(format!("target {name}: command is empty"));
        }
        let host_relative = |spec: &String| match spec.split_once(':') {
            Some((host, rest)) if !host.is_empty() => {
                format!("{}:{rest}", at(PathBuf::from(host)).display())
            }
            _ => spec.clone(),
        };
        targets.push(Target {
            name,
            kernel,
            cpus: t.cpus,
            mem: t.mem,
            disks: t.disks.iter().map(host_relative).collect(),
            shares: t.shares.iter().map(host_relative).collect(),
            scratch: t.scratch,
            command: t.command,
            tests: t.tests,
        });
    }
    Ok(targets)
}

/// Reads the targets file: `file`, else [`DEFAULT_FILE`] in the current directory.
pub fn load(file: Option<&Path>) -> Result<Vec<Target>> {
    let path = file.map_or_else(|| PathBuf::from(DEFAULT_FILE), Path::to_path_buf);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "targets file {}: {e}{}",
            path.display(),
            if file.is_none() {
                " (give one with --targets FILE)"
            } else {
                ""
            }
        ))
    })?;
    let base = std::fs::canonicalize(&path)
        .with_context(|| format!("resolving {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    parse(&text, &base).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// The target called `name`, or a usage error naming those there are.
pub fn find<'a>(targets: &'a [Target], name: &str) -> Result<&'a Target> {
    targets.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        UsageError(format!("no target {name:?}; the file has {names:?}")).into()
    })
}

/// What one target of the matrix came to.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixLine {
    /// The target's name.
    pub name: String,
    /// Passed: exit status 0.
    pub passed: bool,
    /// What ran and how it ended.
    pub detail: String,
    /// Wall-clock time.
    pub seconds: f64,
}

impl MatrixLine {
    /// The summary line printed for it.
    pub fn render(&self, name_width: usize) -> String {
        format!(
            "{:<name_width$}  {}  {}  ({:.1} s)",
            self.name,
            if self.passed { "PASS" } else { "FAIL" },
            self.detail,
            self.seconds
        )
    }
}

/// One line describing `t`, for `targets --list`.
pub fn describe(t: &Target) -> String {
    let kernel = match &t.kernel {
        KernelChoice::Patched => "patched".to_string(),
        KernelChoice::Stock => "stock".to_string(),
        KernelChoice::Debug => "debug".to_string(),
        KernelChoice::Tree(d) => format!("tree {}", d.display()),
        KernelChoice::File(f) => format!("file {}", f.display()),
    };
    let what = match (&t.command, t.tests.is_empty()) {
        (Some(c), _) => format!("command {c:?}"),
        (None, true) => "the guest tests".to_string(),
        (None, false) => format!("the guest tests matching {:?}", t.tests),
    };
    format!(
        "{}: kernel {kernel}, {} vCPU, {} MiB; {what}",
        t.name,
        t.cpus.unwrap_or(1),
        t.mem.unwrap_or(512)
    )
}

/// The matrix's closing lines: one per target, then the count.
pub fn summary(lines: &[MatrixLine]) -> String {
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let mut out = String::from("targets:\n");
    for l in lines {
        out.push_str(&format!("  {}\n", l.render(width)));
    }
    let passed = lines.iter().filter(|l| l.passed).count();
    out.push_str(&format!(
        "targets: {passed} passed, {} failed\n",
        lines.len() - passed
    ));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Targets of every kind, also used by `setup`'s tests.
    pub(crate) const SAMPLE: &str = r#"
        [target.zeta]
        cpus = 2
        mem = 1024
        tests = ["getdents_"]

        [target.stock]
        kernel = "stock"
        command = ["true"]

        [target.tree]
        kernel = { tree = "linux" }
        disks = ["data:/data", "/abs:/abs"]
        shares = ["out:/out:ro"]
        scratch = ["ext4:/mnt"]

        [target.file]
        kernel = { file = "/boot/vmlinux" }
    "#;

    #[test]
    fn targets_keep_file_order_and_paths_resolve_against_the_file() {
        let t = parse(SAMPLE, Path::new("/proj")).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["zeta", "stock", "tree", "file"]);
        assert_eq!((t[0].cpus, t[0].mem), (Some(2), Some(1024)));
        assert_eq!(t[0].tests, ["getdents_"]);
        assert_eq!(t[1].kernel, KernelChoice::Stock);
        assert_eq!(t[1].command, Some(vec!["true".to_string()]));
        assert_eq!(t[2].kernel, KernelChoice::Tree("/proj/linux".into()));
        assert_eq!(t[2].disks, ["/proj/data:/data", "/abs:/abs"]);
        assert_eq!(t[2].shares, ["/proj/out:/out:ro"]);
        assert_eq!(t[2].scratch, ["ext4:/mnt"]);
        assert_eq!(t[3].kernel, KernelChoice::File("/boot/vmlinux".into()));
    }

    #[test]
    fn summary_lines_align_and_say_pass_or_fail() {
        let line = |name: &str, passed| MatrixLine {
            name: name.into(),
            passed,
            detail: "command: exit status 0".into(),
            seconds: 2.04,
        };
        assert_eq!(
            line("a", true).render(5),
            "a      PASS  command: exit status 0  (2.0 s)"
        );
        assert!(line("stock", false).render(5).starts_with("stock  FAIL"));
        let t = parse(SAMPLE, Path::new("/proj")).unwrap();
        assert_eq!(
            describe(&t[0]),
            "zeta: kernel patched, 2 vCPU, 1024 MiB; the guest tests matching [\"getdents_\"]"
        );
        assert_eq!(
            describe(&t[1]),
            "stock: kernel stock, 1 vCPU, 512 MiB; command [\"true\"]"
        );
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        for (text, says) in [
            ("[target.a]\ncpu = 2\n", "unknown field `cpu`"),
            ("[target.a]\nkernel = \"mainline\"\n", "kernel \"mainline\""),
            ("[target.a]\ncpus = 0\n", "cpus must be positive"),
            ("[target.a]\nmem = 32\n", "mem at least 64"),
            ("[target.a]\ncommand = []\n", "command is empty"),
            ("[targets.a]\n", "unknown field `targets`"),
            ("[target.a\n", "expected"),
        ] {
            let err = parse(text, Path::new("/")).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
