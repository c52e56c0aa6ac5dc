//! `host-runner test`: discovers the guest tests, runs each in its own microvm, reports.
//!
//! The list comes from the guest-tests binary itself (`guest-tests --list`, run on the
//! host: it is a static x86_64 program), one test per line, optionally followed by
//! `key=value` requirements (`cpus=2`, `mem=1024`, `timeout=900`, `kernel=stock`).
//! The runner does not know what a test checks: exit status 0 is a pass.

use crate::caps::HostCaps;
use crate::cli::{self, Artifacts, TestArgs};
use crate::launcher::{self, OutputSink};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use vm_wire::JobSpec;

/// Where the test binary lives in the guest image.
const GUEST_TESTS: &str = "/bin/guest-tests";

/// One discovered test and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    /// Name, passed back to `guest-tests run`.
    pub name: String,
    /// vCPUs it needs (at least).
    pub cpus: Option<u32>,
    /// Guest memory it needs in MiB (at least).
    pub mem: Option<u32>,
    /// Its own timeout in seconds.
    pub timeout: Option<u64>,
    /// Runs on the stock (unpatched) kernel.
    pub stock_kernel: bool,
}

/// Parses the `--list` output.
pub fn parse_list(text: &str) -> Result<Vec<TestCase>> {
    let mut tests = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let mut t = TestCase {
            name,
            cpus: None,
            mem: None,
            timeout: None,
            stock_kernel: false,
        };
        for w in words {
            let (k, v) = w
                .split_once('=')
                .with_context(|| format!("test list: bad attribute {w:?} in {line:?}"))?;
            let num = || {
                v.parse::<u64>()
                    .with_context(|| format!("test list: {w:?}"))
            };
            match k {
                "cpus" => t.cpus = Some(num()? as u32),
                "mem" => t.mem = Some(num()? as u32),
                "timeout" => t.timeout = Some(num()?),
                "kernel" if v == "stock" => t.stock_kernel = true,
                _ => bail!("test list: unknown attribute {w:?} in {line:?}"),
            }
        }
        tests.push(t);
    }
    Ok(tests)
}

/// Tests whose name contains any filter (all when there is none).
pub fn select<'a>(tests: &'a [TestCase], filters: &[String]) -> Vec<&'a TestCase> {
    tests
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
        .collect()
}

fn discover(bin_dir: &Path) -> Result<Vec<TestCase>> {
    let bin = bin_dir.join("guest-tests");
    let out = Command::new(&bin)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_list(&String::from_utf8_lossy(&out.stdout))
}

/// Collects a test's output for the report.
#[derive(Default)]
struct Captured {
    text: Vec<u8>,
}

impl OutputSink for Captured {
    fn stdout(&mut self, data: &[u8]) {
        self.text.extend_from_slice(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.text.extend_from_slice(data);
    }
    fn note(&mut self, text: &str) {
        self.text
            .extend_from_slice(format!("[runner] {text}\n").as_bytes());
    }
}

/// `test`: returns 0 when every selected test passed, 1 otherwise.
pub fn cmd_test(args: &TestArgs) -> Result<i32> {
    if args.jobs == 0 {
        return Err(crate::UsageError("--jobs must be at least 1".into()).into());
    }
    let art = cli::prepare(&args.vm.kernel)?;
    let tests = discover(&art.guest_bin_dir)?;
    let chosen = select(&tests, &args.filters);
    if args.list {
        for t in &chosen {
            println!("{}", t.name);
        }
        return Ok(0);
    }
    if chosen.is_empty() {
        return Err(
            crate::UsageError(format!("no test matches {:?}; see --list", args.filters)).into(),
        );
    }
    let stock = if chosen.iter().any(|t| t.stock_kernel) && args.vm.kernel.kernel.is_none() {
        let mut k = args.vm.kernel.clone();
        k.stock = true;
        Some(cli::resolve_kernel(&k)?)
    } else {
        None
    };
    let caps = HostCaps::probe();
    let queue = Mutex::new(chosen.iter());
    let tally = Mutex::new((0usize, 0usize));
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(chosen.len()) {
            s.spawn(|| {
                // A function call, so the queue's lock is released before the test runs
                // (a guard in a `while let` scrutinee would live through the body).
                while let Some(t) = next_test(&queue) {
                    let passed = run_one(t, args, &art, stock.as_deref(), &caps);
                    if let Ok(mut tally) = tally.lock() {
                        if passed {
                            tally.0 += 1;
                        } else {
                            tally.1 += 1;
                        }
                    }
                }
            });
        }
    });
    let (passed, failed) = tally.into_inner().unwrap_or((0, chosen.len()));
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed == chosen.len() {
        0
    } else {
        1
    })
}

