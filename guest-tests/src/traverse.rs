//! traverse's three engines against du -bs and find, inside the VM on the patched
//! kernel (where the uring engine reads directories with IORING_OP_GETDENTS).

use crate::Test;
use anyhow::{ensure, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The traverse tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "traverse_mixed_tree_ext2_and_tmpfs",
            needs: "",
            run: mixed,
        },
        Test {
            name: "traverse_100k_entries",
            needs: "mem=1024 timeout=900",
            run: wide,
        },
        Test {
            name: "traverse_depth_5000",
            needs: "timeout=900",
            run: deep,
        },
        Test {
            name: "traverse_unreadable_directory",
            needs: "",
            run: unreadable,
        },
        Test {
            name: "traverse_concurrent_engines_on_2_cpus",
            needs: "cpus=2",
            run: two_cpus,
        },
        Test {
            name: "traverse_tree_changing_during_walk",
            needs: "cpus=2 timeout=600",
            run: changing,
        },
        Test {
            name: "traverse_uring_engine_with_io_uring_disabled",
            needs: "",
            run: io_uring_disabled,
        },
        Test {
            name: "traverse_cold_cache_ext2_2_cpus",
            needs: "cpus=2 mem=1024 timeout=900",
            run: cold,
        },
        Test {
            // Without the op the uring engine lists with getdents64 on its own threads.
            name: "traverse_cold_cache_stock_kernel",
            needs: "cpus=2 mem=1024 timeout=900 kernel=stock",
            run: cold_stock,
        },
    ]
}

const ENGINES: [&str; 3] = ["sync", "tokio", "uring"];

