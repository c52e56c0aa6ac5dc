//! Tests that run inside the microvm, each in a VM of its own.
//!
//! `guest-tests --list` prints one test per line (with requirements such as `cpus=2`)
//! for `host-runner test`; `guest-tests run NAME` runs one and exits 0 only if it
//! passed. `guest-tests emit ...` is a helper for the host's own integration tests.

mod bench;
mod bench_dir;
mod dir;
mod emit;
mod fixtures;
mod getdents;
mod traverse;
mod vm;

use anyhow::{bail, Result};

/// One guest test.
pub struct Test {
    /// Name used by `--list` and `run`.
    pub name: &'static str,
    /// Requirements for the runner (`cpus=2 mem=1024 timeout=900 kernel=stock`).
    pub needs: &'static str,
    /// The test body: `Ok` is a pass.
    pub run: fn() -> Result<()>,
}

/// Every test, in the order they are listed.
fn all_tests() -> Vec<Test> {
    let mut tests = Vec::new();
    tests.extend(vm::tests());
    tests.extend(getdents::tests());
    tests.extend(traverse::tests());
    tests.extend(dir::tests());
    tests
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match dispatch(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("guest-tests: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn dispatch(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("--list") => {
            for t in all_tests() {
                println!("{} {}", t.name, t.needs);
            }
            Ok(())
        }
        Some("run") => {
            let Some(name) = args.get(1) else {
                bail!("usage: guest-tests run NAME");
            };
            let tests = all_tests();
            let Some(test) = tests.iter().find(|t| t.name == name) else {
                bail!("no test named {name:?}; see --list");
            };
            (test.run)()?;
            println!("ok {name}");
            Ok(())
        }
        Some("emit") => emit::main(&args[1..]),
        Some("bench-getdents") => bench::main(&args[1..]),
        Some("bench-dir") => bench_dir::main(&args[1..]),
        _ => bail!("usage: guest-tests --list | run NAME | emit STDOUT_BYTES STDERR_BYTES SEED | bench-getdents [ENTRIES] [ROUNDS] | bench-dir DIR [--tree] ..."),
    }
}