fn next_test<'a, I: Iterator<Item = &'a &'a TestCase>>(queue: &Mutex<I>) -> Option<&'a TestCase> {
    let mut q = queue.lock().ok()?;
    q.next().copied()
}

fn run_one(
    t: &TestCase,
    args: &TestArgs,
    art: &Artifacts,
    stock: Option<&Path>,
    caps: &HostCaps,
) -> bool {
    let spec = JobSpec {
        argv: vec![
            GUEST_TESTS.into(),
            b"run".to_vec(),
            t.name.as_bytes().to_vec(),
        ],
        env: cli::base_env(),
        cwd: b"/".to_vec(),
        disks: Vec::new(),
    };
    let mut captured = Captured::default();
    let result = cli::vm_request(&args.vm, art, caps, spec).and_then(|mut req| {
        req.cpus = req.cpus.max(t.cpus.unwrap_or(1));
        req.mem_mib = req.mem_mib.max(t.mem.unwrap_or(0));
        if let Some(secs) = t.timeout {
            req.timeout = Duration::from_secs(secs);
        }
        if t.stock_kernel {
            if let Some(k) = stock {
                req.kernel = k.to_path_buf();
            }
        }
        launcher::run_vm(&req, caps, &mut captured, None)
    });
    let (passed, line, console) = match result {
        Ok(report) => {
            let secs = report.total_time.as_secs_f64();
            let passed = report.outcome == launcher::Outcome::Finished(vm_wire::JobEnd::Exited(0));
            let verdict = if passed {
                format!("PASS {}", t.name)
            } else {
                format!("FAIL {}: {};", t.name, report.outcome.describe())
            };
            let console = (!report.outcome.vm_ok()).then(|| {
                format!(
                    "    console log: {}\n{}",
                    report.console_log.display(),
                    indent(&report.console_tail(15))
                )
            });
            (passed, format!("{verdict} ({secs:.2}s)"), console)
        }
        Err(e) => (
            false,
            format!("FAIL {} (runner error: {e:#})", t.name),
            None,
        ),
    };
    // One lock for the whole block so parallel tests do not interleave their reports.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    use std::io::Write;
    let _ = writeln!(out, "{line}");
    if !passed {
        let _ = write!(out, "{}", indent(&String::from_utf8_lossy(&captured.text)));
        if let Some(c) = console {
            let _ = writeln!(out, "{c}");
        }
    }
    let _ = out.flush();
    passed
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_carry_requirements() {
        let tests = parse_list("vm_mounts\ngetdents_concurrent cpus=2 mem=1024 timeout=900\n\nstock_probe kernel=stock\n").unwrap();
        assert_eq!(tests.len(), 3);
        assert_eq!(tests[0].name, "vm_mounts");
        assert_eq!(tests[0].cpus, None);
        assert_eq!(tests[1].cpus, Some(2));
        assert_eq!(tests[1].mem, Some(1024));
        assert_eq!(tests[1].timeout, Some(900));
        assert!(tests[2].stock_kernel);
    }

    #[test]
    fn bad_list_attributes_are_errors() {
        assert!(parse_list("t cpus=x\n").is_err());
        assert!(parse_list("t colour=blue\n").is_err());
        assert!(parse_list("t novalue\n").is_err());
    }

    #[test]
    fn filters_match_substrings() {
        let tests = parse_list("vm_mounts\nvm_uring\ngetdents_basic\n").unwrap();
        let names = |f: &[&str]| {
            let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            select(&tests, &f)
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&[]).len(), 3);
        assert_eq!(names(&["vm_"]), ["vm_mounts", "vm_uring"]);
        assert_eq!(names(&["basic", "mounts"]), ["vm_mounts", "getdents_basic"]);
    }
}
