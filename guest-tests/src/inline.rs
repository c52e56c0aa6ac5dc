//! Proof that IORING_OP_GETDENTS completes inline on warm directories.
//!
//! io_uring hands a request it cannot complete without sleeping to an io-wq worker, a
//! kernel thread named `iou-wrk-<tid>` after the task that submitted it, which shows up
//! in `/proc/self/task`. A thread that owns a fresh ring therefore has no such worker
//! until one of its requests was punted. The test reads warm directories on every test
//! filesystem through the op and checks that no worker appeared; then it drops the caches
//! and checks that a cold read, which must wait for the disk, does create one (so the
//! check can fail) and still returns exactly what getdents64(2) returns.

use crate::fixtures::{numbered, populate};
use crate::getdents::{compare, op_read, open_dir, parse, read_all, require_op, sys_read, Ring};
use crate::Test;
use anyhow::{bail, ensure, Context, Result};
use io_uring::{opcode, types};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use uring_getdents::{DirFd, Getdents};

/// The inline tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "getdents_inline_when_warm",
            needs: crate::with_ext4!("cpus=2 mem=1024 timeout=1500"),
            run: inline_when_warm,
        },
        Test {
            name: "getdents_inline_not_cut_short_by_task_work",
            needs: "",
            run: not_cut_short_by_task_work,
        },
    ]
}

/// An inline read must fill the buffer even when io_uring task work is pending for
/// the submitter (it is, whenever a completion of another request was queued to the
/// task: TIF_NOTIFY_SIGNAL, which `signal_pending()` also reports). Made deterministic
/// by one submission of two entries: a WRITE to a pipe that a READ of ours waits on
/// (the pipe's wake-up queues that READ's completion as task work), then the GETDENTS.
fn not_cut_short_by_task_work() -> Result<()> {
    require_op()?;
    let dir = Path::new("/tmp/task-work");
    populate(dir, 300, numbered)?;
    let fd = open_dir(dir)?;
    let mut want = vec![0u8; 4096];
    let n = uring_getdents::getdents64(fd.as_fd(), &mut want).context("getdents64")?;
    let want = parse(&want[..n])?;
    nix::unistd::lseek(fd.as_raw_fd(), 0, nix::unistd::Whence::SeekSet)?;

    let (pipe_r, pipe_w) = nix::unistd::pipe().context("pipe")?;
    let mut ring = io_uring::IoUring::new(8).context("io_uring_setup")?;
    let mut byte = [0u8; 1];
    let mut buf = vec![0u8; 4096];
    let read = opcode::Read::new(types::Fd(pipe_r.as_raw_fd()), byte.as_mut_ptr(), 1)
        .build()
        .user_data(1);
    let write = opcode::Write::new(types::Fd(pipe_w.as_raw_fd()), b"x".as_ptr(), 1)
        .build()
        .user_data(2);
    let getdents = Getdents::new(DirFd::Fd(fd.as_raw_fd()), buf.as_mut_ptr(), 4096)
        .build()
        .user_data(3);
    // SAFETY: the pipe byte, the buffer and the descriptors outlive the ring's use of
    // them: every completion is waited for below before they go out of scope.
    unsafe { ring.submission().push(&read).ok().context("SQ full")? };
    ring.submit().context("submitting the READ")?;
    // SAFETY: as above.
    unsafe {
        ring.submission().push(&write).ok().context("SQ full")?;
        ring.submission().push(&getdents).ok().context("SQ full")?;
    }
    ring.submit_and_wait(3)
        .context("submitting WRITE and GETDENTS")?;
    let mut got = None;
    let mut seen = 0;
    while seen < 3 {
        for cqe in ring.completion() {
            seen += 1;
            ensure!(
                cqe.result() >= 0,
                "request {} failed: {}",
                cqe.user_data(),
                std::io::Error::from_raw_os_error(-cqe.result())
            );
            if cqe.user_data() == 3 {
                got = Some(cqe.result());
            }
        }
        if seen < 3 {
            ring.submit_and_wait(1)?;
        }
    }
    let n = got.context("no GETDENTS completion")?;
    let got = parse(&buf[..n as usize])?;
    ensure!(
        got == want,
        "with task work pending the op read {} records into 4 KiB, getdents64(2) {}",
        got.len(),
        want.len()
    );
    Ok(())
}

/// `FS_IOC_GETFLAGS`' bit for a directory stored as a hash tree (ext2/3/4 `INDEX_FL`).
const FS_INDEX_FL: libc::c_long = 0x1000;

/// Directory sizes read on every filesystem: one block, a few blocks, and 100k entries
/// (a multi-level hash tree where dir_index is on; see [`crate::entries_on`] for the
/// linear ext4).
const SIZES: [usize; 3] = [10, 1000, 100_000];

