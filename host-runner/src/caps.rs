//! Host capabilities, probed once into a value that every later decision takes.

use std::path::{Path, PathBuf};

pub use crate::vmplan::Accel;

/// What the user asked for with `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when usable, else TCG.
    Auto,
    /// Always KVM (fails where it cannot work).
    Kvm,
    /// Always TCG.
    Tcg,
}

/// What this host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCaps {
    /// /dev/kvm opens read-write AND the CPU advertises vmx or svm. Some hosts expose a
    /// /dev/kvm (PVM) that cannot run a stock guest kernel; they lack the CPU flag.
    pub kvm_usable: bool,
    /// /dev/vhost-vsock opens read-write: QEMU can use the in-kernel vsock backend.
    pub vhost_vsock: bool,
    /// The vhost-user vsock daemon, if installed.
    pub vsock_daemon: Option<PathBuf>,
    /// QEMU accepts `-sandbox` with our options ([`crate::vmplan::SANDBOX`]); a build
    /// without libseccomp rejects it and would not start.
    pub qemu_sandbox: bool,
}

impl HostCaps {
    /// Probes the running host.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        HostCaps {
            kvm_usable: opens_rw(Path::new("/dev/kvm")) && cpu_has_virt(&cpuinfo),
            vhost_vsock: opens_rw(Path::new("/dev/vhost-vsock")),
            vsock_daemon: crate::vsockd::find_daemon(),
            qemu_sandbox: qemu_accepts_sandbox(),
        }
    }

    /// Resolves `--accel`.
    pub fn accel(&self, choice: AccelChoice) -> Accel {
        match choice {
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Auto if self.kvm_usable => Accel::Kvm,
            AccelChoice::Auto => Accel::Tcg,
        }
    }
}

fn qemu_accepts_sandbox() -> bool {
    std::process::Command::new("qemu-system-x86_64")
        .args(["-sandbox", crate::vmplan::SANDBOX, "-version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn opens_rw(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .is_ok()
}

/// True when some "flags" line of /proc/cpuinfo lists vmx (Intel) or svm (AMD).
pub fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virt_flags_are_read_from_flags_lines_only() {
        assert!(cpu_has_virt("flags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virt("flags\t\t: fpu svm\n"));
        assert!(!cpu_has_virt("flags\t\t: fpu vme sse hypervisor\n"));
        assert!(!cpu_has_virt("model name\t: vmx lookalike\n"));
    }

    #[test]
    fn auto_picks_kvm_only_when_usable() {
        let mut caps = HostCaps {
            kvm_usable: false,
            vhost_vsock: false,
            vsock_daemon: None,
            qemu_sandbox: false,
        };
        assert_eq!(caps.accel(AccelChoice::Auto), Accel::Tcg);
        assert_eq!(caps.accel(AccelChoice::Kvm), Accel::Kvm);
        caps.kvm_usable = true;
        assert_eq!(caps.accel(AccelChoice::Auto), Accel::Kvm);
        assert_eq!(caps.accel(AccelChoice::Tcg), Accel::Tcg);
    }
}
