//! Command-line parsing and the commands themselves.

use crate::caps::{AccelChoice, HostCaps};
use crate::launcher::{self, ChannelChoice, OutputSink, VmRequest};
use crate::targets::{self, KernelChoice, Target};
use crate::vmplan::DiskAttach;
use crate::{image, kernel, scratch, share, UsageError};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm_wire::{DiskMount, JobSpec};

/// Where the guest parts come from, for `--help`: the binaries work from any directory
/// (installed with `cargo install --path host-runner`), building what the guest needs from
/// the checkout they were built from.
pub const WHERE_PARTS_COME_FROM: &str = concat!(
    "Works from any directory. The guest kernel (Linux 6.12 with kernel/patches), PID 1 and the guest tools are built from the checkout this binary was built from (",
    env!("CARGO_MANIFEST_DIR"),
    "/..) and cached in $XDG_CACHE_HOME/uring-getdents (default ~/.cache/uring-getdents); install with `cargo install --path host-runner` from that checkout."
);

/// Builds the guest kernel and image and runs jobs and tests in QEMU microvms.
#[derive(Parser, Debug)]
#[command(name = "host-runner", version, after_help = WHERE_PARTS_COME_FROM)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build (or reuse) the guest kernel and print its path.
    Kernel(KernelCmdArgs),
    /// Build (or reuse) the root image and print its path.
    Image(ImageArgs),
    /// Run one command in a fresh microvm (same as `run-in-vm`).
    Run(RunArgs),
    /// Run the guest tests, one microvm each.
    Test(TestArgs),
    /// Print what this host offers (KVM, vhost-vsock, the vsock daemon).
    Caps,
    /// Benchmark traverse against du -bs and peers, warm and cold, host and microvm.
    Bench(crate::bench::BenchArgs),
    /// Many real runs, serial and parallel, and every named fault, checked from outside.
    Soak(crate::soak::SoakArgs),
    /// Every target of the targets file (vm-targets.toml) in turn, a summary line each.
    Targets(TargetsArgs),
}

/// Where the kernel comes from.
#[derive(Args, Debug, Clone, Default)]
pub struct KernelArgs {
    /// Use this prebuilt kernel (vmlinux with PVH entry, or bzImage).
    #[arg(long, value_name = "FILE", conflicts_with = "kernel_src")]
    pub kernel: Option<PathBuf>,
    /// Build from this kernel tree (used as is) instead of Debian's linux-source-6.12.
    #[arg(long, value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,
    /// Build without the patches in kernel/patches (the stock kernel).
    #[arg(long)]
    pub stock: bool,
    /// The debug variant (kernel/debug.config: lockdep, sleep-in-atomic checks, KASAN),
    /// to catch the series sleeping or touching memory where it must not. Slower.
    #[arg(long, conflicts_with = "kernel")]
    pub debug_kernel: bool,
}

/// `kernel`.
#[derive(Args, Debug, Clone)]
pub struct KernelCmdArgs {
    /// Kernel selection.
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Also review the patch series: checkpatch.pl on every patch and a fresh compile
    /// of the C files it touches, failing on any complaint or compiler warning.
    #[arg(long, conflicts_with_all = ["kernel", "kernel_src", "stock", "debug_kernel"])]
    pub check: bool,
}

/// `image`.
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// Also lay the root tree out in this (new or empty) directory, e.g. for `docker build`.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
}

/// Options of the VM.
#[derive(Args, Debug, Clone)]
pub struct VmArgs {
    /// Kernel selection.
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Wall-clock limit in seconds; the VM is killed and TIMEOUT reported after it.
    #[arg(long, default_value_t = 600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(64..))]
    pub mem: u32,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,
    /// Accelerator: KVM needs a /dev/kvm that can run a stock kernel.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Job channel.
    #[arg(long, value_enum, default_value_t = ChannelChoice::Auto)]
    pub channel: ChannelChoice,
    /// Keep the kernel's boot messages in the console log (slower under TCG).
    #[arg(long)]
    pub verbose_kernel: bool,
    /// Extra kernel command-line parameter, e.g. `profile=2` (repeatable).
    #[arg(long = "kernel-arg", value_name = "PARAM")]
    pub kernel_args: Vec<String>,
    /// Take the kernel, vCPUs, memory (and for `run` disks, shares, scratch filesystems
    /// and command) from this named target of the targets file.
    #[arg(long, value_name = "NAME",
          conflicts_with_all = ["kernel", "kernel_src", "stock", "debug_kernel", "cpus", "mem"])]
    pub target: Option<String>,
    /// The targets file (default: vm-targets.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
}

