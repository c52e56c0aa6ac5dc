//! `host-runner`: kernel, image, run, test.

use clap::Parser;
use host_runner::{args, cli};

fn main() {
    let parsed = args::Cli::parse();
    cli::main_with(cli::dispatch(parsed), "host-runner")
}
