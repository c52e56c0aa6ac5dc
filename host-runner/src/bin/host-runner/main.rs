//! `host-runner`: kernel, image, run, test, targets, soak, caps, and the benchmark.
//!
//! Everything but the benchmark is the library's (`host_runner::cli`); the benchmark
//! lives in this binary (bench.rs) and uses the library like any other user of it, so
//! the library never depends on it.

mod bench;

use clap::Parser;
use host_runner::{args, cli};

fn main() {
    let parsed = args::Cli::parse();
    let result = match parsed.command {
        args::Cmd::Bench(b) => bench::cmd_bench(&b),
        command => cli::dispatch(args::Cli { command }),
    };
    cli::main_with(result, "host-runner")
}