/// `run` / `run-in-vm`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// VM options.
    #[command(flatten)]
    pub vm: VmArgs,
    /// Pack host directory HOSTDIR into an ext2 image mounted read-only at GUESTDIR.
    #[arg(long = "disk", value_name = "HOSTDIR:GUESTDIR")]
    pub disks: Vec<String>,
    /// Attach a fresh, empty, writable filesystem at GUESTDIR (ext2, ext3 or ext4, with
    /// optional mke2fs features such as `^dir_index`); it is deleted with the VM.
    #[arg(long = "scratch", value_name = "TYPE[,FEATURE...]:GUESTDIR")]
    pub scratch: Vec<String>,
    /// Share host directory HOSTDIR live at GUESTDIR over virtio-9p, read-write unless
    /// `:ro`: the job runs what is there now, and what it writes is on the host.
    #[arg(long = "share", value_name = "HOSTDIR:GUESTDIR[:ro|rw]")]
    pub shares: Vec<String>,
    /// Do not attach the current directory at /src.
    #[arg(long)]
    pub no_src: bool,
    /// Attach disks with the host page cache bypassed (cache=none), for cold-cache runs.
    #[arg(long)]
    pub no_host_cache: bool,
    /// Extra environment variable for the job.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the job in the guest.
    #[arg(long, default_value = "/")]
    pub cwd: PathBuf,
    /// Print boot and total VM times on stderr after the job.
    #[arg(long)]
    pub timings: bool,
    /// Give the job /dev/null as standard input. Otherwise the runner's standard input
    /// is passed on to the job, unless it is a terminal (the guest has no terminal to
    /// give the job, and reading one from the background would stop the runner).
    #[arg(long, short = 'n')]
    pub no_stdin: bool,
    /// Run the job on a pseudo-terminal in the guest, with the runner's terminal in raw
    /// mode: an interactive shell or any full-screen program; keys such as Ctrl-C and
    /// Ctrl-Z go to the guest, the window size follows the host's.
    #[arg(long, short = 't', conflicts_with = "no_stdin")]
    pub tty: bool,
    /// The command and its arguments; without one, a shell on a terminal (`-t sh`)
    /// when standard input is a terminal.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// `test`.
#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// VM options.
    #[command(flatten)]
    pub vm: VmArgs,
    /// List the tests instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Number of VMs run at once.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    /// Write JUnit XML results here (one testcase per test, output and console tail).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write JSON results here (schema in host-runner/src/results.rs); every run also
    /// keeps its results in the cache for --rerun-failed.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write each test's log (output, verdict, console tail) to DIR/<test>.log.
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,
    /// Run only shard K of N (1-based): a split that is the same on every machine.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::results::Shard>,
    /// Run only the tests that failed or were stopped in the last run (its --json
    /// file when given and present, else the results the last run kept in the cache).
    #[arg(long)]
    pub rerun_failed: bool,
    /// Run only tests whose name contains one of these.
    pub filters: Vec<String>,
}

/// Kernel and root image, ready to boot.
pub struct Artifacts {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Root image.
    pub root_image: PathBuf,
    /// Directory of the static guest binaries.
    pub guest_bin_dir: PathBuf,
}

