//! Pure builders: the kernel command line, QEMU's argv and the vsock backend's argv.
//!
//! Nothing here touches the machine; every decision is made from the values passed in,
//! so the unit tests below read the command lines as data.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The vsock port the guest connects to for its job.
pub const JOB_PORT: u32 = 1024;
/// Name of the virtio-serial port used as the fallback job channel.
pub const SERIAL_PORT_NAME: &str = "vmjob";

/// How the job channel crosses into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPlan {
    /// vhost-user-vsock-device served by vhost-device-vsock; the host listens on
    /// `<uds>_<port>`.
    VhostUserVsock {
        /// Guest CID given to the backend.
        cid: u32,
        /// The vhost-user socket QEMU connects to.
        backend_socket: PathBuf,
        /// The Unix socket prefix the backend forwards guest connections to.
        uds: PathBuf,
    },
    /// vhost-vsock-device on the host kernel's /dev/vhost-vsock; the host listens on
    /// AF_VSOCK.
    VhostKernelVsock {
        /// Guest CID, unique among running VMs.
        cid: u32,
        /// Host port, unique among running VMs (all share the host's vsock namespace).
        port: u32,
    },
    /// virtio-serial port whose chardev connects to a Unix socket the host listens on.
    VirtioSerial {
        /// The host's listening socket.
        socket: PathBuf,
    },
}

impl ChannelPlan {
    /// The `vmjob.channel=` value that tells PID 1 how to reach the host.
    pub fn guest_param(&self) -> String {
        match self {
            ChannelPlan::VhostUserVsock { .. } => format!("vsock:{JOB_PORT}"),
            ChannelPlan::VhostKernelVsock { port, .. } => format!("vsock:{port}"),
            ChannelPlan::VirtioSerial { .. } => format!("virtio-serial:{SERIAL_PORT_NAME}"),
        }
    }

    /// Where the host listens for the guest, if it is a Unix socket.
    pub fn host_socket(&self) -> Option<PathBuf> {
        match self {
            ChannelPlan::VhostUserVsock { uds, .. } => {
                let mut p = uds.clone().into_os_string();
                p.push(format!("_{JOB_PORT}"));
                Some(PathBuf::from(p))
            }
            ChannelPlan::VirtioSerial { socket } => Some(socket.clone()),
            ChannelPlan::VhostKernelVsock { .. } => None,
        }
    }
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

/// An extra disk given to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAttach {
    /// The ext2 image on the host.
    pub image: PathBuf,
    /// virtio-blk serial (the guest finds the disk by it).
    pub serial: String,
    /// Attach read-only.
    pub read_only: bool,
    /// Bypass the host page cache (cache=none), so "cold" in the guest is really cold.
    pub bypass_host_cache: bool,
}

/// A host directory given to the guest over virtio-9p, served by QEMU itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAttach {
    /// The directory on the host.
    pub host_dir: PathBuf,
    /// The 9p mount tag (the guest mounts the share by it).
    pub tag: String,
    /// QEMU refuses every write (the guest also mounts it read-only).
    pub read_only: bool,
}

/// Everything one VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// KVM or TCG.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// vmlinux (PVH entry) or bzImage.
    pub kernel: PathBuf,
    /// ext2 root image; opened with snapshot=on so concurrent VMs share it safely.
    pub root_image: PathBuf,
    /// Extra disks, in order.
    pub disks: Vec<DiskAttach>,
    /// Shared host directories.
    pub shares: Vec<ShareAttach>,
    /// The job channel.
    pub channel: ChannelPlan,
    /// Where the serial console goes.
    pub console_log: PathBuf,
    /// Pass `quiet` to the kernel: printing boot messages over the emulated UART is slow.
    pub quiet_kernel: bool,
    /// Parameters the user asked for, after ours (the kernel lets later ones win).
    pub extra_kernel_args: Vec<String>,
    /// Run QEMU under its seccomp filter ([`SANDBOX`]); only where the QEMU build has it.
    pub sandbox: bool,
    /// QMP server socket, for the runner to hear of host I/O errors (see `qmp`).
    pub qmp_socket: Option<PathBuf>,
}

