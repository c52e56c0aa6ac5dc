//! `host-runner test`: discovers the guest tests, runs each in its own microvm, reports.
//!
//! The list comes from the guest-tests binary itself (`guest-tests --list`, run on the
//! host: it is a static x86_64 program), one test per line, optionally followed by
//! `key=value` requirements (`cpus=2`, `mem=1024`, `timeout=900`, `kernel=stock`,
//! `scratch=ext4,^dir_index:/mnt/nodx`, repeatable: a fresh writable filesystem).
//! The runner does not know what a test checks: exit status 0 is a pass.

use crate::args::{KernelArgs, TestArgs};
use crate::caps::HostCaps;
use crate::image;
use crate::launcher::{self, OutputSink};
use crate::results::{self, Status, TestRecord};
use crate::setup::{self, Artifacts};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
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
    /// Fresh scratch filesystems the test mounts (see [`crate::scratch`]).
    pub scratch: Vec<crate::scratch::ScratchSpec>,
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
            scratch: Vec::new(),
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
                "scratch" => t
                    .scratch
                    .push(crate::scratch::parse(v).map_err(|e| anyhow::anyhow!("test list: {e}"))?),
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
    let args = &TestArgs {
        vm: setup::resolve_target_vm(&args.vm)?,
        ..args.clone()
    };
    if args.jobs == 0 {
        return Err(crate::UsageError("--jobs must be at least 1".into()).into());
    }
    // The list comes from the guest binaries alone: listing, or finding that no test
    // matches, needs no kernel and no root image.
    let guest_bin_dir = image::build_guest_binaries()?;
    let tests = discover(&guest_bin_dir)?;
    let mut chosen = select(&tests, &args.filters);
    if let Some(shard) = args.shard {
        let names: Vec<&str> = chosen.iter().map(|t| t.name.as_str()).collect();
        let mine: std::collections::HashSet<&str> = shard.select(&names).into_iter().collect();
        chosen.retain(|t| mine.contains(t.name.as_str()));
    }
    if args.rerun_failed {
        let last = last_results_file(args)?;
        let failed = results::failed_in(&last)?;
        chosen.retain(|t| failed.contains(&t.name));
        if chosen.is_empty() {
            println!("nothing failed in {}; nothing to rerun", last.display());
            return Ok(0);
        }
    }
    if args.list {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for t in &chosen {
            if let Err(e) = writeln!(out, "{}", t.name) {
                // `test --list | head`: the reader has what it wanted.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(128 + libc::SIGPIPE);
                }
                return Err(e).context("writing the test list");
            }
        }
        return Ok(0);
    }
    if chosen.is_empty() {
        return Err(
            crate::UsageError(format!("no test matches {:?}; see --list", args.filters)).into(),
        );
    }
    let art = setup::prepare_with(&args.vm.kernel, guest_bin_dir)?;
    let stock = if chosen
        .iter()
        .any(|t| t.stock_kernel && skip_reason(t, &args.vm.kernel).is_none())
    {
        let mut k = args.vm.kernel.clone();
        k.stock = true;
        // Those tests check that the op is absent; a debug build of the stock kernel
        // would cost a full build and check nothing of the series.
        k.debug_kernel = false;
        Some(setup::resolve_kernel(&k)?)
    } else {
        None
    };
    let caps = HostCaps::probe();
    let interrupts = Interrupts::install()?;
    let queue = Mutex::new(chosen.iter());
    let tally = Mutex::new(Tally::default());
    let records = Mutex::new(Vec::new());
    let suite_started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(chosen.len()) {
            s.spawn(|| {
                // A function call, so the queue's lock is released before the test runs
                // (a guard in a `while let` scrutinee would live through the body).
                while let Some(t) = next_test(&queue, &interrupts) {
                    let record = match skip_reason(t, &args.vm.kernel) {
                        Some(why) => {
                            interrupts.say(&format!("SKIP {}: {why}\n", t.name));
                            TestRecord {
                                name: t.name.clone(),
                                status: Status::Skip,
                                seconds: 0.0,
                                message: why,
                                output: String::new(),
                                console_tail: None,
                            }
                        }
                        None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_one(t, args, &art, stock.as_deref(), &caps, &interrupts)
                        }))
                        .unwrap_or_else(|_| {
                            // A bug of the runner's, reported as this test's failure;
                            // the others still run and the summary still comes.
                            interrupts.say(&format!("FAIL {} (runner panicked)\n", t.name));
                            TestRecord {
                                name: t.name.clone(),
                                status: Status::Fail,
                                seconds: 0.0,
                                message: "the runner panicked".into(),
                                output: String::new(),
                                console_tail: None,
                            }
                        }),
                    };
                    if let Ok(mut tally) = tally.lock() {
                        tally.add(record.status);
                    }
                    if let Ok(mut records) = records.lock() {
                        records.push(record);
                    }
                }
            });
        }
    });
    // Panics are caught per test, so the tally is never poisoned; should it be, it
    // counts as nothing passed.
    let mut tally = tally.into_inner().unwrap_or_default();
    let stopped_by = interrupts.stopped_by();
    if stopped_by.is_some() {
        // Stopped ones are counted already; the rest never started.
        tally.interrupted += chosen.len().saturating_sub(tally.counted());
    }
    interrupts.say(&format!("{}\n", tally.summary()));
    let mut records = records.into_inner().unwrap_or_default();
    // In the suite's order, whatever order parallel VMs finished in.
    records.sort_by_key(|r| chosen.iter().position(|t| t.name == r.name));
    write_results(args, &records, &tally.summary(), suite_started.elapsed())?;
    Ok(match stopped_by {
        Some(sig) => 128 + sig,
        None if tally.all_good(chosen.len()) => 0,
        None => 1,
    })
}