/// Builds or finds the kernel the arguments ask for.
pub fn resolve_kernel(args: &KernelArgs) -> Result<PathBuf> {
    if let Some(k) = &args.kernel {
        if !k.is_file() {
            return Err(UsageError(format!("--kernel {}: no such file", k.display())).into());
        }
        return Ok(k.clone());
    }
    let source = match &args.kernel_src {
        Some(dir) => {
            if !dir.join("Makefile").is_file() {
                return Err(UsageError(format!(
                    "--kernel-src {}: not a kernel tree (no Makefile)",
                    dir.display()
                ))
                .into());
            }
            kernel::KernelSource::Tree(dir.clone())
        }
        None => kernel::KernelSource::Tarball(kernel::DEBIAN_TARBALL.into()),
    };
    kernel::ensure_kernel(&kernel_request(source, args.stock, args.debug_kernel)?)
}

/// The build of `source`, with the project's series unless `stock`.
fn kernel_request(
    source: kernel::KernelSource,
    stock: bool,
    debug: bool,
) -> Result<kernel::KernelRequest> {
    let patches = if stock {
        Vec::new()
    } else {
        kernel::patch_series(&image::workspace_dir().join("kernel/patches"))?
    };
    Ok(kernel::KernelRequest {
        source,
        patches,
        fragment: if debug {
            kernel::ConfigFragment::microvm_debug()?
        } else {
            kernel::ConfigFragment::microvm()?
        },
        debug,
    })
}

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

/// Installs what is missing and builds or reuses the kernel and root image.
pub fn prepare(kernel_args: &KernelArgs) -> Result<Artifacts> {
    prepare_with(kernel_args, image::build_guest_binaries()?)
}

/// [`prepare`] around guest binaries already built into `guest_bin_dir`.
pub fn prepare_with(kernel_args: &KernelArgs, guest_bin_dir: PathBuf) -> Result<Artifacts> {
    crate::deps::ensure(crate::deps::VM)?;
    let kernel = resolve_kernel(kernel_args)?;
    let root_image = image::ensure_root_image(&image::root_image_inputs(&guest_bin_dir)?)?;
    Ok(Artifacts {
        kernel,
        root_image,
        guest_bin_dir,
    })
}

/// Parses `HOSTDIR:GUESTDIR`.
pub fn parse_disk(spec: &str) -> Result<(PathBuf, PathBuf)> {
    let (host, guest) = spec
        .rsplit_once(':')
        .ok_or_else(|| UsageError(format!("--disk {spec}: expected HOSTDIR:GUESTDIR")))?;
    if host.is_empty() || !guest.starts_with('/') {
        return Err(UsageError(format!(
            "--disk {spec}: expected HOSTDIR:GUESTDIR with an absolute GUESTDIR"
        ))
        .into());
    }
    if !Path::new(host).is_dir() {
        return Err(UsageError(format!("--disk {spec}: {host} is not a directory")).into());
    }
    Ok((PathBuf::from(host), PathBuf::from(guest)))
}

/// Parses `--scratch` specifications (usage errors name the bad one).
pub fn parse_scratch(specs: &[String]) -> Result<Vec<scratch::ScratchSpec>> {
    specs
        .iter()
        .map(|s| scratch::parse(s).map_err(|e| UsageError(format!("--{e}")).into()))
        .collect()
}

/// Makes the scratch filesystems of `specs` in a new temporary directory, adds their
/// mounts to `job` and their attachments to `disks`. The images live as long as the
/// returned directory, which the caller keeps until the VM has ended.
pub fn attach_scratch(
    specs: &[scratch::ScratchSpec],
    job: &mut JobSpec,
    disks: &mut Vec<DiskAttach>,
) -> Result<Option<tempfile::TempDir>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("uring-getdents-scratch.")
        .permissions(crate::cache::private_permissions())
        .tempdir()
        .context("temporary directory for scratch disks")?;
    for (i, s) in specs.iter().enumerate() {
        let serial = format!("scratch{i}");
        disks.push(DiskAttach {
            image: scratch::create(s, dir.path(), i)?,
            serial: serial.clone(),
            read_only: false,
            bypass_host_cache: false,
        });
        job.disks.push(DiskMount {
            serial,
            target: s.target.as_os_str().as_bytes().to_vec(),
            fstype: s.fstype.clone(),
            read_only: false,
        });
    }
    Ok(Some(dir))
}