fn as_user(cmd: &mut Command, nobody: bool) -> &mut Command {
    if nobody {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// (files, bytes, exit status) from du -bs and find.
fn reference(path: &Path, nobody: bool) -> Result<(u64, u64, Option<i32>)> {
    let du = as_user(Command::new("/usr/bin/du").arg("-bs").arg(path), nobody)
        .output()
        .context("du")?;
    let bytes = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .context("du output")?;
    let find = as_user(Command::new("find").arg(path).args(["-type", "f"]), nobody)
        .output()
        .context("find")?;
    let files = find.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    Ok((files, bytes, du.status.code()))
}

fn traverse(engine: &str, path: &Path, nobody: bool) -> Result<(u64, u64, Option<i32>, String)> {
    run_traverse(as_user(
        Command::new("/bin/traverse")
            .args(["--engine", engine])
            .arg(path),
        nobody,
    ))
}

/// Runs a prepared traverse command: (files, bytes, exit status, stderr).
fn run_traverse(cmd: &mut Command) -> Result<(u64, u64, Option<i32>, String)> {
    let out = cmd.output().context("traverse")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (f, rest) = text
        .trim()
        .split_once(" files, ")
        .context("traverse output")?;
    let b = rest.strip_suffix(" bytes").context("traverse output")?;
    Ok((
        f.parse()?,
        b.parse()?,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn check_all(path: &Path, nobody: bool) -> Result<()> {
    let (files, bytes, status) = reference(path, nobody)?;
    for engine in ENGINES {
        let (f, b, s, err) = traverse(engine, path, nobody)?;
        ensure!(
            (f, b, s) == (files, bytes, status),
            "{engine} on {}: traverse {f} files {b} bytes status {s:?}, du/find {files} files {bytes} bytes status {status:?}; stderr: {err}",
            path.display()
        );
    }
    // The image's uring engine must really use the op here.
    ensure!(
        uring_getdents::detect().is_available(),
        "IORING_OP_GETDENTS not detected"
    );
    Ok(())
}

fn build_mixed(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join("a/b/c"))?;
    std::fs::create_dir_all(root.join("empty"))?;
    std::fs::write(root.join("a/one"), b"1")?;
    std::fs::write(root.join("a/big"), vec![0u8; 100_000])?;
    std::fs::write(root.join("a/empty-file"), b"")?;
    std::fs::hard_link(root.join("a/big"), root.join("a/b/big-link"))?;
    std::fs::hard_link(root.join("a/big"), root.join("a/b/c/big-link2"))?;
    std::os::unix::fs::symlink("one", root.join("a/to-file"))?;
    std::os::unix::fs::symlink("../empty", root.join("a/to-dir"))?;
    std::os::unix::fs::symlink("nowhere", root.join("a/dangling"))?;
    std::os::unix::fs::symlink("loop2", root.join("a/loop1"))?;
    std::os::unix::fs::symlink("loop1", root.join("a/loop2"))?;
    std::fs::File::create(root.join("a/sparse"))?.set_len(30_000_000)?;
    nix::unistd::mkfifo(
        &root.join("a/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    std::fs::write(root.join(std::ffi::OsStr::new("a/caf\u{e9}")), b"xyz")?;
    std::fs::write(
        root.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"a/\xff\xfe")),
        b"ab",
    )?;
    std::fs::write(root.join("x".repeat(255)), b"long")?;
    Ok(())
}

fn mixed() -> Result<()> {
    for base in ["/root/tv-mixed", "/tmp/tv-mixed"] {
        let root = Path::new(base);
        build_mixed(root)?;
        check_all(root, false)?;
    }
    Ok(())
}

fn wide() -> Result<()> {
    let dir = Path::new("/root/tv-wide");
    std::fs::create_dir_all(dir)?;
    for i in 0..100_000 {
        std::fs::File::create(dir.join(format!("f{i:06}")))?;
    }
    check_all(dir, false)
}

fn deep() -> Result<()> {
    let top = Path::new("/root/tv-deep");
    std::fs::create_dir_all(top)?;
    // Built relative to descriptors: the full path is beyond PATH_MAX.
    let mut fd = nix::fcntl::open(
        top,
        nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )?;
    for _ in 0..5000 {
        nix::sys::stat::mkdirat(
            Some(fd),
            "d",
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )?;
        let f = nix::fcntl::openat(
            Some(fd),
            "f",
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )?;
        // SAFETY: `f` was just opened and is closed only after this write.
        nix::unistd::write(unsafe { std::os::fd::BorrowedFd::borrow_raw(f) }, b"abc")?;
        nix::unistd::close(f)?;
        let next = nix::fcntl::openat(
            Some(fd),
            "d",
            nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?;
        nix::unistd::close(fd)?;
        fd = next;
    }
    nix::unistd::close(fd)?;
    check_all(top, false)
}

fn unreadable() -> Result<()> {
    let root = Path::new("/tmp/tv-locked");
    std::fs::create_dir_all(root.join("ok"))?;
    std::fs::create_dir_all(root.join("locked"))?;
    std::fs::write(root.join("ok/a"), b"0123456789")?;
    std::fs::write(root.join("locked/secret"), vec![1u8; 1000])?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(root.join("ok"), std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000))?;
    check_all(root, true)?;
    let (_, _, status, err) = traverse("uring", root, true)?;
    ensure!(
        status == Some(1) && err.contains("cannot read directory"),
        "status {status:?}, stderr {err}"
    );
    Ok(())
}

fn two_cpus() -> Result<()> {
    let root = Path::new("/root/tv-cpus");
    for i in 0..50 {
        let d = root.join(format!("d{i}"));
        std::fs::create_dir_all(&d)?;
        for j in 0..200 {
            std::fs::write(d.join(format!("f{j}")), vec![0u8; j])?;
        }
    }
    for _ in 0..5 {
        check_all(root, false)?;
    }
    Ok(())
}

/// Subtrees appear and vanish while every engine walks (the uring engine also with
/// every directory read through IORING_OP_GETDENTS, TRAVERSE_RING_STAT): entries gone
/// before their stat, directories removed after their open. Each walk must end with
/// status 0 and no message, counting the stable part and at most all of the churn.
fn changing() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    const SUBTREES: usize = 20;
    const FILES: usize = 5;
    let root = Path::new("/root/tv-changing");
    for d in 0..20 {
        let dir = root.join(format!("stable/d{d}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..20 {
            std::fs::write(dir.join(format!("f{f}")), b"stable")?;
        }
    }
    let stable = reference(&root.join("stable"), false)?.0;
    let churn = root.join("churn");
    std::fs::create_dir_all(&churn)?;
    let stop = AtomicBool::new(false);
    let variants: [(&str, bool); 4] = [
        ("sync", false),
        ("tokio", false),
        ("uring", false),
        ("uring", true),
    ];
    let runs = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..SUBTREES {
                    let sub = churn.join(format!("c{i}/inner"));
                    let _ = std::fs::create_dir_all(&sub);
                    for f in 0..FILES {
                        let _ = std::fs::write(sub.join(format!("x{f}")), b"churn");
                    }
                }
                for i in 0..SUBTREES {
                    let _ = std::fs::remove_dir_all(churn.join(format!("c{i}")));
                }
            }
        });
        let mut runs = Vec::new();
        for (engine, ring) in variants {
            for _ in 0..25 {
                let mut cmd = Command::new("/bin/traverse");
                cmd.args(["--engine", engine]).arg(root);
                if ring {
                    cmd.env("TRAVERSE_RING_STAT", "1");
                }
                runs.push((engine, ring, run_traverse(&mut cmd)));
            }
        }
        // Before any check: an early return would leave the churn running and the
        // scope waiting for it.
        stop.store(true, Ordering::Relaxed);
        runs
    });
    let mut met_churn = false;
    for (engine, ring, got) in runs {
        let (files, _, status, stderr) = got.with_context(|| format!("{engine} (ring {ring})"))?;
        ensure!(
            status == Some(0) && stderr.is_empty(),
            "{engine} (ring {ring}): status {status:?}, stderr: {stderr}"
        );
        ensure!(
            (stable..=stable + (SUBTREES * FILES) as u64).contains(&files),
            "{engine} (ring {ring}): {files} files, stable part {stable}"
        );
        met_churn |= files > stable;
    }
    ensure!(met_churn, "no walk met the churn");
    Ok(())
}