/// What every drive does when a host read or write fails: report the error to the guest
/// (and as a QMP event) instead of QEMU's default of pausing the VM on ENOSPC, which
/// turned a full host disk into a hang until the run's timeout.
pub const DRIVE_ERROR_POLICY: &str = ",werror=report,rerror=report";

/// QEMU's seccomp sandbox with every optional deny: QEMU may not exec or fork
/// (`spawn`), change its privileges, or use obsolete or resource-control calls. A
/// guest that escapes the device models then holds far less of the user's account.
/// Our VMs need none of those calls: no helpers, no tap scripts, threads only.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The kernel command line for `cfg`.
pub fn kernel_cmdline(cfg: &VmConfig) -> String {
    let mut args: Vec<String> = vec![
        "console=ttyS0".into(),
        // No ACPI: a reboot through the triple-fault path, which -no-reboot turns into
        // QEMU exiting.
        "reboot=t".into(),
        // A panic reboots at once, so QEMU exits instead of hanging; the runner tells a
        // panic from success by the missing job status.
        "panic=-1".into(),
        // An oops or a WARN() in the patched kernel is a bug the job's own status would
        // hide (a task dies, the test may still pass, and `quiet` keeps the splat off
        // the console): both become a panic, which the runner reports as a crash.
        "oops=panic".into(),
        "panic_on_warn=1".into(),
        // The boot-time check that the IO-APIC timer ticks within a calibrated delay
        // fails when the host is busy (16 TCG VMs on 2 cores: "IO-APIC + timer doesn't
        // work!" and a panic, 1 boot in ~30 in `host-runner soak`); a virtual timer is
        // known to work, so the check only ever gives false alarms here.
        "no_timer_check".into(),
        "root=/dev/vda".into(),
        "rootfstype=ext2".into(),
        "rw".into(),
        "init=/sbin/init".into(),
    ];
    if cfg.quiet_kernel {
        args.push("quiet".into());
    }
    args.push(format!("vmjob.channel={}", cfg.channel.guest_param()));
    args.extend(cfg.extra_kernel_args.iter().cloned());
    args.join(" ")
}

fn push(argv: &mut Vec<OsString>, items: &[&str]) {
    argv.extend(items.iter().map(OsString::from));
}

/// A QEMU option string (`-drive`, `-chardev`) with `path` as one value: a comma in the
/// path is doubled, as QEMU's option syntax asks, or it would end the value.
fn path_opt(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    let mut escaped = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        escaped.push(b);
        if b == b',' {
            escaped.push(b',');
        }
    }
    s.push(std::ffi::OsStr::from_bytes(&escaped));
    s.push(suffix);
    s
}