/// The environment every job starts with.
pub fn base_env() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"PATH".to_vec(), b"/bin:/sbin:/usr/bin:/usr/sbin".to_vec()),
        (b"HOME".to_vec(), b"/root".to_vec()),
        (b"TERM".to_vec(), b"dumb".to_vec()),
    ]
}

/// Refuses a job the guest could not receive: its message must fit in one frame of at
/// most [`vm_wire::MAX_FRAME`] bytes, and the guest would otherwise refuse it only
/// after the VM has booted, as a setup failure of the VM. Only a user's command can be
/// that large; the test and bench jobs are a name and a few variables.
pub fn check_job_size(spec: &JobSpec) -> Result<()> {
    // The frame's length prefix is not part of its body.
    let body = vm_wire::HostMsg::Job(spec.clone()).encode().len() - 4;
    if body > vm_wire::MAX_FRAME {
        return Err(UsageError(format!(
            "the job is too large to send to the guest: its command, environment and \
             working directory take {body} bytes, the limit is {} bytes",
            vm_wire::MAX_FRAME
        ))
        .into());
    }
    Ok(())
}

/// A VM request from VM options, artifacts and a job.
pub fn vm_request(
    vm: &VmArgs,
    art: &Artifacts,
    caps: &HostCaps,
    spec: JobSpec,
) -> Result<VmRequest> {
    if vm.cpus == 0 || vm.mem < 64 || vm.timeout == 0 {
        return Err(
            UsageError("--cpus and --timeout must be positive, --mem at least 64".into()).into(),
        );
    }
    Ok(VmRequest {
        spec,
        timeout: Duration::from_secs(vm.timeout),
        accel: caps.accel(vm.accel),
        mem_mib: vm.mem,
        cpus: vm.cpus,
        kernel: art.kernel.clone(),
        root_image: art.root_image.clone(),
        disks: Vec::new(),
        shares: Vec::new(),
        channel: vm.channel,
        verbose_kernel: vm.verbose_kernel,
        kernel_args: vm.kernel_args.clone(),
        stop_signals_to_job: true,
    })
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
        tty: tty.then(|| crate::tty::window_size().unwrap_or(crate::tty::DEFAULT_SIZE)),
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

// Named targets (see `targets`): applying one to the options, and the matrix.

/// The VM options of this target in place of `vm`'s kernel, vCPUs and memory (the
/// command line cannot also set those: clap refuses them with `--target`).
pub fn apply_target_vm(target: &Target, vm: &mut VmArgs) {
    vm.kernel = match &target.kernel {
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
    if let Some(c) = target.cpus {
        vm.cpus = c;
    }
    if let Some(m) = target.mem {
        vm.mem = m;
    }
}

/// `run` with this target: its VM, its disks, shares and scratch filesystems
/// before the command line's, and its command unless the command line gives one.
pub fn apply_target_run(target: &Target, run: &mut RunArgs) {
    apply_target_vm(target, &mut run.vm);
    let before = |mine: &[String], given: &mut Vec<String>| {
        let mut all = mine.to_vec();
        all.append(given);
        *given = all;
    };
    before(&target.disks, &mut run.disks);
    before(&target.shares, &mut run.shares);
    before(&target.scratch, &mut run.scratch);
    if run.command.is_empty() {
        if let Some(c) = &target.command {
            run.command = c.iter().map(Into::into).collect();
        }
    }
}

/// The VM options with `--target` applied, if one was given.
pub fn resolve_target_vm(vm: &VmArgs) -> Result<VmArgs> {
    let mut vm = vm.clone();
    if let Some(name) = vm.target.clone() {
        let targets = targets::load(vm.targets.as_deref())?;
        apply_target_vm(targets::find(&targets, &name)?, &mut vm);
    }
    Ok(vm)
}

/// The run options with `--target` applied, if one was given.
pub fn resolve_target_run(run: &RunArgs) -> Result<RunArgs> {
    let mut run = run.clone();
    if let Some(name) = run.vm.target.clone() {
        let targets = targets::load(run.vm.targets.as_deref())?;
        apply_target_run(targets::find(&targets, &name)?, &mut run);
    }
    Ok(run)
}

/// `targets`: every target of the file (or those named) in turn.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetsArgs {
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
        let (code, detail) = run_target(t, &file, args.timeout)?;
        let line = targets::MatrixLine {
            name: t.name.clone(),
            passed: code == 0,
            detail,
            seconds: start.elapsed().as_secs_f64(),
        };
        lines.push(line);
        // A stop signal ends the matrix as it ends a run: 128+N, nothing more started.
        if code > 128 && code - 128 <= 64 && crate::launcher::is_stop_signal(code - 128) {
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
        Cmd::Bench(b) => crate::bench::cmd_bench(&b),
        Cmd::Soak(s) => crate::soak::cmd_soak(&s),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose encoded message body is exactly `body` bytes.
    fn job_of_size(body: usize) -> JobSpec {
        let mut spec = JobSpec {
            argv: vec![Vec::new()],
            ..JobSpec::default()
        };
        let empty = vm_wire::HostMsg::Job(spec.clone()).encode().len() - 4;
        spec.argv[0] = vec![b'a'; body - empty];
        spec
    }

    #[test]
    fn a_job_larger_than_a_frame_is_a_usage_error() {
        assert!(check_job_size(&job_of_size(vm_wire::MAX_FRAME)).is_ok());
        let err = check_job_size(&job_of_size(vm_wire::MAX_FRAME + 1)).unwrap_err();
        assert_eq!(crate::exit_code_for(&err), crate::EXIT_USAGE, "{err:#}");
        assert!(err.to_string().contains("too large"), "{err:#}");
        // The guest's decoder draws the line at the same place.
        let decodes = |body: usize| {
            let mut fb = vm_wire::FrameBuffer::new();
            fb.push(&vm_wire::HostMsg::Job(job_of_size(body)).encode());
            fb.next_frame().is_ok()
        };
        assert!(decodes(vm_wire::MAX_FRAME));
        assert!(!decodes(vm_wire::MAX_FRAME + 1));
    }

    #[test]
    fn bench_needs_at_least_one_timed_run_and_one_vm() {
        let parses = |args: &[&str]| {
            Cli::try_parse_from(["host-runner", "bench"].iter().chain(args)).map(|_| ())
        };
        assert!(parses(&["--warm-runs", "1", "--cold-runs", "1", "--vms", "1"]).is_ok());
        // hyperfine 1.15 given --runs 0 never ends.
        for bad in [["--warm-runs", "0"], ["--cold-runs", "0"], ["--vms", "0"]] {
            let err = parses(&bad).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    const TARGETS: &str = r#"
        [target.zeta]
        cpus = 2
        mem = 1024

        [target.stock]
        kernel = "stock"
        command = ["true"]

        [target.tree]
        kernel = { tree = "linux" }
        disks = ["data:/data", "/abs:/abs"]
    "#;

    #[test]
    fn a_target_sets_the_vm_and_adds_to_the_run() {
        use clap::Parser;
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            run: RunArgs,
        }
        let t = targets::parse(TARGETS, Path::new("/proj")).unwrap();
        let mut run = Run::parse_from(["run-in-vm", "--disk", "/x:/x", "--target", "tree"]).run;
        apply_target_run(&t[2], &mut run);
        assert_eq!(run.vm.kernel.kernel_src, Some(PathBuf::from("/proj/linux")));
        assert_eq!(run.disks, ["/proj/data:/data", "/abs:/abs", "/x:/x"]);
        assert!(run.command.is_empty());
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock", "echo", "hi"]).run;
        apply_target_run(&t[1], &mut run);
        assert!(run.vm.kernel.stock);
        assert_eq!(
            run.command,
            ["echo", "hi"],
            "the command line's command wins"
        );
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock"]).run;
        apply_target_run(&t[1], &mut run);
        assert_eq!(run.command, ["true"]);
        let mut run = Run::parse_from(["run-in-vm", "--target", "zeta"]).run;
        apply_target_run(&t[0], &mut run);
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
