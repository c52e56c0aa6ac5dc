//! The commands themselves: `dispatch` from parsed arguments ([`crate::args`]) to
//! each command, `run`, the `targets` matrix, and the exit status of each.

use crate::args::{Cli, Cmd, RunArgs, TargetsArgs};
use crate::caps::{AccelChoice, HostCaps};
use crate::launcher::{self, OutputSink};
use crate::setup::{
    attach_scratch, base_env, check_job_size, kernel_request, parse_disk, parse_scratch, prepare,
    resolve_kernel, resolve_target_run, vm_request,
};
use crate::vmplan::DiskAttach;
use crate::{image, kernel, share, targets, UsageError};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm_wire::{DiskMount, JobSpec};

/// `kernel --check`: builds the patched kernel, then reviews the series; exit status 1
/// with every complaint on stderr when it is not clean.
fn check_series() -> Result<i32> {
    let req = kernel_request(
        kernel::KernelSource::Tarball(kernel::DEBIAN_TARBALL.into()),
        false,
        false,
    )?;
    let report = kernel::check_series(&req)?;
    for complaint in report.checkpatch.iter().chain(&report.compiler) {
        eprintln!("{complaint}");
    }
    if report.is_clean() {
        eprintln!(
            "host-runner: {} patches checkpatch-clean, the files they touch compile without warnings",
            req.patches.len()
        );
        Ok(0)
    } else {
        eprintln!(
            "host-runner: the patch series needs work: {} checkpatch report(s), {} compiler complaint(s)",
            report.checkpatch.len(),
            report.compiler.len()
        );
        Ok(1)
    }
}

/// Job output to the runner's stdout and stderr through writer threads (see
/// [`crate::output`]): a reader that stops reading never blocks the session.
struct Terminal {
    prog: &'static str,
    out: crate::output::Terminal,
}

impl OutputSink for Terminal {
    fn stdout(&mut self, data: &[u8]) {
        self.out.stdout.push(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.out.stderr.push(data);
    }
    fn note(&mut self, text: &str) {
        self.out
            .stderr
            .push(format!("{}: {text}\n", self.prog).as_bytes());
    }
    fn wait_room(&mut self, max: Duration) -> bool {
        self.out.wait_room(max)
    }
}

/// Forwards the terminal's signals to the guest job through a channel; the sender is
/// returned too, for signals the runner raises itself.
fn forward_host_signals(
    window_changes: bool,
) -> Result<(std::sync::mpsc::Sender<i32>, std::sync::mpsc::Receiver<i32>)> {
    use signal_hook::consts::*;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut wanted = vec![SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
    if window_changes {
        // Becomes a resize of the job's terminal (see `launcher`), never a signal.
        wanted.push(SIGWINCH);
    }
    let mut signals =
        signal_hook::iterator::Signals::new(wanted).context("installing signal handlers")?;
    let own = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if tx.send(sig).is_err() {
                break;
            }
        }
    });
    Ok((own, rx))
}