/// QEMU's arguments (without the program name) for `cfg`.
pub fn qemu_argv(cfg: &VmConfig) -> Vec<OsString> {
    let mut argv = Vec::new();
    // vhost-user backends map guest RAM, so it must be a shared memfd.
    let shared_mem = matches!(cfg.channel, ChannelPlan::VhostUserVsock { .. });
    let machine = if shared_mem {
        "microvm,acpi=off,memory-backend=mem"
    } else {
        "microvm,acpi=off"
    };
    push(&mut argv, &["-M", machine]);
    if shared_mem {
        push(
            &mut argv,
            &[
                "-object",
                &format!("memory-backend-memfd,id=mem,size={}M,share=on", cfg.mem_mib),
            ],
        );
    }
    push(&mut argv, &["-m", &format!("{}M", cfg.mem_mib)]);
    push(&mut argv, &["-smp", &cfg.cpus.to_string()]);
    match cfg.accel {
        Accel::Kvm => push(&mut argv, &["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => push(&mut argv, &["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
    push(
        &mut argv,
        &["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"],
    );
    if cfg.sandbox {
        push(&mut argv, &["-sandbox", SANDBOX]);
    }
    if let Some(qmp) = &cfg.qmp_socket {
        argv.push("-qmp".into());
        // Listening, never waiting for the client: the runner connects when it polls.
        argv.push(path_opt("unix:", qmp, ",server=on,wait=off"));
    }
    argv.push("-serial".into());
    // A legacy chardev spec: everything after "file:" is the path, commas included.
    let mut serial = OsString::from("file:");
    serial.push(cfg.console_log.as_os_str());
    argv.push(serial);
    argv.push("-kernel".into());
    argv.push(cfg.kernel.clone().into_os_string());
    push(&mut argv, &["-append", &kernel_cmdline(cfg)]);

    // The root disk first: it becomes /dev/vda.
    argv.push("-drive".into());
    argv.push(path_opt(
        "id=root,file=",
        &cfg.root_image,
        &format!(",format=raw,if=none,snapshot=on{DRIVE_ERROR_POLICY}"),
    ));
    // One request queue per vCPU, as virtio-blk-pci gets by default since QEMU 5.2 but
    // virtio-mmio does not: with a single queue the guest puts mq-deadline in front of
    // the disk and vCPUs issuing I/O at once serialize on its lock and on the queue's
    // (a cold parallel walk in the microvm took 13% longer that way, du 5%).
    let queues = cfg.cpus.max(1);
    push(
        &mut argv,
        &[
            "-device",
            &format!("virtio-blk-device,drive=root,serial=root,num-queues={queues}"),
        ],
    );
    for (i, disk) in cfg.disks.iter().enumerate() {
        let mut opts = format!(",format=raw,if=none{DRIVE_ERROR_POLICY}");
        if disk.read_only {
            opts.push_str(",readonly=on");
        }
        if disk.bypass_host_cache {
            opts.push_str(",cache=none,aio=threads");
        }
        argv.push("-drive".into());
        argv.push(path_opt(&format!("id=disk{i},file="), &disk.image, &opts));
        push(
            &mut argv,
            &[
                "-device",
                &format!(
                    "virtio-blk-device,drive=disk{i},serial={},num-queues={queues}",
                    disk.serial
                ),
            ],
        );
    }
    // security_model=none: files are created and accessed as the user running QEMU, so
    // what the guest writes is the user's on the host, and ownership changes the guest
    // asks for are ignored rather than failing (a non-root QEMU cannot make them).
    for (i, share) in cfg.shares.iter().enumerate() {
        let ro = if share.read_only { ",readonly=on" } else { "" };
        argv.push("-fsdev".into());
        argv.push(path_opt(
            &format!("local,id=share{i},path="),
            &share.host_dir,
            &format!(",security_model=none{ro}"),
        ));
        push(
            &mut argv,
            &[
                "-device",
                &format!("virtio-9p-device,fsdev=share{i},mount_tag={}", share.tag),
            ],
        );
    }
    match &cfg.channel {
        ChannelPlan::VhostUserVsock { backend_socket, .. } => {
            argv.push("-chardev".into());
            argv.push(path_opt("socket,id=vsock,path=", backend_socket, ""));
            push(
                &mut argv,
                &["-device", "vhost-user-vsock-device,chardev=vsock"],
            );
        }
        ChannelPlan::VhostKernelVsock { cid, .. } => {
            push(
                &mut argv,
                &["-device", &format!("vhost-vsock-device,guest-cid={cid}")],
            );
        }
        ChannelPlan::VirtioSerial { socket } => {
            push(&mut argv, &["-device", "virtio-serial-device"]);
            argv.push("-chardev".into());
            argv.push(path_opt("socket,id=vmjob,path=", socket, ""));
            push(
                &mut argv,
                &[
                    "-device",
                    &format!("virtserialport,chardev=vmjob,name={SERIAL_PORT_NAME}"),
                ],
            );
        }
    }
    argv
}

/// vhost-device-vsock's arguments for a vhost-user channel.
pub fn vsock_daemon_argv(channel: &ChannelPlan) -> Option<Vec<OsString>> {
    let ChannelPlan::VhostUserVsock {
        cid,
        backend_socket,
        uds,
    } = channel
    else {
        return None;
    };
    let mut spec = OsString::from(format!("guest-cid={cid},socket="));
    spec.push(backend_socket.as_os_str());
    spec.push(",uds-path=");
    spec.push(uds.as_os_str());
    Some(vec!["--vm".into(), spec])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(channel: ChannelPlan) -> VmConfig {
        VmConfig {
            accel: Accel::Tcg,
            mem_mib: 512,
            cpus: 2,
            kernel: "/k/vmlinux".into(),
            root_image: "/c/root.ext2".into(),
            disks: vec![DiskAttach {
                image: "/c/src.ext2".into(),
                serial: "src".into(),
                read_only: true,
                bypass_host_cache: true,
            }],
            shares: Vec::new(),
            channel,
            console_log: "/t/console.log".into(),
            quiet_kernel: true,
            extra_kernel_args: Vec::new(),
            sandbox: true,
            qmp_socket: Some("/t/qmp.sock".into()),
        }
    }

    #[test]
    fn host_io_errors_are_reported_never_a_pause_and_qmp_listens() {
        let argv = strings(&qemu_argv(&cfg(vhost_user())));
        let drives = values(&argv, "-drive");
        assert_eq!(drives.len(), 2);
        for d in drives {
            assert!(d.contains(",werror=report,rerror=report"), "{d}");
        }
        assert_eq!(
            values(&argv, "-qmp"),
            ["unix:/t/qmp.sock,server=on,wait=off"]
        );
        let mut c = cfg(vhost_user());
        c.qmp_socket = None;
        assert!(values(&strings(&qemu_argv(&c)), "-qmp").is_empty());
    }

    #[test]
    fn the_sandbox_is_on_with_every_deny_only_when_asked() {
        let argv = strings(&qemu_argv(&cfg(vhost_user())));
        let at = argv.iter().position(|a| a == "-sandbox").expect("-sandbox");
        assert_eq!(argv[at + 1], SANDBOX);
        for deny in ["obsolete", "elevateprivileges", "spawn", "resourcecontrol"] {
            assert!(SANDBOX.contains(&format!("{deny}=deny")), "{deny}");
        }
        let mut c = cfg(vhost_user());
        c.sandbox = false;
        assert!(!strings(&qemu_argv(&c)).iter().any(|a| a == "-sandbox"));
    }

    fn vhost_user() -> ChannelPlan {
        ChannelPlan::VhostUserVsock {
            cid: 7,
            backend_socket: "/t/vhost.sock".into(),
            uds: "/t/vsock".into(),
        }
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `flag`, for each occurrence.
    fn values(argv: &[String], flag: &str) -> Vec<String> {
        argv.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn commas_in_paths_are_doubled_in_option_values_but_not_in_the_serial_path() {
        let mut c = cfg(vhost_user());
        c.root_image = "/c,d/root.ext2".into();
        c.console_log = "/t,u/console.log".into();
        let argv: Vec<String> = qemu_argv(&c)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            argv.contains(
                &"id=root,file=/c,,d/root.ext2,format=raw,if=none,snapshot=on,werror=report,rerror=report".to_string()
            ),
            "{argv:?}"
        );
        assert!(
            argv.contains(&"file:/t,u/console.log".to_string()),
            "{argv:?}"
        );
    }

    #[test]
    fn cmdline_has_clean_exit_and_channel() {
        let line = kernel_cmdline(&cfg(vhost_user()));
        for want in [
            "reboot=t",
            "panic=-1",
            "root=/dev/vda",
            "console=ttyS0",
            "no_timer_check",
            "quiet",
        ] {
            assert!(line.split(' ').any(|w| w == want), "{want} in {line}");
        }
        assert!(line.ends_with("vmjob.channel=vsock:1024"));
        let serial = kernel_cmdline(&cfg(ChannelPlan::VirtioSerial {
            socket: "/t/s".into(),
        }));
        assert!(serial.ends_with("vmjob.channel=virtio-serial:vmjob"));
    }

    #[test]
    fn oopses_and_warnings_panic() {
        for quiet in [true, false] {
            let mut c = cfg(vhost_user());
            c.quiet_kernel = quiet;
            let line = kernel_cmdline(&c);
            let words: Vec<&str> = line.split(' ').collect();
            for want in ["oops=panic", "panic_on_warn=1", "panic=-1"] {
                assert!(words.contains(&want), "{want} in {line}");
            }
        }
    }

    #[test]
    fn user_kernel_args_come_last() {
        let mut c = cfg(vhost_user());
        c.extra_kernel_args = vec!["profile=2".into(), "quiet=0".into()];
        let line = kernel_cmdline(&c);
        assert!(
            line.ends_with("vmjob.channel=vsock:1024 profile=2 quiet=0"),
            "{line}"
        );
    }

    #[test]
    fn vhost_user_needs_shared_memory_backend() {
        let argv = strings(&qemu_argv(&cfg(vhost_user())));
        assert_eq!(values(&argv, "-M"), ["microvm,acpi=off,memory-backend=mem"]);
        assert_eq!(
            values(&argv, "-object"),
            ["memory-backend-memfd,id=mem,size=512M,share=on"]
        );
        assert_eq!(
            values(&argv, "-chardev"),
            ["socket,id=vsock,path=/t/vhost.sock"]
        );
        assert!(argv.contains(&"vhost-user-vsock-device,chardev=vsock".to_string()));
        assert!(argv.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn other_channels_use_plain_memory() {
        for channel in [
            ChannelPlan::VhostKernelVsock { cid: 9, port: 5000 },
            ChannelPlan::VirtioSerial {
                socket: "/t/s".into(),
            },
        ] {
            let argv = strings(&qemu_argv(&cfg(channel)));
            assert_eq!(values(&argv, "-M"), ["microvm,acpi=off"]);
            assert!(values(&argv, "-object").is_empty());
        }
        let argv = strings(&qemu_argv(&cfg(ChannelPlan::VhostKernelVsock {
            cid: 9,
            port: 5000,
        })));
        assert!(argv.contains(&"vhost-vsock-device,guest-cid=9".to_string()));
    }

    #[test]
    fn root_disk_comes_first_and_disks_carry_serials() {
        let argv = strings(&qemu_argv(&cfg(vhost_user())));
        assert_eq!(
            values(&argv, "-drive"),
            [
                "id=root,file=/c/root.ext2,format=raw,if=none,snapshot=on,werror=report,rerror=report",
                "id=disk0,file=/c/src.ext2,format=raw,if=none,werror=report,rerror=report,readonly=on,cache=none,aio=threads"
            ]
        );
        let devices = values(&argv, "-device");
        assert_eq!(
            devices[0],
            "virtio-blk-device,drive=root,serial=root,num-queues=2"
        );
        assert_eq!(
            devices[1],
            "virtio-blk-device,drive=disk0,serial=src,num-queues=2"
        );
    }

    #[test]
    fn shares_are_9p_devices_with_their_tags_and_modes() {
        let mut c = cfg(ChannelPlan::VirtioSerial {
            socket: "/t/s".into(),
        });
        c.shares = vec![
            ShareAttach {
                host_dir: "/home/u/out,1".into(),
                tag: "share0".into(),
                read_only: false,
            },
            ShareAttach {
                host_dir: "/usr/bin".into(),
                tag: "share1".into(),
                read_only: true,
            },
        ];
        let argv = strings(&qemu_argv(&c));
        assert_eq!(
            values(&argv, "-fsdev"),
            [
                "local,id=share0,path=/home/u/out,,1,security_model=none",
                "local,id=share1,path=/usr/bin,security_model=none,readonly=on",
            ]
        );
        let devices = values(&argv, "-device");
        for d in [
            "virtio-9p-device,fsdev=share0,mount_tag=share0",
            "virtio-9p-device,fsdev=share1,mount_tag=share1",
        ] {
            assert!(devices.iter().any(|x| x == d), "{d} in {devices:?}");
        }
    }

    #[test]
    fn accelerator_selects_cpu_model() {
        let mut c = cfg(vhost_user());
        let argv = strings(&qemu_argv(&c));
        assert_eq!(values(&argv, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(values(&argv, "-cpu"), ["max"]);
        c.accel = Accel::Kvm;
        let argv = strings(&qemu_argv(&c));
        assert_eq!(values(&argv, "-accel"), ["kvm"]);
        assert_eq!(values(&argv, "-cpu"), ["host"]);
    }

    #[test]
    fn daemon_argv_and_host_socket_agree() {
        let ch = vhost_user();
        let argv = strings(&vsock_daemon_argv(&ch).unwrap());
        assert_eq!(
            argv,
            ["--vm", "guest-cid=7,socket=/t/vhost.sock,uds-path=/t/vsock"]
        );
        assert_eq!(ch.host_socket().unwrap(), PathBuf::from("/t/vsock_1024"));
        assert!(vsock_daemon_argv(&ChannelPlan::VhostKernelVsock { cid: 3, port: 5000 }).is_none());
    }
}
