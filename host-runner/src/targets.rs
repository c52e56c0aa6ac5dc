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

use crate::cli::{KernelArgs, RunArgs, VmArgs};
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

impl Target {
    /// The VM options of this target in place of `vm`'s kernel, vCPUs and memory (the
    /// command line cannot also set those: clap refuses them with `--target`).
    pub fn apply_vm(&self, vm: &mut VmArgs) {
        vm.kernel = match &self.kernel {
            KernelChoice::Patched => KernelArgs::default(),
            KernelChoice::Stock => KernelArgs {
                stock: true,
                ..KernelArgs::default()
            },
            KernelChoice::Debug => KernelArgs {
                debug_kernel: true,
                ..KernelArgs::default()
            },
            KernelChoice::Tree(dir) => KernelArgs {
                kernel_src: Some(dir.clone()),
                ..KernelArgs::default()
            },
            KernelChoice::File(f) => KernelArgs {
                kernel: Some(f.clone()),
                ..KernelArgs::default()
            },
        };
        if let Some(c) = self.cpus {
            vm.cpus = c;
        }
        if let Some(m) = self.mem {
            vm.mem = m;
        }
    }

    /// `run` with this target: its VM, its disks, shares and scratch filesystems
    /// before the command line's, and its command unless the command line gives one.
    pub fn apply_run(&self, run: &mut RunArgs) {
        self.apply_vm(&mut run.vm);
        let before = |mine: &[String], given: &mut Vec<String>| {
            let mut all = mine.to_vec();
            all.append(given);
            *given = all;
        };
        before(&self.disks, &mut run.disks);
        before(&self.shares, &mut run.shares);
        before(&self.scratch, &mut run.scratch);
        if run.command.is_empty() {
            if let Some(c) = &self.command {
                run.command = c.iter().map(Into::into).collect();
            }
        }
    }
}

/// The VM options with `--target` applied, if one was given.
pub fn resolve_vm(vm: &VmArgs) -> Result<VmArgs> {
    let mut vm = vm.clone();
    if let Some(name) = vm.target.clone() {
        let targets = load(vm.targets.as_deref())?;
        find(&targets, &name)?.apply_vm(&mut vm);
    }
    Ok(vm)
}

/// The run options with `--target` applied, if one was given.
pub fn resolve_run(run: &RunArgs) -> Result<RunArgs> {
    let mut run = run.clone();
    if let Some(name) = run.vm.target.clone() {
        let targets = load(run.vm.targets.as_deref())?;
        find(&targets, &name)?.apply_run(&mut run);
    }
    Ok(run)
}