/// Ctrl-C (SIGINT), SIGTERM or SIGHUP stop the suite: the running tests' VMs are
/// ended, no further test starts, and the summary still comes (the temp dirs of the
/// VMs are cleaned up as after any run); the status is 128 + the signal. A second
/// signal exits at once.
struct Interrupts {
    /// The first stop signal, 0 before one came.
    stopped_by: Arc<AtomicI32>,
    /// One per running test, for the VM launcher.
    running: Arc<Mutex<Vec<Sender<i32>>>>,
}

impl Interrupts {
    fn install() -> Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let stopped_by = Arc::new(AtomicI32::new(0));
        let running: Arc<Mutex<Vec<Sender<i32>>>> = Default::default();
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("installing signal handlers")?;
        let this = Interrupts {
            stopped_by,
            running,
        };
        let handler = Interrupts {
            stopped_by: this.stopped_by.clone(),
            running: this.running.clone(),
        };
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if !handler.stop(sig) {
                    // A second one: the user wants out now, whatever still runs (a
                    // build or a cache lock the VMs' ending does not reach).
                    std::process::exit(128 + sig);
                }
            }
        });
        Ok(this)
    }

    /// Stops the suite as signal `sig` would; false if it was already stopping.
    fn stop(&self, sig: i32) -> bool {
        if self
            .stopped_by
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if let Ok(senders) = self.running.lock() {
            for tx in senders.iter() {
                let _ = tx.send(sig);
            }
        }
        true
    }

    /// Writes report lines to stdout. When its reader has gone (`host-runner test |
    /// head`), the suite stops as a SIGPIPE would stop a C program, with status 141,
    /// instead of panicking in `println!` or running on unread.
    fn say(&self, text: &str) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.stop(libc::SIGPIPE);
            }
        }
    }

    fn stopped_by(&self) -> Option<i32> {
        match self.stopped_by.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// A receiver for one test's VM; already fed if the suite is stopping.
    fn subscribe(&self) -> Receiver<i32> {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut running) = self.running.lock() {
            if let Some(sig) = self.stopped_by() {
                let _ = tx.send(sig);
            }
            running.push(tx);
        }
        rx
    }
}

