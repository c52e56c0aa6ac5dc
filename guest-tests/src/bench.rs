//! `guest-tests bench-getdents [ENTRIES] [ROUNDS]`: entries per second reading one large
//! directory through IORING_OP_GETDENTS versus getdents64(2), in the same VM run.
//!
//! Each variant reads the whole directory ROUNDS times (one request at a time, as a
//! directory walker does), alternating variants so drift affects both alike.

use anyhow::{ensure, Context, Result};
use io_uring::IoUring;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{Duration, Instant};
use uring_getdents::{getdents64, DirFd, DirentIter, Getdents};

use crate::getdents::open_dir;

fn count(buf: &[u8]) -> usize {
    DirentIter::new(buf).count()
}

fn via_syscall(dir: &Path, buf: &mut [u8]) -> Result<usize> {
    let fd = open_dir(dir)?;
    let mut n = 0;
    loop {
        let got = getdents64(fd.as_fd(), buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += count(&buf[..got]);
    }
}

fn via_op(ring: &mut IoUring, dir: &Path, buf: &mut [u8]) -> Result<usize> {
    let fd = open_dir(dir)?;
    let mut n = 0;
    loop {
        let sqe = Getdents::new(
            DirFd::Fd(fd.as_raw_fd()),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .build();
        // SAFETY: `buf` and `fd` outlive the request, which completes before the next loop.
        unsafe { ring.submission().push(&sqe).ok().context("SQ full")? };
        ring.submit_and_wait(1)?;
        let res = ring.completion().next().context("no completion")?.result();
        ensure!(
            res >= 0,
            "getdents op: {}",
            std::io::Error::from_raw_os_error(-res)
        );
        if res == 0 {
            return Ok(n);
        }
        n += count(&buf[..res as usize]);
    }
}

fn is_mount_point(mounts: &str, path: &str) -> bool {
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(path))
}

/// Entry point of the subcommand.
pub fn main(args: &[String]) -> Result<()> {
    let entries: usize = args
        .first()
        .map_or(Ok(100_000), |a| a.parse())
        .context("ENTRIES")?;
    let rounds: usize = args
        .get(1)
        .map_or(Ok(20), |a| a.parse())
        .context("ROUNDS")?;
    ensure!(
        uring_getdents::detect().is_available(),
        "IORING_OP_GETDENTS not available: {:?}",
        uring_getdents::detect()
    );
    let mut ring = IoUring::new(8)?;
    println!("| filesystem | entries | buffer | getdents64(2) entries/s | IORING_OP_GETDENTS entries/s | op / syscall |");
    println!("|---|--:|--:|--:|--:|--:|");
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    // The ext4 scratch disks take part when the VM has them (`run-in-vm --scratch`).
    let filesystems = crate::TEST_FILESYSTEMS
        .into_iter()
        .filter(|(_, base)| matches!(*base, "/tmp" | "/root") || is_mount_point(&mounts, base));
    for (fs, base) in filesystems {
        let dir = &Path::new(base).join("bench-getdents");
        std::fs::create_dir_all(dir)?;
        let entries = crate::entries_on(base, entries);
        for i in 0..entries {
            std::fs::File::create(dir.join(format!("f{i:07}")))?;
        }
        for bufsize in [4096usize, 32 * 1024] {
            let mut buf = vec![0u8; bufsize];
            let (mut t_sys, mut t_op) = (Duration::ZERO, Duration::ZERO);
            let mut total = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                let a = via_syscall(dir, &mut buf)?;
                t_sys += t.elapsed();
                let t = Instant::now();
                let b = via_op(&mut ring, dir, &mut buf)?;
                t_op += t.elapsed();
                ensure!(a == b && a == entries + 2, "counts differ: {a} vs {b}");
                total += a;
            }
            let sys_rate = total as f64 / t_sys.as_secs_f64();
            let op_rate = total as f64 / t_op.as_secs_f64();
            println!(
                "| {fs} | {entries} | {} KiB | {:.0} | {:.0} | {:.2} |",
                bufsize / 1024,
                sys_rate,
                op_rate,
                op_rate / sys_rate
            );
        }
    }
    Ok(())
}
