//! The command line as values: every subcommand's options as clap parses them, and
//! nothing that acts on them (that is `cli` for the commands, `setup` for what they
//! share before a VM runs).

use crate::caps::AccelChoice;
use crate::launcher::ChannelChoice;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

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
    Bench(BenchArgs),
    /// Many real runs, serial and parallel, and every named fault, checked from outside.
    Soak(SoakArgs),
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

/// `targets`: every target of the file (or those named) in turn.
#[derive(Args, Debug, Clone)]
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

/// `bench` options.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Where results go (by default the committed results, which the README quotes).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Tree to walk (default: Debian's linux-source-6.12 unpacked into the cache).
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// Timed runs with a warm cache (at least 1: hyperfine 1.15 waits forever for 0).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub warm_runs: u32,
    /// Timed runs with caches dropped before each (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub cold_runs: u32,
    /// Only the host part.
    #[arg(long, conflicts_with = "vm_only")]
    pub host_only: bool,
    /// Only the microvm part.
    #[arg(long)]
    pub vm_only: bool,
    /// vCPUs of the benchmark VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Fresh VMs the microvm part runs in, one after the other: results vary between
    /// boots more than within one, so the tables pool every VM's runs and list each VM's
    /// ratios.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub vms: u32,
    /// Kernel selection for the VM part.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `soak`.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Jobs run one after the other, each with fresh random output.
    #[arg(long, default_value_t = 50)]
    pub serial: usize,
    /// Jobs run at once (one VM each), after the serial ones.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Most bytes of random output per job (each job draws a size up to this).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_output: usize,
    /// Leave out the fault cases.
    #[arg(long)]
    pub no_faults: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
