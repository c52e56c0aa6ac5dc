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

/// Packages that must come from the same Debian release as an installed one: QEMU's
/// system emulator depends on the exact version of qemu-system-common, and a backported
/// qemu-utils (10.x on Debian 12) breaks the release's own qemu-system-common (7.2), so
/// next to a backported qemu-utils apt can only install QEMU by removing it.
const SAME_RELEASE_AS: &[(&str, &str)] = &[("qemu-system-x86", "qemu-utils")];

/// Where apt has to take the packages from, beyond the configured defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// The suite to prefer (`apt-get -t`), e.g. `bookworm-backports`.
    pub target: Option<String>,
    /// A sources line to add first, when no configured source has that suite.
    pub add_source: Option<String>,
}

/// The file the runner adds its sources line to.
const OUR_SOURCES: &str = "/etc/apt/sources.list.d/uring-getdents-backports.list";

/// The release to install `todo` from. `installed` gives the version of an installed
/// package (None when not installed), `codename` is the system's (VERSION_CODENAME),
/// `sources` the text of apt's source files.
pub fn release_for(
    todo: &[Package],
    installed: impl Fn(&str) -> Option<String>,
    codename: Option<&str>,
    sources: &str,
) -> Release {
    let backport_sibling = SAME_RELEASE_AS.iter().any(|(wanted, sibling)| {
        todo.iter().any(|p| p.name == *wanted)
            && installed(sibling).is_some_and(|v| v.contains("~bpo"))
    });
    let Some(codename) = codename.filter(|_| backport_sibling) else {
        return Release::default();
    };
    let suite = format!("{codename}-backports");
    let configured = sources
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.split_whitespace().any(|word| word == suite));
    Release {
        add_source: (!configured).then(|| {
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {suite} main"
            )
        }),
        target: Some(suite),
    }
}

/// The arguments of `apt-get` that install `names` (from `target`, when given).
/// `--no-remove` makes apt refuse, rather than carry out, a solution that removes an
/// installed package (installing Debian's QEMU once removed a newer qemu-utils the user
/// had); apt never downgrades without `--allow-downgrades`, which is not given.
pub fn apt_install_args<'a>(
    names: impl IntoIterator<Item = &'a str>,
    target: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = ["install", "-y", "--no-install-recommends", "--no-remove"]
        .map(String::from)
        .to_vec();
    if let Some(target) = target {
        args.extend(["-t".to_string(), target.to_string()]);
    }
    args.extend(names.into_iter().map(String::from));
    args
}

/// The exact command that installs `packages` from `release`.
pub fn install_command(packages: &[Package], release: &Release) -> String {
    let add = release
        .add_source
        .as_ref()
        .map(|line| format!("echo \"{line}\" > {OUR_SOURCES} && "))
        .unwrap_or_default();
    format!(
        "{add}apt-get update && apt-get {}",
        apt_install_args(packages.iter().map(|p| p.name), release.target.as_deref()).join(" ")
    )
}

/// The installed version of Debian package `name`.
fn installed_version(name: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status} ${Version}", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.strip_prefix("installed ")?;
    (out.status.success() && !version.is_empty()).then(|| version.to_string())
}

/// The system's release codename, from /etc/os-release.
fn codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Every apt source file's text, one after the other.
fn apt_sources() -> String {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if name.ends_with(".list") || name.ends_with(".sources") {
                text.push('\n');
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
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
    let release = release_for(
        &todo,
        installed_version,
        codename().as_deref(),
        &apt_sources(),
    );
    let command = install_command(&todo, &release);
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
        let cmd = install_command(&VM[..2], &Release::default());
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
            .args(apt_install_args(["e2fsprogs-"], None))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("remove is disabled"), "{said}");
    }

    #[test]
    fn qemu_comes_from_backports_next_to_a_backported_qemu_utils() {
        let backported = |name: &str| {
            (name == "qemu-utils").then(|| "1:10.0.2+ds-2+deb13u1~bpo12+1".to_string())
        };
        let release = release_for(
            VM,
            backported,
            Some("bookworm"),
            "deb http://x bookworm main",
        );
        assert_eq!(release.target.as_deref(), Some("bookworm-backports"));
        let cmd = install_command(VM, &release);
        assert_eq!(
            cmd,
            "echo \"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian bookworm-backports main\" > \
             /etc/apt/sources.list.d/uring-getdents-backports.list && apt-get update && \
             apt-get install -y --no-install-recommends --no-remove -t bookworm-backports \
             qemu-system-x86 e2fsprogs busybox-static"
        );
        // A configured backports suite is used as it is; a commented-out one is not one.
        let sources = "Types: deb\nSuites: bookworm bookworm-backports\n";
        let release = release_for(VM, backported, Some("bookworm"), sources);
        assert_eq!(release.add_source, None);
        assert_eq!(release.target.as_deref(), Some("bookworm-backports"));
        let commented = "# deb http://x bookworm-backports main";
        let release = release_for(VM, backported, Some("bookworm"), commented);
        assert!(release.add_source.is_some());
    }

    #[test]
    fn qemu_comes_from_the_release_itself_otherwise() {
        let debian = |name: &str| (name == "qemu-utils").then(|| "1:7.2+dfsg-7".to_string());
        assert_eq!(
            release_for(VM, debian, Some("bookworm"), ""),
            Release::default()
        );
        assert_eq!(
            release_for(VM, |_| None, Some("bookworm"), ""),
            Release::default()
        );
        // Not installing QEMU: a backported qemu-utils does not matter.
        let backported = |_: &str| Some("1:10.0.2~bpo12+1".to_string());
        let release = release_for(&VM[1..], backported, Some("bookworm"), "");
        assert_eq!(release, Release::default());
    }

    #[test]
    fn versions_are_read_from_dpkg() {
        if !Path::new("/usr/bin/dpkg-query").exists() {
            eprintln!("skipped: no dpkg-query");
            return;
        }
        // e2fsprogs is needed here, so installed wherever the tests run.
        let version = installed_version("e2fsprogs").unwrap();
        assert!(
            version.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{version}"
        );
        assert_eq!(installed_version("no-such-package-here"), None);
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
