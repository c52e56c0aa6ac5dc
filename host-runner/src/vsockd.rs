//! The vhost-user vsock backend daemon (rust-vmm's `vhost-device-vsock`).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The daemon version the runner installs and was tested with.
pub const VERSION: &str = "0.3.0";
const NAME: &str = "vhost-device-vsock";

fn install_root() -> Result<PathBuf> {
    crate::cache::cache_dir("tools").map(|d| d.join(NAME))
}

/// The daemon from the cache or PATH, if present.
pub fn find_daemon() -> Option<PathBuf> {
    if let Ok(root) = install_root() {
        let bin = root.join("bin").join(NAME);
        if bin.is_file() {
            return Some(bin);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(NAME))
            .find(|p| p.is_file())
    })
}

/// Returns the daemon, installing it with `cargo install --locked` into the cache first
/// when it is missing.
pub fn ensure_daemon() -> Result<PathBuf> {
    if let Some(found) = find_daemon() {
        return Ok(found);
    }
    let _lock = crate::cache::lock("vsockd")?;
    if let Some(found) = find_daemon() {
        return Ok(found);
    }
    let root = install_root()?;
    eprintln!(
        "host-runner: installing {NAME} {VERSION} into {}",
        root.display()
    );
    let status = crate::cargo::install(NAME, VERSION, &root)
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install {NAME} {VERSION} failed ({status})");
    }
    find_daemon().with_context(|| format!("{NAME} not found after installing it"))
}
