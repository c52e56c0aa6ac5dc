//! Checks of the VM itself: what PID 1 set up and what the kernel offers.

use crate::Test;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The VM tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "vm_mounts",
            needs: "",
            run: mounts,
        },
        Test {
            name: "vm_job_environment",
            needs: "",
            run: job_environment,
        },
        Test {
            name: "vm_io_uring",
            needs: "",
            run: io_uring_works,
        },
        Test {
            name: "vm_vsock",
            needs: "",
            run: vsock_present,
        },
        Test {
            name: "vm_drop_caches",
            needs: "",
            run: drop_caches,
        },
        Test {
            name: "vm_orphans_reaped",
            needs: "",
            run: orphans_reaped,
        },
        Test {
            name: "vm_smp",
            needs: "cpus=2",
            run: smp,
        },
        Test {
            name: "vm_kernel_symbols",
            needs: "",
            run: kernel_symbols,
        },
        Test {
            name: "vm_loopback",
            needs: "",
            run: loopback,
        },
        Test {
            name: "vm_tracefs_debugfs_cgroup2",
            needs: "",
            run: kernel_developer_filesystems,
        },
    ]
}

/// 127.0.0.1 works: a TCP connection over the loopback carries bytes both ways.
fn loopback() -> Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let client = std::thread::spawn(move || -> Result<Vec<u8>> {
        let mut c = std::net::TcpStream::connect(addr).context("connecting to 127.0.0.1")?;
        c.write_all(b"ping")?;
        let mut back = Vec::new();
        c.read_to_end(&mut back)?;
        Ok(back)
    });
    let (mut server, _) = listener.accept()?;
    let mut got = [0u8; 4];
    server.read_exact(&mut got)?;
    ensure!(&got == b"ping", "server got {got:?}");
    server.write_all(b"pong")?;
    drop(server);
    let back = client
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    ensure!(back == b"pong", "client got {back:?}");
    Ok(())
}

/// debugfs, tracefs and cgroup2 are mounted and work: a trace marker written through
/// tracefs shows in the trace, and a cgroup can be made and removed.
fn kernel_developer_filesystems() -> Result<()> {
    let table = std::fs::read_to_string("/proc/mounts").context("/proc/mounts")?;
    for (dir, fs) in [
        ("/sys/kernel/debug", "debugfs"),
        ("/sys/kernel/tracing", "tracefs"),
        ("/sys/fs/cgroup", "cgroup2"),
    ] {
        ensure!(
            table
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(dir)
                    && l.split_whitespace().nth(2) == Some(fs)),
            "{fs} not on {dir}; /proc/mounts:\n{table}"
        );
    }
    let marker = format!("guest-tests marker {}", std::process::id());
    std::fs::write("/sys/kernel/tracing/trace_marker", &marker).context("writing trace_marker")?;
    let trace = std::fs::read_to_string("/sys/kernel/tracing/trace").context("reading trace")?;
    ensure!(trace.contains(&marker), "marker not in the trace:\n{trace}");
    let group = Path::new("/sys/fs/cgroup/guest-tests");
    std::fs::create_dir(group).context("creating a cgroup")?;
    let procs = group.join("cgroup.procs").exists();
    std::fs::remove_dir(group).context("removing the cgroup")?;
    ensure!(procs, "the new cgroup has no cgroup.procs");
    Ok(())
}

/// A panic's or splat's backtrace in the console log must name functions: the kernel
/// keeps its symbol table (CONFIG_KALLSYMS), with the series' own functions where the
/// kernel has the op.
fn kernel_symbols() -> Result<()> {
    let syms = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let mut wanted = vec!["__x64_sys_getdents64"];
    if uring_getdents::detect().is_available() {
        wanted.extend(["vfs_getdents", "io_getdents"]);
    }
    for want in wanted {
        ensure!(
            syms.lines()
                .any(|l| l.split_whitespace().nth(2) == Some(want)),
            "/proc/kallsyms has no {want}"
        );
    }
    Ok(())
}

fn mounts() -> Result<()> {
    let table = std::fs::read_to_string("/proc/mounts").context("/proc/mounts")?;
    let have: Vec<(&str, &str)> = table
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let _src = w.next()?;
            Some((w.next()?, w.next()?))
        })
        .collect();
    for want in [
        ("/", "ext2"),
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "devtmpfs"),
        ("/dev/pts", "devpts"),
        ("/tmp", "tmpfs"),
        ("/dev/shm", "tmpfs"),
        ("/run", "tmpfs"),
    ] {
        ensure!(
            have.contains(&want),
            "{want:?} not mounted; /proc/mounts:\n{table}"
        );
    }
    // The root is writable (per-VM overlay), /tmp is sticky and world-writable.
    std::fs::write("/root/.probe", b"x").context("root filesystem is not writable")?;
    std::fs::remove_file("/root/.probe")?;
    use std::os::unix::fs::PermissionsExt;
    for dir in ["/tmp", "/dev/shm"] {
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
        ensure!(mode == 0o1777, "{dir} mode {mode:o}");
    }
    // POSIX shared memory works: what shm_open does, a file in /dev/shm, mapped.
    let shm = std::fs::File::create_new("/dev/shm/vm_mounts.probe")
        .context("creating a POSIX shared memory object")?;
    shm.set_len(4096)?;
    std::fs::remove_file("/dev/shm/vm_mounts.probe")?;
    let name = nix::unistd::gethostname().context("gethostname")?;
    ensure!(name == "microvm", "host name {name:?}");
    Ok(())
}

