//! System packages the runner needs, installed with apt when it can, else named exactly.

use anyhow::{bail, Context, Result};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

/// A Debian package and a file whose presence shows it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// Debian package name.
    pub name: &'static str,
    /// A file the package installs.
    pub provides: &'static str,
}

/// What booting a VM needs.
pub const VM: &[Package] = &[
    Package {
        name: "qemu-system-x86",
        provides: "/usr/bin/qemu-system-x86_64",
    },
    Package {
        name: "e2fsprogs",
        provides: "/usr/sbin/mke2fs",
    },
    Package {
        name: "busybox-static",
        provides: "/bin/busybox",
    },
];

/// Debian's Linux 6.12 source tarball, which the guest kernel is built from.
pub const KERNEL_SOURCE: Package = Package {
    name: "linux-source-6.12",
    provides: "/usr/src/linux-source-6.12.tar.xz",
};

/// What building the guest kernel from Debian's source needs.
pub const KERNEL_BUILD: &[Package] = &[
    KERNEL_SOURCE,
    Package {
        name: "flex",
        provides: "/usr/bin/flex",
    },
    Package {
        name: "bison",
        provides: "/usr/bin/bison",
    },
    Package {
        name: "bc",
        provides: "/usr/bin/bc",
    },
    Package {
        name: "libelf-dev",
        provides: "/usr/include/libelf.h",
    },
    Package {
        name: "libssl-dev",
        provides: "/usr/include/openssl/ssl.h",
    },
    Package {
        name: "make",
        provides: "/usr/bin/make",
    },
    Package {
        name: "gcc",
        provides: "/usr/bin/gcc",
    },
    Package {
        name: "xz-utils",
        provides: "/usr/bin/xz",
    },
    PATCH,
];

/// What applies and reverts the kernel patches (also in the unit tests).
pub const PATCH: Package = Package {
    name: "patch",
    provides: "/usr/bin/patch",
};

/// The packages of `wanted` that are not installed.
pub fn missing(wanted: &[Package]) -> Vec<Package> {
    wanted
        .iter()
        .copied()
        .filter(|p| !Path::new(p.provides).exists())
        .collect()
}

/// The arguments of `apt-get` that install `names`. `--no-remove` makes apt refuse,
/// rather than carry out, a solution that removes an installed package (installing
/// Debian's QEMU once removed a newer qemu-utils the user had); apt never downgrades
/// without `--allow-downgrades`, which is not given.
pub fn apt_install_args<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut args: Vec<String> = ["install", "-y", "--no-install-recommends", "--no-remove"]
        .map(String::from)
        .to_vec();
    args.extend(names.into_iter().map(String::from));
    args
}

/// The exact command that installs `packages`.
pub fn install_command(packages: &[Package]) -> String {
    format!(
        "apt-get update && apt-get {}",
        apt_install_args(packages.iter().map(|p| p.name)).join(" ")
    )
}

/// Makes sure `wanted` is installed: installs with apt as root, else fails with the command.
pub fn ensure(wanted: &[Package]) -> Result<()> {
    if missing(wanted).is_empty() {
        return Ok(());
    }
    // Concurrent runners must not run apt at the same time.
    let _lock = crate::cache::lock("apt")?;
    let todo = missing(wanted);
    if todo.is_empty() {
        return Ok(());
    }
    let command = install_command(&todo);
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root || !Path::new("/usr/bin/apt-get").exists() {
        bail!("missing system packages; install them with:\n    sudo sh -c '{command}'");
    }
    eprintln!("host-runner: installing {}", command);
    let status = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // The runner's standard input may be the job's (run-in-vm passes it on), and
        // its standard output is the job's output or a printed path: apt talks on stderr.
        .stdin(std::process::Stdio::null())
        .stdout(
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_or_else(|_| std::process::Stdio::null(), Into::into),
        )
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!(
            "`{command}` failed ({status}). If apt said packages would have to be removed, \
             they conflict with what is installed, and nothing was changed: install the \
             packages yourself, choosing what to keep"
        );
    }
    let still = missing(wanted);
    if !still.is_empty() {
        bail!(
            "installed, but still missing: {}",
            still
                .iter()
                .map(|p| p.provides)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_command_names_every_missing_package() {
        let cmd = install_command(&VM[..2]);
        assert_eq!(
            cmd,
            "apt-get update && apt-get install -y --no-install-recommends --no-remove qemu-system-x86 e2fsprogs"
        );
    }

    #[test]
    fn apt_refuses_an_install_that_would_remove_a_package() {
        // Simulated (-s: changes nothing, needs no root): a trailing '-' asks apt to
        // remove e2fsprogs, which this project needs and so is installed wherever the
        // tests run; with our arguments apt must refuse instead of removing it.
        if !Path::new("/usr/bin/apt-get").exists() {
            eprintln!("skipped: no apt-get");
            return;
        }
        let out = Command::new("apt-get")
            .arg("-s")
            .args(apt_install_args(["e2fsprogs-"]))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("remove is disabled"), "{said}");
    }

    #[test]
    fn a_package_whose_file_exists_is_not_missing() {
        let present = Package {
            name: "x",
            provides: "/",
        };
        let absent = Package {
            name: "y",
            provides: "/nonexistent/file",
        };
        assert_eq!(missing(&[present, absent]), vec![absent]);
    }
}
