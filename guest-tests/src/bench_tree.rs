//! `guest-tests bench-getdents-tree DIR [ROUNDS] [DEPTH]`: reads every directory under
//! DIR on one thread, through a getdents64(2) loop and through IORING_OP_GETDENTS with up
//! to DEPTH requests per io_uring_enter(2), warm cache, and prints the ratio.
//!
//! This is the case the op exists for: a walk makes thousands of cheap directory reads,
//! and the ring turns two system calls per directory into a handful per batch, with no
//! thread hand-off when the reads complete inline. Both variants open the directories
//! (in batches the descriptor limit allows) before the clock starts and close them after
//! it stops, so the timed part is reading only; the rounds alternate variants so drift affects both alike.

use anyhow::{bail, ensure, Context, Result};
use io_uring::IoUring;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uring_getdents::{getdents64, DirFd, DirentIter, Getdents};

use crate::getdents::open_dir;

/// Buffer per directory read: large enough that most source directories fit in one.
const BUF_SIZE: usize = 32 * 1024;

/// Every directory under `root` (itself included), found once with std before timing.
fn directories(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let dir = dirs[i].clone();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        i += 1;
    }
    Ok(dirs)
}

fn open_all(dirs: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    dirs.iter().map(|d| open_dir(d)).collect()
}

/// One getdents64(2) loop per directory.
fn via_syscall(fds: &[OwnedFd], buf: &mut [u8]) -> Result<usize> {
    let mut entries = 0;
    for fd in fds {
        loop {
            let n = getdents64(fd.as_fd(), buf)?;
            if n == 0 {
                break;
            }
            entries += DirentIter::new(&buf[..n]).count();
        }
    }
    Ok(entries)
}

/// Up to `depth` directories in flight, one request each; a directory whose read
/// returned entries gets its next request in the same batch as new directories.
fn via_op(ring: &mut IoUring, fds: &[OwnedFd], bufs: &mut [Vec<u8>]) -> Result<usize> {
    let depth = bufs.len();
    // Slot k holds the index in `fds` of the directory its buffer is reading.
    let mut slot_dir: Vec<Option<usize>> = vec![None; depth];
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut next_dir = 0;
    let mut in_flight = 0;
    let mut entries = 0;
    let mut resubmit: Vec<usize> = Vec::with_capacity(depth);
    loop {
        for &slot in &resubmit {
            push(ring, fds, &mut bufs[slot], slot, slot_dir[slot])?;
        }
        in_flight += resubmit.len();
        resubmit.clear();
        while next_dir < fds.len() {
            let Some(slot) = free.pop() else { break };
            slot_dir[slot] = Some(next_dir);
            push(ring, fds, &mut bufs[slot], slot, slot_dir[slot])?;
            next_dir += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return Ok(entries);
        }
        ring.submit_and_wait(1).context("io_uring_enter")?;
        for cqe in ring.completion() {
            in_flight -= 1;
            let slot = cqe.user_data() as usize;
            let res = cqe.result();
            if res < 0 {
                bail!(
                    "getdents op on directory #{:?}: {}",
                    slot_dir[slot],
                    std::io::Error::from_raw_os_error(-res)
                );
            }
            if res == 0 {
                slot_dir[slot] = None;
                free.push(slot);
            } else {
                entries += DirentIter::new(&bufs[slot][..res as usize]).count();
                resubmit.push(slot);
            }
        }
    }
}

