//! Tests that run inside the microvm, each in a VM of its own.
//!
//! `guest-tests --list` prints one test per line (with requirements such as `cpus=2`)
//! for `host-runner test`; `guest-tests run NAME` runs one and exits 0 only if it
//! passed. `guest-tests emit ...` is a helper for the host's own integration tests.

mod bench;
mod bench_dir;
mod bench_tree;
mod dir;
mod emit;
mod fixtures;
mod getdents;
mod inline;
mod kmsg;
mod traverse;
mod vm;

use anyhow::{bail, Result};

/// Appends to a test's requirements the two ext4 scratch filesystems the getdents tests
/// also run on: `/mnt/ext4` (extents, journal, dir_index: large directories become hash
/// trees) and `/mnt/nodx` (the same without dir_index: every directory is linear).
macro_rules! with_ext4 {
    ($needs:literal) => {
        concat!(
            $needs,
            " scratch=ext4:/mnt/ext4 scratch=ext4,^dir_index:/mnt/nodx"
        )
    };
}
pub(crate) use with_ext4;

/// Where the tests make directories: tmpfs, the ext2-format root image, and the ext4
/// scratch filesystems of [`with_ext4`] (labels for messages, mount points).
pub const TEST_FILESYSTEMS: [(&str, &str); 4] = [
    ("tmpfs", "/tmp"),
    ("ext2", "/root"),
    ("ext4", "/mnt/ext4"),
    ("ext4 without dir_index", "/mnt/nodx"),
];

/// How many entries a test's "large" directory of `n` entries gets on the filesystem
/// mounted at `base`. Without dir_index every create scans the whole directory for the
/// name, so filling a linear directory costs n² entry comparisons: 100k entries take
/// about 20 minutes under TCG (and mke2fs -d is no faster on the host: 9 minutes).
/// A fifth of the entries still spans hundreds of blocks, which is what the
/// non-blocking linear reader has to get right.
pub fn entries_on(base: &str, n: usize) -> usize {
    if base == "/mnt/nodx" {
        n / 5
    } else {
        n
    }
}

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
    tests.extend(inline::tests());
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
            let reports = kmsg::reports()?;
            if !reports.is_empty() {
                bail!(
                    "{name}: its checks passed, but the kernel reported bugs:\n  {}",
                    reports.join("\n  ")
                );
            }
            println!("ok {name}");
            Ok(())
        }
        Some("emit") => emit::main(&args[1..]),
        Some("bench-getdents") => bench::main(&args[1..]),
        Some("bench-dir") => bench_dir::main(&args[1..]),
        Some("bench-getdents-tree") => bench_tree::main(&args[1..]),
        _ => bail!("usage: guest-tests --list | run NAME | emit STDOUT_BYTES STDERR_BYTES SEED | bench-getdents [ENTRIES] [ROUNDS] | bench-getdents-tree DIR [ROUNDS] [DEPTH] | bench-dir DIR [--tree] ..."),
    }
}
