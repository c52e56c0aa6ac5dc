//! Counts the entries under a directory (default: the current one) with the async walk,
//! and how long that took: a quick way to compare warm and cold walks, or the op with
//! the fallback (`--fallback`).
//!
//! `cargo run --release -p tokio-uring-dir --example walk -- [--fallback] [PATH]`

use std::time::Instant;
use tokio_uring_dir::{DirOptions, WalkDir};

fn main() {
    let mut fallback = false;
    let mut root = None;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--fallback") => fallback = true,
            _ if root.is_none() => root = Some(arg),
            _ => {
                eprintln!("usage: walk [--fallback] [PATH]");
                std::process::exit(2);
            }
        }
    }
    let root = root.unwrap_or_else(|| ".".into());
    let started = Instant::now();
    let (entries, errors) = tokio_uring::start(async {
        let mut walk = WalkDir::new(&root)
            .dir_options(DirOptions::new().force_fallback(fallback))
            .walk();
        let (mut entries, mut errors) = (0u64, 0u64);
        while let Some(entry) = walk.next().await {
            match entry {
                Ok(_) => entries += 1,
                Err(e) => {
                    errors += 1;
                    eprintln!("walk: {e}");
                }
            }
        }
        (entries, errors)
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{entries} entries, {errors} errors in {secs:.3} s ({:.0} entries/s)",
        entries as f64 / secs
    );
    if errors > 0 {
        std::process::exit(1);
    }
}