fn push(
    ring: &mut IoUring,
    fds: &[OwnedFd],
    buf: &mut [u8],
    slot: usize,
    dir: Option<usize>,
) -> Result<()> {
    let dir = dir.context("slot without a directory")?;
    let sqe = Getdents::new(
        DirFd::Fd(fds[dir].as_raw_fd()),
        buf.as_mut_ptr(),
        buf.len() as u32,
    )
    .build()
    .user_data(slot as u64);
    // SAFETY: the buffer and the descriptor outlive the request: `via_op` returns only
    // once every request it pushed has completed, and both belong to its caller.
    unsafe { ring.submission().push(&sqe).ok().context("SQ full")? };
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard one and returns how many
/// directories one batch may hold open (the rest is headroom for the ring and stdio).
fn raise_fd_limit() -> Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit into `lim`.
    ensure!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0,
        "getrlimit: {}",
        std::io::Error::last_os_error()
    );
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads one struct rlimit from `lim`.
    ensure!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0,
        "setrlimit: {}",
        std::io::Error::last_os_error()
    );
    let batch = (lim.rlim_cur as usize).saturating_sub(64).min(1 << 16);
    ensure!(batch > 0, "descriptor limit {} is too low", lim.rlim_cur);
    Ok(batch)
}

/// Reads every directory of `dirs` with `read`, opening at most `batch` of them at a
/// time; only the reading is timed.
fn timed(
    dirs: &[PathBuf],
    batch: usize,
    mut read: impl FnMut(&[OwnedFd]) -> Result<usize>,
) -> Result<(usize, Duration)> {
    let (mut entries, mut elapsed) = (0, Duration::ZERO);
    for chunk in dirs.chunks(batch) {
        let fds = open_all(chunk)?;
        let t = Instant::now();
        entries += read(&fds)?;
        elapsed += t.elapsed();
    }
    Ok((entries, elapsed))
}

/// Entry point of the subcommand.
pub fn main(args: &[String]) -> Result<()> {
    let root = PathBuf::from(
        args.first()
            .context("usage: bench-getdents-tree DIR [ROUNDS] [DEPTH]")?,
    );
    let rounds: usize = args
        .get(1)
        .map_or(Ok(10), |a| a.parse())
        .context("ROUNDS")?;
    let depth: usize = args.get(2).map_or(Ok(64), |a| a.parse()).context("DEPTH")?;
    ensure!(
        rounds > 0 && depth > 0,
        "ROUNDS and DEPTH must be at least 1"
    );
    ensure!(
        uring_getdents::detect().is_available(),
        "IORING_OP_GETDENTS not available: {:?}",
        uring_getdents::detect()
    );
    let dirs = directories(&root)?;
    let batch = raise_fd_limit()?;
    let mut ring = IoUring::new(depth.next_power_of_two() as u32).context("io_uring_setup")?;
    let mut buf = vec![0u8; BUF_SIZE];
    let mut bufs = vec![vec![0u8; BUF_SIZE]; depth];
    // Warm-up: both variants once, so every block is cached and atimes are current.
    let (want, _) = timed(&dirs, batch, |fds| via_syscall(fds, &mut buf))?;
    let (got, _) = timed(&dirs, batch, |fds| via_op(&mut ring, fds, &mut bufs))?;
    ensure!(
        got == want,
        "warm-up: the op read {got} entries, getdents64 {want}"
    );
    let (mut t_sys, mut t_op) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (a, t) = timed(&dirs, batch, |fds| via_syscall(fds, &mut buf))?;
        t_sys += t;
        let (b, t) = timed(&dirs, batch, |fds| via_op(&mut ring, fds, &mut bufs))?;
        t_op += t;
        ensure!(
            a == want && b == want,
            "entry counts changed: {a}, {b}, {want}"
        );
    }
    let per_round = |t: Duration| t.as_secs_f64() * 1e3 / rounds as f64;
    println!(
        "{} directories, {want} entries, {rounds} rounds, {} KiB buffers, {depth} requests in flight",
        dirs.len(),
        BUF_SIZE / 1024
    );
    println!("| reader | ms per tree | entries/s | vs getdents64 loop |");
    println!("|---|--:|--:|--:|");
    for (name, t) in [
        ("getdents64(2) loop", t_sys),
        ("IORING_OP_GETDENTS batched", t_op),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.2}x |",
            per_round(t),
            (want * rounds) as f64 / t.as_secs_f64(),
            t_sys.as_secs_f64() / t.as_secs_f64()
        );
    }
    Ok(())
}