/// The results kept for `--rerun-failed` when no `--json` file is named.
fn cached_results() -> Result<std::path::PathBuf> {
    Ok(crate::cache::cache_dir("results")?.join("last-test-run.json"))
}

/// The results file `--rerun-failed` reads.
fn last_results_file(args: &TestArgs) -> Result<std::path::PathBuf> {
    match &args.json {
        Some(file) if file.exists() => Ok(file.clone()),
        _ => {
            let cached = cached_results()?;
            if !cached.exists() {
                return Err(crate::UsageError(
                    "--rerun-failed: no earlier run has left results (run the tests first)".into(),
                )
                .into());
            }
            Ok(cached)
        }
    }
}

/// Writes the JSON results (always to the cache, and to --json) and the JUnit XML.
fn write_results(
    args: &TestArgs,
    records: &[TestRecord],
    summary: &str,
    took: std::time::Duration,
) -> Result<()> {
    let secs = took.as_secs_f64();
    let json = results::to_json(records, summary, secs);
    let mut targets = vec![cached_results()?];
    targets.extend(args.json.clone());
    for file in targets {
        write_file(&file, json.as_bytes())?;
    }
    if let Some(file) = &args.junit {
        write_file(
            file,
            results::to_junit(records, "guest-tests", secs).as_bytes(),
        )?;
    }
    if let Some(dir) = &args.logs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for r in records {
            write_file(
                &dir.join(format!("{}.log", r.name)),
                results::log_text(r).as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// Writes `data` to `path` whole: a temp file beside it, renamed over it.
fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, data)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The counts of a run.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
    /// Stopped by a signal to the suite, or never started because of one.
    interrupted: usize,
}

impl Tally {
    fn add(&mut self, v: Status) {
        match v {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Skip => self.skipped += 1,
            Status::Stopped => self.interrupted += 1,
        }
    }

    /// The closing line.
    fn summary(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            line.push_str(&format!(", {} skipped", self.skipped));
        }
        if self.interrupted > 0 {
            line.push_str(&format!(
                ", {} stopped or not run (interrupted)",
                self.interrupted
            ));
        }
        line
    }

    /// Tests with a verdict, stopped ones included.
    fn counted(&self) -> usize {
        self.passed + self.failed + self.skipped + self.interrupted
    }

    /// Every one of `chosen` tests passed or was skipped (a lost count is a failure).
    fn all_good(&self, chosen: usize) -> bool {
        self.failed == 0 && self.passed + self.skipped == chosen
    }
}

/// Why `t` is not run with the kernel `kernel` selects, if it is not. A test that needs
/// the stock kernel would otherwise run on the user's: a prebuilt image, or a tree that
/// is used as it is (no series is applied to it, so it cannot be built both ways).
fn skip_reason(t: &TestCase, kernel: &KernelArgs) -> Option<String> {
    if !t.stock_kernel {
        return None;
    }
    let given = if let Some(file) = &kernel.kernel {
        format!("--kernel {}", file.display())
    } else if let Some(dir) = &kernel.kernel_src {
        format!("--kernel-src {}", dir.display())
    } else {
        return None;
    };
    Some(format!(
        "needs the stock kernel, which {given} does not provide"
    ))
}

/// The VM settings of `t`: at least what it declares and at least what the user asked
/// for, the timeout included (a test's own timeout is what it needs, a larger
/// `--timeout` is the user's to give).
fn apply_requirements(req: &mut launcher::VmRequest, t: &TestCase) {
    req.cpus = req.cpus.max(t.cpus.unwrap_or(1));
    req.mem_mib = req.mem_mib.max(t.mem.unwrap_or(0));
    if let Some(secs) = t.timeout {
        req.timeout = req.timeout.max(Duration::from_secs(secs));
    }
}

