//! `host-runner soak`: many real runs, serial and parallel, and every fault the runner
//! claims to name, each checked from the outside as a user would see it.
//!
//! Every case is a `host-runner run` child process (the same code path as `run-in-vm`).
//! Its output is checksummed on both sides (the guest prints the SHA-256 of what it
//! sends on stderr, the soak hashes what arrived on stdout), its exit status and the
//! verdict line on stderr are compared with the documented ones, and every process the
//! runner started (QEMU, the vsock backend) must be gone soon after the runner is,
//! including when the runner itself was SIGKILLed. At the end no per-VM temp dir of any
//! runner of the soak may be left.

use crate::args::SoakArgs;
use crate::child::{children_of, is_running};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the soak does to a run once its job has said `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Nothing,
    /// SIGKILL the runner's child whose command name starts with this.
    KillChild(&'static str),
    /// SIGKILL the runner itself.
    KillRunner,
    /// Stop reading the runner's stdout for this long, then read on.
    StallStdout(Duration),
}

/// What the run's stdout must be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stdout {
    /// Random bytes whose SHA-256 the guest printed as the first word of stderr.
    GuestChecksum,
    /// Exactly these bytes.
    Exact(Vec<u8>),
}

/// One run and what must come of it.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    script: String,
    extra_args: Vec<String>,
    timeout_secs: u32,
    action: Action,
    /// The exit status; `None` for a runner killed by a signal.
    code: Option<i32>,
    stdout: Stdout,
    /// Text the runner's stderr must contain.
    stderr_has: Option<&'static str>,
}

/// How one case went.
#[derive(Debug)]
struct Verdict {
    name: String,
    took: Duration,
    problems: Vec<String>,
}

/// A job that sends `bytes` random bytes and their checksum.
fn random_output_case(name: String, bytes: usize) -> Case {
    Case {
        name,
        // The file first: the checksum must be of exactly what is sent after it.
        script: format!(
            "head -c {bytes} /dev/urandom > /tmp/out && sha256sum < /tmp/out >&2 && cat /tmp/out"
        ),
        extra_args: Vec::new(),
        timeout_secs: 120,
        action: Action::Nothing,
        code: Some(0),
        stdout: Stdout::GuestChecksum,
        stderr_has: None,
    }
}

fn fault(
    name: &str,
    script: &str,
    action: Action,
    code: Option<i32>,
    stderr_has: Option<&'static str>,
) -> Case {
    Case {
        name: name.into(),
        script: script.into(),
        extra_args: Vec::new(),
        timeout_secs: 120,
        action,
        code,
        stdout: Stdout::Exact(b"ready\n".to_vec()),
        stderr_has,
    }
}

/// The fault cases, each with its documented status and verdict.
fn fault_cases() -> Vec<Case> {
    let mut hang = fault(
        "guest hang past --timeout",
        "echo ready; while :; do :; done",
        Action::Nothing,
        Some(crate::launcher::EXIT_TIMEOUT),
        Some("TIMEOUT"),
    );
    hang.timeout_secs = 8;
    let mut init_panic = fault(
        "panic in guest init",
        "echo ready",
        Action::Nothing,
        Some(crate::launcher::EXIT_VM_FAILED),
        Some("CRASH: guest init panicked"),
    );
    init_panic.extra_args = vec!["--kernel-arg".into(), "vmjob.fault=panic-after-job".into()];
    let mut stalled = random_output_case("stdout not read for 3 s".into(), 4 << 20);
    stalled.action = Action::StallStdout(Duration::from_secs(3));
    vec![
        fault(
            "guest kernel panic",
            "echo ready; echo c > /proc/sysrq-trigger",
            Action::Nothing,
            Some(crate::launcher::EXIT_VM_FAILED),
            Some("CRASH: guest kernel panic"),
        ),
        hang,
        init_panic,
        fault(
            "QEMU killed",
            "echo ready; sleep 100",
            Action::KillChild("qemu-system"),
            Some(crate::launcher::EXIT_VM_FAILED),
            Some("QEMU was killed by SIGKILL"),
        ),
        fault(
            "vsock backend killed",
            "echo ready; sleep 100",
            Action::KillChild("vhost-device-vs"),
            Some(crate::launcher::EXIT_VM_FAILED),
            Some("vsock backend vhost-device-vsock exited"),
        ),
        fault(
            "runner SIGKILLed",
            "echo ready; sleep 100",
            Action::KillRunner,
            None,
            None,
        ),
        fault(
            "guest /tmp full",
            "echo ready; dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; \
             test -s /tmp/fill && ! dd if=/dev/zero of=/tmp/more bs=1M count=1 2>/dev/null && exit 7",
            Action::Nothing,
            Some(7),
            None,
        ),
        fault(
            "job killed by real-time signal 34",
            "echo ready; kill -34 $$",
            Action::Nothing,
            Some(128 + 34),
            None,
        ),
        stalled,
    ]
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs one case and checks everything about it; `runners` collects the runner pids.
fn run_case(case: &Case, runners: &std::sync::Mutex<Vec<u32>>) -> Result<Verdict> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("finding host-runner itself")?;
    let mut child = Command::new(exe)
        .arg("run")
        .args(["--no-src", "--timeout", &case.timeout_secs.to_string()])
        .args(&case.extra_args)
        .args(["sh", "-c", &case.script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting host-runner run")?;
    let pid = child.id();
    if let Ok(mut r) = runners.lock() {
        r.push(pid);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let stall = match case.action {
        Action::StallStdout(d) => Some(d),
        _ => None,
    };
    let ready_out = ready.clone();
    let out_thread = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stalled = false;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            ready_out.store(true, Ordering::Relaxed);
            if let (Some(d), false) = (stall, stalled) {
                stalled = true;
                std::thread::sleep(d);
            }
        }
        got
    });
    let err_thread = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = stderr.read_to_end(&mut got);
        got
    });

    // Watch the runner's children while it runs, and act once the job is up.
    let mut seen: BTreeMap<i32, String> = BTreeMap::new();
    let mut acted = false;
    let status = loop {
        for (p, name) in children_of(pid) {
            seen.insert(p, name);
        }
        if !acted && ready.load(Ordering::Relaxed) {
            acted = true;
            match case.action {
                Action::KillChild(prefix) => {
                    // Live children only: the runner's short-lived probes (`qemu -version`)
                    // share the names.
                    let live = children_of(pid);
                    if let Some((p, _)) = live
                        .iter()
                        .find(|(p, n)| n.starts_with(prefix) && is_running(*p))
                    {
                        sigkill(*p);
                    } else if prefix.starts_with("vhost") {
                        // Kernel vhost-vsock or virtio-serial: no backend to kill.
                        let _ = child.kill();
                        let _ = child.wait();
                        return Ok(Verdict {
                            name: format!("{} (skipped: no vsock backend)", case.name),
                            took: started.elapsed(),
                            problems: Vec::new(),
                        });
                    }
                }
                Action::KillRunner => sigkill(pid as i32),
                Action::Nothing | Action::StallStdout(_) => {}
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(u64::from(case.timeout_secs) + 60) {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    let err_text = String::from_utf8_lossy(&err);

    let mut problems = Vec::new();
    if status.code() != case.code {
        problems.push(format!(
            "status {status}, expected {:?}; stderr: {}",
            case.code,
            err_text.trim()
        ));
    }
    match &case.stdout {
        Stdout::Exact(want) if case.action != Action::KillRunner && &out != want => {
            problems.push(format!(
                "stdout {:?}, expected {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(want)
            ));
        }
        Stdout::Exact(_) => {}
        Stdout::GuestChecksum => {
            let arrived = hex(&Sha256::digest(&out));
            let sent = err_text.split_whitespace().next().unwrap_or("");
            if arrived != sent {
                problems.push(format!(
                    "{} bytes arrived with SHA-256 {arrived}, the guest sent {sent:?}",
                    out.len()
                ));
            }
        }
    }
    if let Some(want) = case.stderr_has {
        if !err_text.contains(want) {
            problems.push(format!("stderr lacks {want:?}: {}", err_text.trim()));
        }
    }
    if !seen.values().any(|n| n.starts_with("qemu-system")) {
        problems
            .push("QEMU was never seen under the runner: the process check proved nothing".into());
    }
    // Everything the runner started must go with it (a parent-death signal for a
    // SIGKILLed runner), within a moment.
    let until = Instant::now() + Duration::from_secs(3);
    while seen.keys().any(|&p| is_running(p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (p, name) in &seen {
        if is_running(*p) {
            problems.push(format!("{name} ({p}) outlived the runner"));
            sigkill(*p);
        }
    }
    Ok(Verdict {
        name: case.name.clone(),
        took,
        problems,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small deterministic generator: sizes vary from run to run of the soak only through
/// the seed, so a failing size can be replayed.
struct Sizes(u64);

impl Sizes {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (max as u64 + 1)) as usize
    }
}

/// Per-VM temp dirs of the given runners still in the temp dir.
fn leftover_vm_dirs(runners: &[u32]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            runners
                .iter()
                .any(|pid| name.starts_with(&format!("microvm-{pid}-")))
        })
        .collect()
}

fn print_verdict(v: &Verdict) {
    let state = if v.problems.is_empty() {
        "ok  "
    } else {
        "FAIL"
    };
    println!("{state} {:<40} {:>6.1}s", v.name, v.took.as_secs_f64());
    for p in &v.problems {
        println!("       {p}");
    }
}

/// Runs the soak; exit status 0 when every case held, 1 otherwise.
pub fn cmd_soak(args: &SoakArgs) -> Result<i32> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!(
        "soak: {} serial, {} parallel, faults {} (sizes seed {seed})",
        args.serial,
        args.parallel,
        if args.no_faults { "off" } else { "on" }
    );
    let mut sizes = Sizes(seed);
    let runners = std::sync::Mutex::new(Vec::new());
    let mut verdicts = Vec::new();
    let mut bytes_checked = 0usize;

    // 1. Serial jobs with random output.
    let serial_start = Instant::now();
    for i in 0..args.serial {
        let n = sizes.next(args.max_output);
        bytes_checked += n;
        let v = run_case(
            &random_output_case(format!("serial {i}: {n} random bytes"), n),
            &runners,
        )?;
        if !v.problems.is_empty() {
            print_verdict(&v);
        }
        verdicts.push(v);
    }
    let serial_time = serial_start.elapsed();
    if args.serial > 0 {
        println!(
            "serial: {} jobs in {:.1}s ({:.2}s a job)",
            args.serial,
            serial_time.as_secs_f64(),
            serial_time.as_secs_f64() / args.serial as f64
        );
    }

    // 2. Parallel jobs, one VM each, all at once.
    let parallel_start = Instant::now();
    let cases: Vec<Case> = (0..args.parallel)
        .map(|i| {
            let n = sizes.next(args.max_output);
            bytes_checked += n;
            random_output_case(format!("parallel {i}: {n} random bytes"), n)
        })
        .collect();
    let results: Vec<Result<Verdict>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(|| run_case(c, &runners)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a soak thread panicked")))
            })
            .collect()
    });
    for r in results {
        let v = r?;
        if !v.problems.is_empty() {
            print_verdict(&v);
        }
        verdicts.push(v);
    }
    if args.parallel > 0 {
        println!(
            "parallel: {} VMs at once in {:.1}s",
            args.parallel,
            parallel_start.elapsed().as_secs_f64()
        );
    }

    // 3. Faults, one at a time, each named.
    if !args.no_faults {
        for case in fault_cases() {
            let v = run_case(&case, &runners)?;
            print_verdict(&v);
            verdicts.push(v);
        }
        // A clean run after the SIGKILLed runner: it removes that runner's temp dir.
        let v = run_case(
            &random_output_case("after the faults".into(), 1000),
            &runners,
        )?;
        print_verdict(&v);
        verdicts.push(v);
    }

    let runner_pids = runners.lock().map(|r| r.clone()).unwrap_or_default();
    let left = leftover_vm_dirs(&runner_pids);
    let failed = verdicts.iter().filter(|v| !v.problems.is_empty()).count();
    println!(
        "soak: {} runs, {failed} failed, {} MiB of random output checksummed, {} per-VM temp dirs left",
        verdicts.len(),
        bytes_checked >> 20,
        left.len()
    );
    for d in &left {
        println!(
            "       left behind: {}",
            std::env::temp_dir().join(d).display()
        );
    }
    Ok(if failed == 0 && left.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_case_names_its_documented_status() {
        let cases = fault_cases();
        let code = |name: &str| cases.iter().find(|c| c.name.contains(name)).unwrap().code;
        assert_eq!(code("kernel panic"), Some(125));
        assert_eq!(code("hang"), Some(124));
        assert_eq!(code("real-time signal 34"), Some(162));
        assert_eq!(code("runner SIGKILLed"), None);
        // Every VM failure must also be named on stderr, not only by its status.
        assert!(cases
            .iter()
            .filter(|c| matches!(c.code, Some(124 | 125)))
            .all(|c| c.stderr_has.is_some()));
    }

    #[test]
    fn sizes_stay_within_the_maximum_and_vary() {
        let mut s = Sizes(12345);
        let drawn: Vec<usize> = (0..100).map(|_| s.next(1000)).collect();
        assert!(drawn.iter().all(|&n| n <= 1000));
        assert!(drawn.windows(2).any(|w| w[0] != w[1]));
    }
}