/// [`SIZES`], except on the debug kernel (lockdep and KASAN make creating 100 000 files
/// on four filesystems outlast the test's timeout under TCG): 20 000 entries there, still
/// a hash tree of many blocks where dir_index is on, which is what the debug run is for
/// (sleeping or touching memory where the non-blocking path must not).
fn sizes() -> [usize; 3] {
    if Path::new("/proc/lockdep").exists() {
        [SIZES[0], SIZES[1], 20_000]
    } else {
        SIZES
    }
}

fn inline_when_warm() -> Result<()> {
    require_op()?;
    let mut dirs = Vec::new();
    for (label, base) in crate::TEST_FILESYSTEMS {
        for n in sizes() {
            let n = crate::entries_on(base, n);
            let dir = Path::new(base).join(format!("inline-{n}"));
            populate(&dir, n, numbered)?;
            dirs.push((label, dir, n));
        }
    }
    check_layout()?;
    // A thread of its own, so that no request another part of this program made (the
    // detection at startup reads a cold directory) has already created a worker.
    std::thread::scope(|s| {
        s.spawn(|| read_on_fresh_thread(&dirs))
            .join()
            .map_err(|_| anyhow::anyhow!("the reading thread panicked"))?
    })
}

/// The fast path must be tested on both ext4 layouts: the largest directory is a hash
/// tree on `/mnt/ext4` and linear on `/mnt/nodx`.
fn check_layout() -> Result<()> {
    for (base, want_index) in [("/mnt/ext4", true), ("/mnt/nodx", false)] {
        let dir = Path::new(base).join(format!("inline-{}", crate::entries_on(base, sizes()[2])));
        let indexed = inode_flags(&dir)? & FS_INDEX_FL != 0;
        ensure!(
            indexed == want_index,
            "{}: hash-tree flag is {indexed}, expected {want_index}",
            dir.display()
        );
    }
    Ok(())
}

fn inode_flags(dir: &Path) -> Result<libc::c_long> {
    let fd = open_dir(dir)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("FS_IOC_GETFLAGS on {}", dir.display()));
    }
    Ok(flags)
}

fn read_on_fresh_thread(dirs: &[(&str, PathBuf, usize)]) -> Result<()> {
    let workers_before = io_workers()?;
    ensure!(
        workers_before == 0,
        "a new thread already has {workers_before} io-wq workers"
    );
    let mut ring = Ring::new(8)?;
    for (label, dir, n) in dirs {
        warm(dir)?;
        for bufsize in [4096, 32 * 1024] {
            let entries = compare(&mut ring, dir, bufsize)?;
            ensure!(entries == n + 2, "{}: {entries} entries", dir.display());
            let workers = io_workers()?;
            if workers != 0 {
                bail!(
                    "{label}: reading the warm {} ({n} entries, {bufsize}-byte buffer) \
                     through the op created {workers} io-wq workers: it was not completed inline",
                    dir.display()
                );
            }
        }
    }
    println!(
        "warm: {} directories read inline, no io-wq worker",
        dirs.len()
    );

    sync_and_drop_caches()?;
    for (label, dir, n) in dirs.iter().filter(|(label, _, _)| *label != "tmpfs") {
        let from_op = {
            let fd = open_dir(dir)?;
            read_all(op_read(&mut ring, &fd), 32 * 1024)?.0
        };
        let from_syscall = {
            let fd = open_dir(dir)?;
            read_all(sys_read(&fd), 32 * 1024)?.0
        };
        if from_op != from_syscall {
            let first = from_op
                .iter()
                .zip(&from_syscall)
                .position(|(a, b)| a != b)
                .unwrap_or(from_op.len().min(from_syscall.len()));
            bail!(
                "{label}: cold {} ({n} entries): the op read {} records, getdents64 {}; \
                 first difference at #{first}: {:?} vs {:?}",
                dir.display(),
                from_op.len(),
                from_syscall.len(),
                from_op.get(first),
                from_syscall.get(first)
            );
        }
    }
    let workers = io_workers()?;
    ensure!(
        workers > 0,
        "cold reads on disk filesystems created no io-wq worker: either the caches were not \
         dropped or the worker check cannot see punted requests"
    );
    println!("cold: entries identical to getdents64, {workers} io-wq worker(s) as expected");
    Ok(())
}

/// Reads `dir` once with getdents64(2), so its blocks are in the cache and its atime is
/// recent enough that relatime will not ask the op to update it.
fn warm(dir: &Path) -> Result<()> {
    let fd = open_dir(dir)?;
    read_all(sys_read(&fd), 32 * 1024)?;
    Ok(())
}

fn sync_and_drop_caches() -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").context("writing drop_caches")
}

/// Counts the io-wq workers of the calling thread: kernel threads in this process named
/// `iou-wrk-<tid>` after it.
fn io_workers() -> Result<usize> {
    // SAFETY: gettid(2) takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let want = format!("iou-wrk-{tid}");
    let mut count = 0;
    for task in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let comm_path = task?.path().join("comm");
        // A worker that exits between the listing and the read is not counted.
        let Ok(comm) = std::fs::read_to_string(&comm_path) else {
            continue;
        };
        if comm.trim_end() == want {
            count += 1;
        }
    }
    Ok(count)
}
