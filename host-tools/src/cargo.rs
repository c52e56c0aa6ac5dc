//! Running cargo: the guest and host builds of this workspace and `cargo install` of
//! the tools the runner needs (vhost-device-vsock, benchmark peers, static hyperfine).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace this runner was built from.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// cargo itself: the one running us (`$CARGO` under `cargo run`/`cargo test`), else PATH's.
/// Its standard input is /dev/null: the runner's may be the job's (run-in-vm passes it on).
pub fn command() -> Command {
    let mut cmd =
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cmd.stdin(std::process::Stdio::null());
    crate::child::dies_with_runner(&mut cmd);
    cmd
}

/// `cargo install --quiet --locked KRATE --version VERSION --root ROOT`, for the caller
/// to add target, flags or environment to and run.
pub fn install(krate: &str, version: &str, root: &Path) -> Command {
    let mut cmd = command();
    cmd.args([
        "install",
        "--quiet",
        "--locked",
        krate,
        "--version",
        version,
    ])
    .arg("--root")
    .arg(root);
    cmd
}

/// The workspace's target directory (`$CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}