/// With io_uring refused by the kernel (as under some seccomp profiles) the uring
/// engine walks without it instead of failing. This VM is the test's own, so the
/// sysctl needs no restoring.
fn io_uring_disabled() -> Result<()> {
    let root = Path::new("/tmp/tv-no-uring");
    build_mixed(root)?;
    let (files, bytes, status) = reference(root, false)?;
    std::fs::write("/proc/sys/kernel/io_uring_disabled", b"2\n")
        .context("writing kernel.io_uring_disabled")?;
    ensure!(
        io_uring::IoUring::new(2).is_err(),
        "io_uring still works with io_uring_disabled=2"
    );
    let (f, b, s, err) = traverse("uring", root, false)?;
    ensure!(
        (f, b, s) == (files, bytes, status),
        "uring without io_uring: {f} files {b} bytes status {s:?}, du/find {files} files {bytes} bytes status {status:?}; stderr: {err}"
    );
    Ok(())
}

fn cold_stock() -> Result<()> {
    ensure!(
        !uring_getdents::detect().is_available(),
        "the stock kernel reports IORING_OP_GETDENTS"
    );
    cold()
}

/// Reads completed so far by the block device holding `path` (/sys/dev/block/M:m/stat).
fn disk_reads(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let stat_path = format!("/sys/dev/block/{major}:{minor}/stat");
    let stat = std::fs::read_to_string(&stat_path).with_context(|| stat_path.clone())?;
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{stat_path}: {stat:?}"))
}

/// Every engine on a tree read from the disk, caches dropped before each run: the uring
/// engine's cold path (stats through the ring, reserve walkers joining, work handed
/// between walkers while reads wait) must give du's and find's numbers too. The trees of
/// the other tests are all in the page cache when walked.
fn cold() -> Result<()> {
    let root = Path::new("/root/tv-cold");
    for a in 0..12 {
        for b in 0..25 {
            let d = root.join(format!("a{a}/b{b}"));
            std::fs::create_dir_all(&d)?;
            for f in 0..40 {
                std::fs::write(
                    d.join(format!("f{f}")),
                    vec![b'x'; (a * 7 + b * 3 + f) % 97],
                )?;
            }
        }
        std::fs::hard_link(
            root.join(format!("a{a}/b0/f0")),
            root.join(format!("a{a}/link")),
        )?;
    }
    let (files, bytes, status) = reference(root, false)?;
    for engine in ENGINES {
        nix::unistd::sync();
        std::fs::write("/proc/sys/vm/drop_caches", b"3\n").context("dropping caches")?;
        let reads_before = disk_reads(root)?;
        let (f, b, s, err) = traverse(engine, root, false)?;
        let reads = disk_reads(root)? - reads_before;
        ensure!(
            (f, b, s) == (files, bytes, status),
            "{engine} cold: {f} files {b} bytes status {s:?}, du/find {files} files {bytes} bytes status {status:?}; stderr: {err}"
        );
        // 300 directories and 12 000 inodes cannot come from the cache after the drop:
        // without this the test could silently turn into a warm one.
        ensure!(
            reads >= 100,
            "{engine}: only {reads} disk reads during the cold walk"
        );
    }
    Ok(())
}