fn next_test<'a, I: Iterator<Item = &'a &'a TestCase>>(
    queue: &Mutex<I>,
    interrupts: &Interrupts,
) -> Option<&'a TestCase> {
    if interrupts.stopped_by().is_some() {
        return None;
    }
    let mut q = queue.lock().ok()?;
    q.next().copied()
}

fn run_one(
    t: &TestCase,
    args: &TestArgs,
    art: &Artifacts,
    stock: Option<&Path>,
    caps: &HostCaps,
    interrupts: &Interrupts,
) -> TestRecord {
    let started = std::time::Instant::now();
    let spec = JobSpec {
        argv: vec![
            GUEST_TESTS.into(),
            b"run".to_vec(),
            t.name.as_bytes().to_vec(),
        ],
        env: setup::base_env(),
        cwd: b"/".to_vec(),
        disks: Vec::new(),
        stdin: false,
        ..JobSpec::default()
    };
    let mut spec = spec;
    let mut scratch_disks = Vec::new();
    let mut captured = Captured::default();
    // Kept until the VM has ended: dropping it deletes the images.
    let scratch_dir = setup::attach_scratch(&t.scratch, &mut spec, &mut scratch_disks);
    let result = scratch_dir
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .and_then(|_| setup::vm_request(&args.vm, art, caps, spec))
        .and_then(|mut req| {
            req.disks.extend(scratch_disks);
            apply_requirements(&mut req, t);
            // A test job is no interactive one that could wind down by itself: a stop
            // signal to the suite ends its VM at once.
            req.stop_signals_to_job = false;
            if t.stock_kernel {
                if let Some(k) = stock {
                    req.kernel = k.to_path_buf();
                }
            }
            launcher::run_vm(&req, caps, &mut captured, Some(&interrupts.subscribe()))
        });
    if let Ok(report) = &result {
        if let launcher::Outcome::Interrupted(sig) = report.outcome {
            // The user stopped the suite: not a verdict on the test.
            interrupts.say(&format!("STOPPED {} (signal {sig})\n", t.name));
            return TestRecord {
                name: t.name.clone(),
                status: Status::Stopped,
                seconds: started.elapsed().as_secs_f64(),
                message: format!("stopped by signal {sig}"),
                output: String::from_utf8_lossy(&captured.text).into_owned(),
                console_tail: None,
            };
        }
    }
    let (passed, line, message, console, tail) = match result {
        Ok(report) => {
            let secs = report.total_time.as_secs_f64();
            let passed = report.outcome == launcher::Outcome::Finished(vm_wire::JobEnd::Exited(0));
            let message = if passed {
                String::new()
            } else {
                report.outcome.describe()
            };
            let verdict = if passed {
                format!("PASS {}", t.name)
            } else {
                format!("FAIL {}: {message};", t.name)
            };
            let tail = (!report.outcome.vm_ok()).then(|| report.console_tail(15));
            let console = tail.as_ref().map(|tail| {
                format!(
                    "    console log: {}\n{}",
                    report.console_log.display(),
                    indent(tail)
                )
            });
            (
                passed,
                format!("{verdict} ({secs:.2}s)"),
                message,
                console,
                tail,
            )
        }
        Err(e) => (
            false,
            format!("FAIL {} (runner error: {e:#})", t.name),
            format!("runner error: {e:#}"),
            None,
            None,
        ),
    };
    let output = String::from_utf8_lossy(&captured.text).into_owned();
    // One write for the whole block so parallel tests do not interleave their reports.
    let mut block = format!("{line}\n");
    if !passed {
        block.push_str(&indent(&output));
        if let Some(c) = console {
            block.push_str(&c);
            block.push('\n');
        }
    }
    interrupts.say(&block);
    TestRecord {
        name: t.name.clone(),
        status: if passed { Status::Pass } else { Status::Fail },
        seconds: started.elapsed().as_secs_f64(),
        message,
        output,
        console_tail: tail,
    }
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
        assert!(parse_list("t scratch=xfs:/mnt\n").is_err());
    }

    #[test]
    fn scratch_disks_are_listed_in_order() {
        let tests =
            parse_list("t scratch=ext4:/mnt/ext4 cpus=2 scratch=ext4,^dir_index:/mnt/nodx\n")
                .unwrap();
        let targets: Vec<_> = tests[0].scratch.iter().map(|s| s.target.clone()).collect();
        assert_eq!(targets, [Path::new("/mnt/ext4"), Path::new("/mnt/nodx")]);
        assert_eq!(tests[0].scratch[1].features, ["^dir_index"]);
    }

    #[test]
    fn stock_kernel_tests_are_skipped_with_a_kernel_of_the_users() {
        let tests = parse_list("plain\nstock_probe kernel=stock\n").unwrap();
        let (plain, stock) = (&tests[0], &tests[1]);
        let default = KernelArgs::default();
        assert_eq!(skip_reason(stock, &default), None);
        let patched_only = KernelArgs {
            stock: true,
            ..KernelArgs::default()
        };
        assert_eq!(skip_reason(stock, &patched_only), None);
        let file = KernelArgs {
            kernel: Some("/k/bzImage".into()),
            ..KernelArgs::default()
        };
        let tree = KernelArgs {
            kernel_src: Some("/src/linux".into()),
            ..KernelArgs::default()
        };
        let why = skip_reason(stock, &file).expect("skipped with --kernel");
        assert!(why.contains("--kernel /k/bzImage"), "{why}");
        let why = skip_reason(stock, &tree).expect("skipped with --kernel-src");
        assert!(why.contains("--kernel-src /src/linux"), "{why}");
        assert_eq!(skip_reason(plain, &file), None);
        assert_eq!(skip_reason(plain, &tree), None);
    }

    #[test]
    fn requirements_and_user_settings_combine_upwards() {
        let mut req = launcher::VmRequest {
            spec: JobSpec::default(),
            timeout: Duration::from_secs(600),
            accel: crate::caps::Accel::Tcg,
            mem_mib: 512,
            cpus: 1,
            kernel: "/k".into(),
            root_image: "/r".into(),
            disks: Vec::new(),
            shares: Vec::new(),
            channel: launcher::ChannelChoice::Auto,
            verbose_kernel: false,
            kernel_args: Vec::new(),
            stop_signals_to_job: false,
        };
        let tests = parse_list("big cpus=2 mem=1024 timeout=900\nplain\n").unwrap();
        let mut big = req.clone();
        apply_requirements(&mut big, &tests[0]);
        assert_eq!((big.cpus, big.mem_mib), (2, 1024));
        assert_eq!(big.timeout, Duration::from_secs(900));
        // A longer --timeout is kept even for a test with its own.
        req.timeout = Duration::from_secs(2000);
        req.cpus = 4;
        let mut big = req.clone();
        apply_requirements(&mut big, &tests[0]);
        assert_eq!(big.timeout, Duration::from_secs(2000));
        assert_eq!(big.cpus, 4);
        let mut plain = req.clone();
        apply_requirements(&mut plain, &tests[1]);
        assert_eq!(plain.timeout, Duration::from_secs(2000));
    }

    #[test]
    fn skips_do_not_fail_a_run_but_lost_counts_do() {
        let mut t = Tally::default();
        t.add(Status::Pass);
        t.add(Status::Skip);
        assert!(t.all_good(2));
        assert_eq!(t.summary(), "1 passed, 0 failed, 1 skipped");
        assert!(!t.all_good(3), "a test never counted");
        t.add(Status::Fail);
        assert!(!t.all_good(3));
        let mut clean = Tally::default();
        clean.add(Status::Pass);
        assert_eq!(clean.summary(), "1 passed, 0 failed");
        clean.interrupted = 4;
        assert_eq!(
            clean.summary(),
            "1 passed, 0 failed, 4 stopped or not run (interrupted)"
        );
        assert!(!clean.all_good(5));
        clean.add(Status::Stopped);
        assert_eq!(clean.counted(), 6);
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
