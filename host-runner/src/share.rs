//! `--share HOSTDIR:GUESTDIR[:ro|rw]`: a host directory the guest mounts over virtio-9p,
//! live (not a snapshot like `--disk`), so the job can run what the host just built
//! and leave results the host reads after the run.

use crate::vmplan::ShareAttach;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use vm_wire::ShareMount;

/// One parsed `--share`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSpec {
    /// The host directory, made absolute.
    pub host_dir: PathBuf,
    /// Absolute mount point in the guest.
    pub target: PathBuf,
    /// Mounted read-only (and refused writes by QEMU too).
    pub read_only: bool,
}

/// Parses `HOSTDIR:GUESTDIR[:ro|rw]` (read-write unless `:ro`); the host directory
/// must exist. Errors name the specification.
pub fn parse(spec: &str) -> Result<ShareSpec, String> {
    let bad = |why: &str| format!("share {spec}: {why}");
    let (rest, read_only) = match spec.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (spec, false),
    };
    let (host, guest) = rest
        .split_once(':')
        .ok_or_else(|| bad("expected HOSTDIR:GUESTDIR[:ro|rw]"))?;
    if host.is_empty() || !guest.starts_with('/') {
        return Err(bad(
            "expected HOSTDIR:GUESTDIR[:ro|rw] with an absolute GUESTDIR",
        ));
    }
    let host_dir = std::fs::canonicalize(host).map_err(|e| bad(&format!("{host}: {e}")))?;
    if !host_dir.is_dir() {
        return Err(bad(&format!("{host} is not a directory")));
    }
    Ok(ShareSpec {
        host_dir,
        target: PathBuf::from(guest),
        read_only,
    })
}

/// The 9p mount tag of the `n`th share (QEMU allows at most 31 bytes).
fn tag(n: usize) -> String {
    format!("share{n}")
}

/// What QEMU attaches and what the guest mounts, in the order given.
pub fn attach(specs: &[ShareSpec]) -> (Vec<ShareAttach>, Vec<ShareMount>) {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                ShareAttach {
                    host_dir: s.host_dir.clone(),
                    tag: tag(i),
                    read_only: s.read_only,
                },
                ShareMount {
                    tag: tag(i),
                    target: s.target.as_os_str().as_bytes().to_vec(),
                    read_only: s.read_only,
                },
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_default_to_read_write_and_paths_are_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let s = parse(&format!("{host}:/out")).unwrap();
        assert_eq!(s.target, PathBuf::from("/out"));
        assert!(!s.read_only);
        assert!(parse(&format!("{host}:/out:ro")).unwrap().read_only);
        assert!(!parse(&format!("{host}:/out:rw")).unwrap().read_only);
        let name = dir.path().file_name().unwrap().to_str().unwrap();
        let roundabout = parse(&format!("{host}/../{name}/.:/here")).unwrap();
        assert_eq!(
            roundabout.host_dir,
            std::fs::canonicalize(dir.path()).unwrap()
        );
    }

    #[test]
    fn bad_specifications_are_refused_with_their_text() {
        for bad in [
            "/tmp",
            "/tmp:rel",
            ":/x",
            "/no/such/dir:/x",
            "/etc/hostname:/x",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn each_share_gets_its_own_tag_on_both_sides() {
        let specs = [
            ShareSpec {
                host_dir: "/a".into(),
                target: "/x".into(),
                read_only: true,
            },
            ShareSpec {
                host_dir: "/b".into(),
                target: "/y".into(),
                read_only: false,
            },
        ];
        let (attached, mounts) = attach(&specs);
        assert_eq!(attached[1].tag, "share1");
        assert_eq!(mounts[1].tag, "share1");
        assert_eq!(mounts[0].target, b"/x");
        assert!(attached[0].read_only && mounts[0].read_only);
    }
}
