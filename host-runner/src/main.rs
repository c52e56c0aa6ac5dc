//! `host-runner`: kernel, image, run, test.

use clap::Parser;
use host_runner::cli;

fn main() {
    let parsed = cli::Cli::parse();
    cli::main_with(cli::dispatch(parsed), "host-runner")
}
