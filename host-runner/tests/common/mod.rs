//! Helpers shared by the end-to-end test binaries.

#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output, Stdio};

/// `run-in-vm` with /dev/null as standard input.
pub fn run_in_vm() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-in-vm"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `run-in-vm ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    run_in_vm().args(args).output().expect("run-in-vm starts")
}

/// Bytes as text, for messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs one trivial job first, once per test binary: on a fresh machine the first run
/// installs packages and builds the kernel and image, which a test that times its run
/// must not count.
pub fn set_up_once() {
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| {
        let out = run(&["--no-src", "true"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    });
}
