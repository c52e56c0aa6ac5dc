//! `run-in-vm [OPTIONS] CMD [ARGS...]`: runs one command in a fresh microvm, with the
//! guest's stdout, stderr and exit status mirrored.

use clap::Parser;
use host_runner::{args, cli};

/// Runs one command in a fresh QEMU microvm; the current directory appears read-only at /src.
#[derive(Parser, Debug)]
#[command(name = "run-in-vm", version, after_help = args::WHERE_PARTS_COME_FROM)]
struct RunInVm {
    #[command(flatten)]
    run: args::RunArgs,
}

fn main() {
    let parsed = RunInVm::parse();
    cli::main_with(cli::cmd_run(&parsed.run, "run-in-vm"), "run-in-vm")
}