fn job_environment() -> Result<()> {
    let init = std::fs::read("/proc/1/cmdline")?;
    ensure!(
        init.starts_with(b"/sbin/init"),
        "PID 1 is {:?}",
        String::from_utf8_lossy(&init)
    );
    let me = nix::unistd::getpid();
    ensure!(
        nix::unistd::getsid(None)? == me,
        "job is not a session leader"
    );
    ensure!(
        nix::unistd::getpgrp() == me,
        "job is not a process-group leader"
    );
    let stdin = std::fs::read_link("/proc/self/fd/0")?;
    ensure!(
        stdin == std::path::Path::new("/dev/null"),
        "stdin is {}",
        stdin.display()
    );
    let status = std::fs::read_to_string("/proc/self/status")?;
    // Everything must be as a fresh process gets it, except SIGPIPE (bit 12), which the
    // Rust runtime of this very program ignores before main whatever PID 1 left. It
    // cannot be seen from here at all: a child spawned through std::process gets it
    // reset to the default by std, one forked without std inherits this runtime's
    // SIG_IGN. host-runner's end-to-end tests check it on a job that is busybox itself
    // (a_busybox_job_starts_with_default_signal_state).
    for (field, allowed) in [("SigBlk:", 0u64), ("SigIgn:", 1 << (libc::SIGPIPE - 1))] {
        let v = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .context(field)?
            .trim();
        let mask = u64::from_str_radix(v, 16).with_context(|| format!("{field} {v}"))?;
        ensure!(
            mask & !allowed == 0,
            "{field} {v}: the job inherited PID 1's signal state"
        );
    }
    ensure!(
        std::env::var("PATH").is_ok_and(|p| p.contains("/bin")),
        "PATH not set"
    );
    Ok(())
}

fn io_uring_works() -> Result<()> {
    use io_uring::{opcode, types, IoUring, Probe};
    let mut ring = IoUring::new(8).context("io_uring_setup")?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .context("IORING_REGISTER_PROBE")?;
    for (name, op) in [
        ("NOP", opcode::Nop::CODE),
        ("OPENAT", opcode::OpenAt::CODE),
        ("READ", opcode::Read::CODE),
        ("STATX", opcode::Statx::CODE),
        ("CLOSE", opcode::Close::CODE),
    ] {
        ensure!(probe.is_supported(op), "probe: {name} unsupported");
    }
    // A real read through the ring must return what read(2) returns.
    let expected = std::fs::read("/proc/version")?;
    let file = std::fs::File::open("/proc/version")?;
    let mut buf = vec![0u8; 4096];
    let fd = types::Fd(std::os::fd::AsRawFd::as_raw_fd(&file));
    let sqe = opcode::Read::new(fd, buf.as_mut_ptr(), buf.len() as u32)
        .build()
        .user_data(42);
    // SAFETY: the kernel may write to `buf` until this request's completion is reaped.
    // The loop below lets go of `buf` only after that completion, and leaks it where it
    // cannot wait for it (the descriptor is safe to close: the request holds its own
    // reference to the file).
    unsafe { ring.submission().push(&sqe).context("queue full")? };
    let result = match uring_getdents::wait_for(&mut ring, 42) {
        Ok(result) => result,
        Err(e) => {
            // Submitted or not is unknown: the read may still land in `buf` later.
            std::mem::forget(buf);
            return Err(e).context("io_uring_enter");
        }
    };
    ensure!(
        result >= 0,
        "read failed: {}",
        std::io::Error::from_raw_os_error(-result)
    );
    ensure!(
        buf[..result as usize] == expected[..],
        "io_uring read differs from read(2)"
    );
    Ok(())
}

fn vsock_present() -> Result<()> {
    // The virtio vsock device exists and gave us a CID: that is the job channel.
    let dev = std::fs::File::open("/dev/vsock").context("/dev/vsock")?;
    let mut cid: u32 = 0;
    // IOCTL_VM_SOCKETS_GET_LOCAL_CID = _IO(7, 0xb9)
    let req = libc::Ioctl::try_from(0x7b9u64).unwrap_or_default();
    // SAFETY: the ioctl writes one u32 into `cid`, which lives across the call.
    let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&dev), req, &mut cid) };
    ensure!(
        rc == 0,
        "GET_LOCAL_CID: {}",
        std::io::Error::last_os_error()
    );
    ensure!(cid >= 3, "guest CID {cid} is reserved");
    Ok(())
}

fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").context("writing drop_caches")?;
    Ok(())
}

fn zombies_of_init() -> Result<Vec<String>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut w = rest.split_whitespace();
        if let (Some("Z"), Some("1")) = (w.next(), w.next()) {
            found.push(stat);
        }
    }
    Ok(found)
}

fn orphans_reaped() -> Result<()> {
    use nix::unistd::{fork, ForkResult};
    // Double fork: the grandchild outlives its parent, is re-parented to PID 1 and exits.
    // SAFETY: single-threaded program; the children only call async-signal-safe functions.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: as above.
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                std::thread::sleep(Duration::from_millis(100));
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) };
            }
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(0) };
        }
        ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    std::thread::sleep(Duration::from_millis(300));
    loop {
        let z = zombies_of_init()?;
        if z.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("zombies left for PID 1: {z:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn smp() -> Result<()> {
    let n = std::thread::available_parallelism()?.get();
    ensure!(n >= 2, "expected at least 2 CPUs online, got {n}");
    Ok(())
}
