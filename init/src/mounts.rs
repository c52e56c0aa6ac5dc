//! What PID 1 mounts: a fixed table of pseudo filesystems, then the job's disks.

use nix::mount::{mount, MsFlags};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use vm_wire::{DiskMount, ShareMount};

/// One row of the mount table.
pub struct MountEntry {
    /// What is mounted (the pseudo filesystem's name).
    pub source: &'static str,
    /// Where.
    pub target: &'static str,
    /// The filesystem type.
    pub fstype: &'static str,
    /// mount(2) flags.
    pub flags: MsFlags,
    /// Filesystem options, if any.
    pub data: Option<&'static str>,
    /// Skipped without a word when the kernel does not have the filesystem (a kernel
    /// of the user's, built without debugfs, say): nice to have, not needed by PID 1.
    pub optional: bool,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounted in order at boot; /dev comes before /dev/pts.
pub const PSEUDO_FILESYSTEMS: &[MountEntry] = &[
    MountEntry {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    MountEntry {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: false,
    },
    MountEntry {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        optional: false,
    },
    MountEntry {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
        optional: false,
    },
    MountEntry {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        optional: false,
    },
    MountEntry {
        // POSIX shared memory (shm_open, sem_open) lives here; many test programs
        // and libraries expect it.
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        optional: false,
    },
    MountEntry {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        optional: false,
    },
    MountEntry {
        source: "debugfs",
        target: "/sys/kernel/debug",
        fstype: "debugfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: true,
    },
    MountEntry {
        source: "tracefs",
        target: "/sys/kernel/tracing",
        fstype: "tracefs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: true,
    },
    MountEntry {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        optional: true,
    },
];

/// Mounts every entry, returning one message per failure (the rest still get mounted).
pub fn mount_all(table: &[MountEntry]) -> Vec<String> {
    let mut errors = Vec::new();
    // Read once /proc is up (it is the first entry).
    let mut known: Option<String> = None;
    for m in table {
        if m.optional {
            let list = known.get_or_insert_with(|| {
                std::fs::read_to_string("/proc/filesystems").unwrap_or_default()
            });
            if !list
                .lines()
                .any(|l| l.split_whitespace().last() == Some(m.fstype))
            {
                continue;
            }
        }
        if is_mount_point(m.target) {
            // The kernel mounts /dev itself when DEVTMPFS_MOUNT is set.
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(m.target) {
            errors.push(format!("mkdir {}: {e}", m.target));
            continue;
        }
        if let Err(e) = mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
            errors.push(format!("mount {} on {}: {e}", m.fstype, m.target));
        }
    }
    errors
}

fn is_mount_point(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Ok(parent)) = (
        std::fs::metadata(path),
        std::fs::metadata(Path::new(path).join("..")),
    ) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Mounts each disk of the job at its target, finding it by its virtio-blk serial.
pub fn mount_disks(disks: &[DiskMount]) -> Result<(), String> {
    for disk in disks {
        let dev = find_disk_by_serial(&disk.serial)?;
        let target = Path::new(std::ffi::OsStr::from_bytes(&disk.target));
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        let mut flags = MsFlags::MS_NOATIME;
        if disk.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(
            Some(dev.as_path()),
            target,
            Some(disk.fstype.as_str()),
            flags,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "mount {} (disk {}) on {}: {e}",
                dev.display(),
                disk.serial,
                target.display()
            )
        })?;
    }
    Ok(())
}

/// 9p mount options: the 9P2000.L dialect (POSIX semantics, what QEMU's virtio-9p
/// speaks best) and 512 KiB messages, so large reads and writes take few round trips.
/// No page cache (the default cache mode): what the job writes is on the host when its
/// write returns, and what the host changes is seen at once.
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=524288";

/// Mounts each shared host directory of the job at its target, by its 9p mount tag.
pub fn mount_shares(shares: &[ShareMount]) -> Result<(), String> {
    for share in shares {
        let target = Path::new(std::ffi::OsStr::from_bytes(&share.target));
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {}: {e}", target.display()))?;
        let mut flags = MsFlags::empty();
        if share.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(
            Some(share.tag.as_str()),
            target,
            Some("9p"),
            flags,
            Some(NINEP_OPTIONS),
        )
        .map_err(|e| format!("mount 9p share {} on {}: {e}", share.tag, target.display()))?;
    }
    Ok(())
}

/// virtio-mmio device order is not the command-line order, so disks are named by serial.
fn find_disk_by_serial(serial: &str) -> Result<std::path::PathBuf, String> {
    let entries = std::fs::read_dir("/sys/block").map_err(|e| format!("/sys/block: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(found) = std::fs::read_to_string(entry.path().join("serial")) else {
            continue;
        };
        if found.trim_end() == serial {
            return Ok(Path::new("/dev").join(name));
        }
    }
    Err(format!("no disk with serial {serial:?} in /sys/block"))
}