/// `targets`: every target of the file (or those named) in turn.
#[derive(clap::Args, Debug, Clone)]
pub struct MatrixArgs {
    /// The targets file (default: vm-targets.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// List the targets, one line each, instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Wall-clock limit of each VM, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Run only these targets (all when none is named).
    pub names: Vec<String>,
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

/// Runs the matrix; the exit status is 0 when every target passed, 1 otherwise.
pub fn cmd_matrix(args: &MatrixArgs) -> Result<i32> {
    let file = args
        .targets
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    let all = load(Some(&file))?;
    let chosen: Vec<&Target> = if args.names.is_empty() {
        all.iter().collect()
    } else {
        args.names
            .iter()
            .map(|n| find(&all, n))
            .collect::<Result<_>>()?
    };
    if chosen.is_empty() {
        return Err(UsageError(format!("{}: no targets", file.display())).into());
    }
    if args.list {
        for t in &chosen {
            println!("{}", describe(t));
        }
        return Ok(0);
    }
    let mut lines = Vec::new();
    for t in &chosen {
        eprintln!("host-runner: == target {} ==", t.name);
        let start = std::time::Instant::now();
        let (code, detail) = run_one(t, &file, args.timeout)?;
        let line = MatrixLine {
            name: t.name.clone(),
            passed: code == 0,
            detail,
            seconds: start.elapsed().as_secs_f64(),
        };
        lines.push(line);
        // A stop signal ends the matrix as it ends a run: 128+N, nothing more started.
        if code > 128 && code - 128 <= 64 && crate::launcher::is_stop_signal(code - 128) {
            print_summary(&lines);
            return Ok(code);
        }
    }
    print_summary(&lines);
    Ok(if lines.iter().all(|l| l.passed) { 0 } else { 1 })
}

fn print_summary(lines: &[MatrixLine]) {
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    println!("targets:");
    for l in lines {
        println!("  {}", l.render(width));
    }
    let passed = lines.iter().filter(|l| l.passed).count();
    println!("targets: {passed} passed, {} failed", lines.len() - passed);
}

/// Runs one target the way a user would: `run --target` for one with a command,
/// `test --target` for one without. Returns the exit status and what it means.
fn run_one(t: &Target, file: &Path, timeout: u64) -> Result<(i32, String)> {
    use clap::Parser;
    let file = file.display().to_string();
    let timeout = timeout.to_string();
    let common = [
        "--target",
        t.name.as_str(),
        "--targets",
        &file,
        "--timeout",
        &timeout,
    ];
    if t.command.is_some() {
        let mut argv = vec!["host-runner", "run", "-n"];
        argv.extend_from_slice(&common);
        let cli = crate::cli::Cli::try_parse_from(&argv)
            .map_err(|e| UsageError(format!("target {}: {e}", t.name)))?;
        let code = crate::cli::dispatch(cli)?;
        return Ok((code, format!("command: exit status {code}")));
    }
    let results = tempfile::NamedTempFile::new().context("a file for the target's results")?;
    let json = results.path().display().to_string();
    let mut argv = vec!["host-runner", "test", "--json", &json];
    argv.extend_from_slice(&common);
    argv.extend(t.tests.iter().map(String::as_str));
    let cli = crate::cli::Cli::try_parse_from(&argv)
        .map_err(|e| UsageError(format!("target {}: {e}", t.name)))?;
    let code = crate::cli::dispatch(cli)?;
    let summary = std::fs::read_to_string(results.path())
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|doc| doc["summary"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("exit status {code}"));
    Ok((code, format!("guest tests: {summary}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
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

    #[test]
    fn a_target_sets_the_vm_and_adds_to_the_run() {
        use clap::Parser;
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            run: RunArgs,
        }
        let t = parse(SAMPLE, Path::new("/proj")).unwrap();
        let mut run = Run::parse_from(["run-in-vm", "--disk", "/x:/x", "--target", "tree"]).run;
        t[2].apply_run(&mut run);
        assert_eq!(run.vm.kernel.kernel_src, Some(PathBuf::from("/proj/linux")));
        assert_eq!(run.disks, ["/proj/data:/data", "/abs:/abs", "/x:/x"]);
        assert!(run.command.is_empty());
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock", "echo", "hi"]).run;
        t[1].apply_run(&mut run);
        assert!(run.vm.kernel.stock);
        assert_eq!(
            run.command,
            ["echo", "hi"],
            "the command line's command wins"
        );
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock"]).run;
        t[1].apply_run(&mut run);
        assert_eq!(run.command, ["true"]);
        let mut run = Run::parse_from(["run-in-vm", "--target", "zeta"]).run;
        t[0].apply_run(&mut run);
        assert_eq!((run.vm.cpus, run.vm.mem), (2, 1024));
    }

    #[test]
    fn the_command_line_cannot_also_choose_what_the_target_does() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Run {
            #[command(flatten)]
            run: RunArgs,
        }
        for flag in [
            &["--cpus", "2"][..],
            &["--mem", "128"],
            &["--stock"],
            &["--kernel", "/k"],
        ] {
            let mut argv = vec!["run-in-vm", "--target", "x"];
            argv.extend_from_slice(flag);
            argv.push("true");
            assert!(Run::try_parse_from(&argv).is_err(), "{flag:?}");
        }
    }
}