/// `run`: one command in one VM; returns the exit status to mirror.
pub fn cmd_run(args: &RunArgs, prog: &'static str) -> Result<i32> {
    let args = &resolve_target_run(args)?;
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let (command, tty) =
        match (args.command.is_empty(), args.tty) {
            (false, tty) => (args.command.clone(), tty),
            (true, _) if stdin_is_terminal && !args.no_stdin => (vec![OsString::from("sh")], true),
            (true, _) => return Err(UsageError(
                "no command given (a shell is the default only when standard input is a terminal)"
                    .into(),
            )
            .into()),
        };
    // A `--disk` holds everything; the implicit /src skips what git ignores (build
    // outputs).
    let mut mounts = Vec::new();
    for spec in &args.disks {
        let (host, guest) = parse_disk(spec)?;
        mounts.push((host, guest, image::Snapshot::Everything));
    }
    if !args.no_src && !mounts.iter().any(|(_, g, _)| g == Path::new("/src")) {
        let cwd = std::env::current_dir().context("current directory")?;
        mounts.push((cwd, PathBuf::from("/src"), image::Snapshot::GitVisible));
    }
    let mut env = base_env();
    if tty {
        // Programs on the terminal draw for the user's terminal, not for a log.
        let term = std::env::var_os("TERM").unwrap_or_else(|| "vt100".into());
        env.retain(|(k, _)| k != b"TERM");
        env.push((b"TERM".to_vec(), term.as_bytes().to_vec()));
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--env {kv}: expected KEY=VALUE")))?;
        env.retain(|(ek, _)| ek != k.as_bytes());
        env.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    let shares = args
        .shares
        .iter()
        .map(|s| share::parse(s).map_err(|e| UsageError(format!("--{e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let (share_attachments, share_mounts) = share::attach(&shares);
    let serial = |i: usize| format!("disk{i}");
    let mut spec = JobSpec {
        argv: command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        cwd: args.cwd.as_os_str().as_bytes().to_vec(),
        disks: mounts
            .iter()
            .enumerate()
            .map(|(i, (_, guest, _))| DiskMount {
                serial: serial(i),
                target: guest.as_os_str().as_bytes().to_vec(),
                fstype: "ext2".into(),
                read_only: true,
            })
            .collect(),
        // A terminal is only read with -t: reading it from the background would stop
        // the runner, and a line-buffered terminal is no input for a pipe-fed job.
        stdin: tty || !args.no_stdin && !stdin_is_terminal,
        tty: tty.then(crate::tty::window_size),
        shares: share_mounts,
    };
    let scratch = parse_scratch(&args.scratch)?;
    let mut scratch_disks = Vec::new();
    // Kept until the VM has ended: dropping it deletes the images.
    let _scratch_dir = attach_scratch(&scratch, &mut spec, &mut scratch_disks)?;
    // Before the kernel, image and snapshots are built: the job is complete already.
    check_job_size(&spec)?;
    let art = prepare(&args.vm.kernel)?;
    let caps = HostCaps::probe();
    let mut disks = Vec::new();
    for (i, (host, guest, what)) in mounts.iter().enumerate() {
        disks.push(DiskAttach {
            // Names the role: the implicit /src is no --disk of the user's.
            image: image::ensure_dir_image(host, *what)
                .with_context(|| format!("attaching {} at {}", host.display(), guest.display()))?,
            serial: serial(i),
            read_only: true,
            bypass_host_cache: args.no_host_cache,
        });
    }
    disks.extend(scratch_disks);
    let mut req = vm_request(&args.vm, &art, &caps, spec)?;
    req.disks = disks;
    req.shares = share_attachments;
    let (raise, signals) = forward_host_signals(tty)?;
    // Told (once) that stdout's reader is gone, as a SIGPIPE for the run: Rust ignores
    // the signal itself, so a closed pipe is only an error here.
    let out = crate::output::Terminal::start(Box::new(move || {
        let _ = raise.send(libc::SIGPIPE);
    }))
    .context("starting the output writer threads")?;
    let mut term = Terminal { prog, out };
    let deadline = std::time::Instant::now() + req.timeout;
    // Raw only while the job has the terminal: the runner's own messages after it
    // (and any error) print on a terminal as the user left it.
    let raw = match tty {
        true => crate::tty::RawMode::enter().context("putting the terminal in raw mode")?,
        false => None,
    };
    let report = launcher::run_vm(&req, &caps, &mut term, Some(&signals));
    drop(raw);
    let report = report?;
    if report.outcome == launcher::Outcome::Interrupted(libc::SIGPIPE) {
        // Silent, like any writer a closed pipe ends.
        return Ok(report.outcome.exit_code());
    }
    let code = report_run(args, &report, &mut term);
    Ok(finish_output(
        &term,
        &report.outcome,
        code,
        deadline,
        &signals,
    ))
}

/// What is left of the job's output goes out before the runner exits: all of it after
/// a job that ended (until the run's deadline or a stop signal: a reader that never
/// reads again must not hold the runner forever), and only what goes within a moment
/// after a run that was cut short, which ends now.
fn finish_output(
    term: &Terminal,
    outcome: &launcher::Outcome,
    code: i32,
    deadline: std::time::Instant,
    signals: &std::sync::mpsc::Receiver<i32>,
) -> i32 {
    use std::time::Instant;
    let until = match outcome {
        launcher::Outcome::Finished(_) => deadline,
        _ => Instant::now() + Duration::from_millis(300),
    };
    loop {
        let step = Instant::now() + Duration::from_millis(50);
        if term.out.wait_written(step.min(until)) {
            return code;
        }
        if Instant::now() >= until {
            if matches!(outcome, launcher::Outcome::Finished(_)) {
                // Unseen, most likely, as stderr may be stuck too.
                term.out.stderr.push(
                    format!(
                        "{}: TIMEOUT: the job ended but its output was not taken before the deadline\n",
                        term.prog
                    )
                    .as_bytes(),
                );
                let _ = term
                    .out
                    .wait_written(Instant::now() + Duration::from_millis(100));
                return launcher::EXIT_TIMEOUT;
            }
            return code;
        }
        while let Ok(sig) = signals.try_recv() {
            if launcher::is_stop_signal(sig) {
                return 128 + sig;
            }
        }
    }
}

/// The runner's own lines after a run: timings, the verdict of a failed VM with its
/// console log, a spawn failure. Returns the exit status to mirror.
fn report_run(args: &RunArgs, report: &launcher::VmReport, term: &mut Terminal) -> i32 {
    if args.timings {
        let boot = report
            .boot_time
            .map_or("-".into(), |b| format!("{:.3}s", b.as_secs_f64()));
        term.note(&format!(
            "timings: QEMU start to guest hello {boot}, QEMU start to exit {:.3}s",
            report.total_time.as_secs_f64()
        ));
    }
    if !report.outcome.vm_ok() {
        term.note(&report.outcome.describe());
        term.note(&format!("console log: {}", report.console_log.display()));
        let tail = report.console_tail(15);
        if !tail.trim().is_empty() {
            term.note(&format!("console tail:\n{tail}"));
        }
    } else if let launcher::Outcome::Finished(vm_wire::JobEnd::SpawnFailed { message, .. }) =
        &report.outcome
    {
        term.note(message);
    }
    report.outcome.exit_code()
}

// Named targets: the matrix.

/// Runs the matrix; the exit status is 0 when every target passed, 1 otherwise.
pub fn cmd_targets(args: &TargetsArgs) -> Result<i32> {
    let file = args
        .targets
        .clone()
        .unwrap_or_else(|| PathBuf::from(targets::DEFAULT_FILE));
    let all = targets::load(Some(&file))?;
    let chosen: Vec<&targets::Target> = if args.names.is_empty() {
        all.iter().collect()
    } else {
        args.names
            .iter()
            .map(|n| targets::find(&all, n))
            .collect::<Result<_>>()?
    };
    if chosen.is_empty() {
        return Err(UsageError(format!("{}: no targets", file.display())).into());
    }
    if args.list {
        for t in &chosen {
            println!("{}", targets::describe(t));
        }
        return Ok(0);
    }
    let mut lines: Vec<targets::MatrixLine> = Vec::new();
    for t in &chosen {
        eprintln!("host-runner: == target {} ==", t.name);
        let start = std::time::Instant::now();
        // A target that cannot even start (its kernel tree fails to build, a disk of
        // it is missing) is that target's failure, not the end of the matrix.
        let (code, detail) = match run_target(t, &file, args.timeout) {
            Ok(ran) => ran,
            Err(e) => (crate::exit_code_for(&e), format!("error: {e:#}")),
        };
        let line = targets::MatrixLine {
            name: t.name.clone(),
            passed: code == 0,
            detail,
            seconds: start.elapsed().as_secs_f64(),
        };
        lines.push(line);
        // A stop signal ends the matrix as it ends a run: 128+N, nothing more started.
        if code > 128 && crate::launcher::is_stop_signal(code - 128) {
            print!("{}", targets::summary(&lines));
            return Ok(code);
        }
    }
    print!("{}", targets::summary(&lines));
    Ok(if lines.iter().all(|l| l.passed) { 0 } else { 1 })
}

/// Runs one target the way a user would: `run --target` for one with a command,
/// `test --target` for one without. Returns the exit status and what it means.
fn run_target(t: &targets::Target, file: &Path, timeout: u64) -> Result<(i32, String)> {
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
        let cli = Cli::try_parse_from(&argv)
            .map_err(|e| UsageError(format!("target {}: {e}", t.name)))?;
        let code = dispatch(cli)?;
        return Ok((code, format!("command: exit status {code}")));
    }
    let results = tempfile::NamedTempFile::new().context("a file for the target's results")?;
    let json = results.path().display().to_string();
    let mut argv = vec!["host-runner", "test", "--json", &json];
    argv.extend_from_slice(&common);
    argv.extend(t.tests.iter().map(String::as_str));
    let cli =
        Cli::try_parse_from(&argv).map_err(|e| UsageError(format!("target {}: {e}", t.name)))?;
    let code = dispatch(cli)?;
    let summary = std::fs::read_to_string(results.path())
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|doc| doc["summary"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("exit status {code}"));
    Ok((code, format!("guest tests: {summary}")))
}

/// Runs the parsed command line; returns the process exit status.
pub fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Cmd::Kernel(k) if k.check => check_series(),
        Cmd::Kernel(k) => {
            println!("{}", resolve_kernel(&k.kernel)?.display());
            Ok(0)
        }
        Cmd::Image(args) => {
            crate::deps::ensure(crate::deps::VM)?;
            let bins = image::build_guest_binaries()?;
            let inputs = image::root_image_inputs(&bins)?;
            if let Some(dir) = &args.export {
                if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                    return Err(UsageError(format!("--export {}: not empty", dir.display())).into());
                }
                image::stage_root(dir, &inputs)?;
                eprintln!("host-runner: root tree laid out in {}", dir.display());
            }
            println!("{}", image::ensure_root_image(&inputs)?.display());
            Ok(0)
        }
        Cmd::Run(r) => cmd_run(&r, "host-runner"),
        Cmd::Test(t) => crate::testsuite::cmd_test(&t),
        Cmd::Soak(s) => crate::soak::cmd_soak(&s),
        // The benchmark is a part of the host-runner binary built on this library (its
        // `main` runs it before it gets here), not of the library.
        Cmd::Bench(_) => Err(anyhow::anyhow!(
            "`bench` runs in the host-runner binary, not through the library's dispatch"
        )),
        Cmd::Targets(m) => cmd_targets(&m),
        Cmd::Caps => {
            let caps = HostCaps::probe();
            println!("{caps:#?}");
            println!("accelerator (auto): {:?}", caps.accel(AccelChoice::Auto));
            Ok(0)
        }
    }
}

/// Entry point shared by both binaries: prints errors, maps them to exit statuses.
pub fn main_with(result: Result<i32>, prog: &str) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{prog}: error: {e:#}");
            std::process::exit(crate::exit_code_for(&e))
        }
    }
}
