//! Conformance of IORING_OP_GETDENTS with getdents64(2), entry for entry.
//!
//! Every check reads the same directory through the op and through the system call and
//! compares the records (inode, d_off, type, name) and the per-call byte counts.

use crate::fixtures::{numbered, odd_names, populate};
use crate::Test;
use anyhow::{bail, ensure, Context, Result};
use io_uring::{opcode, squeue::Flags, types, IoUring};
use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uring_getdents::{getdents64, DirFd, DirentIter, Getdents, Support};

/// The conformance tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "getdents_detected",
            needs: "",
            run: detected,
        },
        Test {
            name: "getdents_same_as_syscall",
            needs: "",
            run: same_as_syscall,
        },
        Test {
            name: "getdents_100k_entries",
            needs: crate::with_ext4!("mem=1024 timeout=1500"),
            run: hundred_thousand,
        },
        Test {
            name: "getdents_buffer_sizes",
            needs: "",
            run: buffer_sizes,
        },
        Test {
            name: "getdents_rewind_and_eof",
            needs: "",
            run: rewind_and_eof,
        },
        Test {
            name: "getdents_errors",
            needs: "",
            run: errors,
        },
        Test {
            name: "getdents_fixed_file_and_link_chain",
            needs: "",
            run: fixed_and_linked,
        },
        Test {
            name: "getdents_concurrent_no_dup_no_gap",
            needs: crate::with_ext4!("cpus=2 timeout=900"),
            run: concurrent,
        },
        Test {
            name: "getdents_mixed_with_syscall_and_lseek",
            needs: crate::with_ext4!("cpus=2 timeout=900"),
            run: mixed_with_syscall,
        },
        Test {
            name: "getdents_entries_change_during_walk",
            needs: crate::with_ext4!("cpus=2 timeout=900"),
            run: mutation,
        },
        Test {
            name: "getdents_stock_kernel_unsupported",
            needs: "kernel=stock",
            run: stock_unsupported,
        },
    ]
}

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Rec {
    ino: u64,
    off: i64,
    d_type: u8,
    name: OsString,
}

pub(crate) fn parse(buf: &[u8]) -> Result<Vec<Rec>> {
    DirentIter::new(buf)
        .map(|r| {
            let e = r?;
            Ok(Rec {
                ino: e.ino,
                off: e.off,
                d_type: e.d_type,
                name: e.name().to_owned(),
            })
        })
        .collect()
}

/// Opens a directory for reading (std adds O_CLOEXEC).
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .with_context(|| format!("open {}", path.display()))
}

/// A ring with a helper to run one GETDENTS and wait for it.
pub(crate) struct Ring(IoUring);

impl Ring {
    pub(crate) fn new(entries: u32) -> Result<Self> {
        Ok(Ring(IoUring::new(entries).context("io_uring_setup")?))
    }

    fn submit_one(&mut self, sqe: io_uring::squeue::Entry) -> Result<i32> {
        // SAFETY: callers keep every buffer and descriptor the entry names alive until
        // this function returns, which is after the completion arrived.
        unsafe { self.0.submission().push(&sqe).ok().context("SQ full")? };
        self.0.submit_and_wait(1)?;
        let cqe = self.0.completion().next().context("no completion")?;
        Ok(cqe.result())
    }

    fn getdents(&mut self, dir: DirFd, buf: &mut [u8], flags: u32) -> Result<i32> {
        let sqe = Getdents::new(dir, buf.as_mut_ptr(), buf.len() as u32)
            .raw_flags(flags)
            .build();
        self.submit_one(sqe)
    }
}

/// Reads a whole directory through `read`, returning the records and per-call results;
/// fails if a call fails.
pub(crate) fn read_all(
    read: impl FnMut(&mut [u8]) -> Result<i32>,
    bufsize: usize,
) -> Result<(Vec<Rec>, Vec<i32>)> {
    let (recs, sizes) = read_until_end_or_error(read, bufsize)?;
    if let Some(&n) = sizes.last().filter(|&&n| n < 0) {
        bail!("read failed: {}", std::io::Error::from_raw_os_error(-n));
    }
    Ok((recs, sizes))
}

/// Reads until a call returns 0 or an error; the last result says which.
fn read_until_end_or_error(
    mut read: impl FnMut(&mut [u8]) -> Result<i32>,
    bufsize: usize,
) -> Result<(Vec<Rec>, Vec<i32>)> {
    let mut buf = vec![0u8; bufsize];
    let mut recs = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let n = read(&mut buf)?;
        sizes.push(n);
        if n <= 0 {
            return Ok((recs, sizes));
        }
        recs.extend(parse(&buf[..n as usize])?);
        ensure!(sizes.len() < 10_000_000, "directory read never ended");
    }
}

pub(crate) fn sys_read(fd: &OwnedFd) -> impl FnMut(&mut [u8]) -> Result<i32> + '_ {
    move |buf| {
        Ok(match getdents64(fd.as_fd(), buf) {
            Ok(n) => n as i32,
            Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
        })
    }
}

pub(crate) fn op_read<'a>(
    ring: &'a mut Ring,
    fd: &'a OwnedFd,
) -> impl FnMut(&mut [u8]) -> Result<i32> + 'a {
    move |buf| ring.getdents(DirFd::Fd(fd.as_raw_fd()), buf, 0)
}

/// Compares op and syscall on `dir` with `bufsize`, including the error a too-small
/// buffer gives; returns the number of entries.
pub(crate) fn compare(ring: &mut Ring, dir: &Path, bufsize: usize) -> Result<usize> {
    let sys_fd = open_dir(dir)?;
    let op_fd = open_dir(dir)?;
    // getdents64(2) stops early when signal_pending(), which includes the io_uring
    // task-work notification (TIF_NOTIFY_SIGNAL) this thread's ring may raise. Read the
    // reference on a thread that owns no ring so its chunking is deterministic.
    let (want, want_sizes) = std::thread::scope(|s| {
        s.spawn(|| read_until_end_or_error(sys_read(&sys_fd), bufsize))
            .join()
            .map_err(|_| anyhow::anyhow!("reference reader panicked"))?
    })?;
    let (got, got_sizes) = read_until_end_or_error(op_read(ring, &op_fd), bufsize)?;
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        bail!(
            "{} (buffer {bufsize}): op gave {} entries, getdents64 {}; first difference at #{first}: {:?} vs {:?}",
            dir.display(), got.len(), want.len(), got.get(first), want.get(first)
        );
    }
    // How the records are split into calls may differ: like getdents64(2), the op
    // stops after the first record when signal_pending(), and on the inline path that
    // includes io_uring's own task-work notification (TIF_NOTIFY_SIGNAL). What must
    // agree: the records, how the read ends (0, or -EINVAL where a record does not
    // fit), and that no call before the end came back empty.
    ensure!(
        got_sizes.last() == want_sizes.last(),
        "{}: the op ended with {:?}, getdents64 with {:?}",
        dir.display(),
        got_sizes.last(),
        want_sizes.last()
    );
    ensure!(
        got_sizes[..got_sizes.len() - 1].iter().all(|&n| n > 0),
        "{}: an op call before the end returned nothing: {got_sizes:?}",
        dir.display()
    );
    Ok(got.len())
}

pub(crate) fn require_op() -> Result<()> {
    match uring_getdents::detect() {
        Support::Available => Ok(()),
        other => bail!("IORING_OP_GETDENTS not available on the patched kernel: {other:?}"),
    }
}

fn detected() -> Result<()> {
    require_op()
}

/// Creates `dir` with `n` files named by `name(i)`.
fn same_as_syscall() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    let mut checked = Vec::new();
    for base in ["/root/gd", "/tmp/gd"] {
        let base = PathBuf::from(base);
        let empty = base.join("empty");
        std::fs::create_dir_all(&empty)?;
        ensure!(
            compare(&mut ring, &empty, 32 * 1024)? == 2,
            "empty dir must list . and .."
        );
        let one = base.join("one");
        populate(&one, 1, numbered)?;
        ensure!(compare(&mut ring, &one, 32 * 1024)? == 3);
        let thousand = base.join("thousand");
        populate(&thousand, 1000, numbered)?;
        ensure!(compare(&mut ring, &thousand, 32 * 1024)? == 1002);
        let odd = base.join("odd");
        let names = odd_names();
        populate(&odd, names.len(), |i| names[i].clone())?;
        ensure!(compare(&mut ring, &odd, 32 * 1024)? == names.len() + 2);
        // `.` and `..` are real entries with the right inodes.
        let fd = open_dir(&one)?;
        let (recs, _) = read_all(op_read(&mut ring, &fd), 4096)?;
        use std::os::unix::fs::MetadataExt;
        let dot = recs.iter().find(|r| r.name == ".").context("no .")?;
        let dotdot = recs.iter().find(|r| r.name == "..").context("no ..")?;
        ensure!(
            dot.ino == std::fs::metadata(&one)?.ino(),
            ". has the wrong inode"
        );
        ensure!(
            dotdot.ino == std::fs::metadata(&base)?.ino(),
            ".. has the wrong inode"
        );
        checked.push(base);
    }
    // procfs and sysfs generate entries on the fly; pick directories that do not change.
    for dir in [
        "/proc/self",
        "/proc/sys/vm",
        "/sys/kernel",
        "/sys/class",
        "/dev",
    ] {
        compare(&mut ring, Path::new(dir), 32 * 1024)?;
    }
    Ok(())
}

fn hundred_thousand() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    for (_, base) in crate::TEST_FILESYSTEMS {
        let dir = &Path::new(base).join("gd100k");
        let n = crate::entries_on(base, 100_000);
        populate(dir, n, numbered)?;
        ensure!(compare(&mut ring, dir, 32 * 1024)? == n + 2);
        ensure!(compare(&mut ring, dir, 4096)? == n + 2);
    }
    Ok(())
}

fn buffer_sizes() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    let dir = Path::new("/tmp/gd-sizes");
    // Names of every length from 1 to 40, so records of many sizes meet buffer edges.
    populate(dir, 40, |i| OsString::from("n".repeat(i + 1)))?;
    // The smallest record: 19-byte header + 1-char name + NUL, aligned to 8.
    // Below the largest record (64 bytes for a 40-char name) the read stops with
    // -EINVAL at that record, for the op exactly as for the syscall.
    for size in (24..=600).chain([4096, 65536]) {
        let n = compare(&mut ring, dir, size).with_context(|| format!("buffer of {size} bytes"))?;
        if size >= 64 {
            ensure!(n == 42, "buffer of {size} bytes listed {n} of 42 entries");
        }
    }
    // Exact fit and one byte short for the first record.
    let fd = open_dir(dir)?;
    let mut big = vec![0u8; 4096];
    let n = getdents64(fd.as_fd(), &mut big)?;
    let first = parse(&big[..n])?;
    // The parser's position after one record is that record's length.
    let mut records = DirentIter::new(&big[..n]);
    records.next().context("empty listing")??;
    let reclen = records.position();
    ensure!(!first.is_empty());
    let op_fd = open_dir(dir)?;
    let mut exact = vec![0u8; reclen];
    let r = ring.getdents(DirFd::Fd(op_fd.as_raw_fd()), &mut exact, 0)?;
    ensure!(
        r as usize == reclen,
        "exact fit of {reclen} bytes returned {r}"
    );
    ensure!(
        parse(&exact)?[0].name == first[0].name,
        "exact fit returned another entry"
    );
    let op_fd = open_dir(dir)?;
    let mut short = vec![0u8; reclen - 1];
    let r = ring.getdents(DirFd::Fd(op_fd.as_raw_fd()), &mut short, 0)?;
    ensure!(
        r == -libc::EINVAL,
        "one byte too small gave {r}, want -EINVAL"
    );
    let sys_fd = open_dir(dir)?;
    let sys = getdents64(sys_fd.as_fd(), &mut short);
    ensure!(
        sys.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EINVAL),
        "getdents64 too small: {sys:?}"
    );
    // A zero-length buffer is "too small" too.
    let r = ring.getdents(DirFd::Fd(op_fd.as_raw_fd()), &mut [], 0)?;
    ensure!(r == -libc::EINVAL, "zero-length buffer gave {r}");
    Ok(())
}

fn rewind_and_eof() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    let dir = Path::new("/tmp/gd-rewind");
    populate(dir, 300, numbered)?;
    let fd = open_dir(dir)?;
    let dfd = DirFd::Fd(fd.as_raw_fd());
    let mut first = vec![0u8; 1024];
    let n1 = ring.getdents(dfd, &mut first, 0)?;
    ensure!(n1 > 0);
    let (rest, _) = read_all(op_read(&mut ring, &fd), 1024)?;
    ensure!(rest.len() == 302 - parse(&first[..n1 as usize])?.len());
    for i in 0..3 {
        let mut buf = vec![0u8; 1024];
        let r = ring.getdents(dfd, &mut buf, 0)?;
        ensure!(r == 0, "read #{i} at the end returned {r}, want 0");
    }
    let mut again = vec![0u8; 1024];
    let n2 = ring.getdents(dfd, &mut again, uring_getdents::IORING_GETDENTS_REWIND)?;
    ensure!(n2 > 0, "read with REWIND returned {n2}");
    // Records, not chunk sizes, are compared: a read may stop early when a signal or
    // task work is pending (getdents64(2) does the same), so the first chunk after the
    // rewind can be shorter than the first one was.
    let (rest2, _) = read_all(op_read(&mut ring, &fd), 1024)?;
    let mut listing = parse(&first[..n1 as usize])?;
    listing.extend(rest);
    let mut relisting = parse(&again[..n2 as usize])?;
    relisting.extend(rest2);
    ensure!(
        relisting == listing,
        "listing after REWIND differs: {} entries, {} before",
        relisting.len(),
        listing.len()
    );
    Ok(())
}

fn errors() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    let mut buf = vec![0u8; 4096];
    std::fs::write("/tmp/gd-file", b"x")?;
    let file = OwnedFd::from(std::fs::File::open("/tmp/gd-file")?);
    let mut cases: Vec<(&str, i32, i32)> = Vec::new();
    cases.push((
        "regular file",
        ring.getdents(DirFd::Fd(file.as_raw_fd()), &mut buf, 0)?,
        -libc::ENOTDIR,
    ));
    let (rd, wr) = nix::unistd::pipe()?;
    cases.push((
        "pipe",
        ring.getdents(DirFd::Fd(rd.as_raw_fd()), &mut buf, 0)?,
        -libc::ENOTDIR,
    ));
    drop((rd, wr));
    let closed: RawFd = {
        let f = open_dir(Path::new("/"))?;
        f.as_raw_fd()
    };
    cases.push((
        "closed fd",
        ring.getdents(DirFd::Fd(closed), &mut buf, 0)?,
        -libc::EBADF,
    ));
    cases.push((
        "fd -1",
        ring.getdents(DirFd::Fd(-1), &mut buf, 0)?,
        -libc::EBADF,
    ));
    cases.push((
        "fd 99999",
        ring.getdents(DirFd::Fd(99_999), &mut buf, 0)?,
        -libc::EBADF,
    ));
    cases.push((
        "unregistered fixed file",
        ring.getdents(DirFd::Fixed(0), &mut buf, 0)?,
        -libc::EBADF,
    ));
    let dir = open_dir(Path::new("/tmp"))?;
    let dfd = dir.as_raw_fd();
    cases.push((
        "unknown flag",
        ring.getdents(DirFd::Fd(dfd), &mut buf, 1 << 1)?,
        -libc::EINVAL,
    ));
    cases.push((
        "high flag",
        ring.getdents(DirFd::Fd(dfd), &mut buf, 1 << 31)?,
        -libc::EINVAL,
    ));
    let mut raw = Getdents::new(DirFd::Fd(dfd), buf.as_mut_ptr(), 4096).raw();
    raw.off = 8;
    cases.push((
        "off != 0",
        ring.submit_one(raw.into_entry())?,
        -libc::EINVAL,
    ));
    let mut raw = Getdents::new(DirFd::Fd(dfd), buf.as_mut_ptr(), 4096).raw();
    raw.addr3 = 1;
    cases.push((
        "addr3 != 0",
        ring.submit_one(raw.into_entry())?,
        -libc::EINVAL,
    ));
    let mut raw = Getdents::new(DirFd::Fd(dfd), buf.as_mut_ptr(), 4096).raw();
    raw.ioprio = 1;
    cases.push((
        "ioprio != 0",
        ring.submit_one(raw.into_entry())?,
        -libc::EINVAL,
    ));
    let bad = Getdents::new(DirFd::Fd(dfd), 16 as *mut u8, 4096).build();
    cases.push(("unmapped buffer", ring.submit_one(bad)?, -libc::EFAULT));
    std::fs::create_dir_all("/tmp/gd-removed")?;
    let removed = open_dir(Path::new("/tmp/gd-removed"))?;
    std::fs::remove_dir("/tmp/gd-removed")?;
    cases.push((
        "removed directory",
        ring.getdents(DirFd::Fd(removed.as_raw_fd()), &mut buf, 0)?,
        -libc::ENOENT,
    ));
    std::fs::create_dir_all("/root/gd-removed")?;
    let removed = open_dir(Path::new("/root/gd-removed"))?;
    std::fs::remove_dir("/root/gd-removed")?;
    cases.push((
        "removed ext2 directory",
        ring.getdents(DirFd::Fd(removed.as_raw_fd()), &mut buf, 0)?,
        -libc::ENOENT,
    ));
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: got {got}, want {want}"))
        .collect();
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

fn fixed_and_linked() -> Result<()> {
    require_op()?;
    let mut ring = Ring::new(8)?;
    let dir = Path::new("/tmp/gd-fixed");
    populate(dir, 50, numbered)?;
    let sys_fd = open_dir(dir)?;
    let (want, _) = read_all(sys_read(&sys_fd), 32 * 1024)?;

    // A registered descriptor.
    let fd = open_dir(dir)?;
    ring.0.submitter().register_files(&[fd.as_raw_fd()])?;
    let (got, _) = read_all(|b| ring.getdents(DirFd::Fixed(0), b, 0), 32 * 1024)?;
    ensure!(got == want, "fixed file listing differs");
    ring.0.submitter().unregister_files()?;

    // openat (into a fixed slot) -> getdents -> close, linked, in one submission.
    ring.0.submitter().register_files_sparse(4)?;
    let path = CString::new(dir.as_os_str().as_bytes())?;
    let mut buf = vec![0u8; 32 * 1024];
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(libc::O_RDONLY | libc::O_DIRECTORY)
        .file_index(Some(
            types::DestinationSlot::try_from_slot_target(2).map_err(|_| anyhow::anyhow!("slot"))?,
        ))
        .build()
        .flags(Flags::IO_LINK)
        .user_data(1);
    let getdents = Getdents::new(DirFd::Fixed(2), buf.as_mut_ptr(), buf.len() as u32)
        .build()
        .flags(Flags::IO_LINK | Flags::FIXED_FILE)
        .user_data(2);
    let close = opcode::Close::new(types::Fixed(2)).build().user_data(3);
    // SAFETY: `path` and `buf` outlive the three requests, waited for below.
    unsafe {
        let mut sq = ring.0.submission();
        for e in [&open, &getdents, &close] {
            sq.push(e).ok().context("SQ full")?;
        }
    }
    ring.0.submit_and_wait(3)?;
    let mut results = [0i32; 4];
    for cqe in ring.0.completion() {
        results[cqe.user_data() as usize] = cqe.result();
    }
    ensure!(results[1] == 0, "openat into slot: {}", results[1]);
    ensure!(results[2] > 0, "linked getdents: {}", results[2]);
    ensure!(results[3] == 0, "close of the slot: {}", results[3]);
    let got = parse(&buf[..results[2] as usize])?;
    ensure!(got == want, "linked getdents listing differs");

    // An O_PATH directory can reach the op only as a fixed file (fdget() hides it from
    // the syscall, and registering one is refused): the answer must be the syscall's.
    let opath = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map(OwnedFd::from)
        .context("open O_PATH")?;
    let mut small = vec![0u8; 4096];
    let sys = getdents64(opath.as_fd(), &mut small);
    let sys = sys.err().and_then(|e| e.raw_os_error());
    ensure!(
        sys == Some(libc::EBADF),
        "getdents64 of an O_PATH fd: {sys:?}"
    );
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(libc::O_PATH | libc::O_DIRECTORY)
        .file_index(Some(
            types::DestinationSlot::try_from_slot_target(1).map_err(|_| anyhow::anyhow!("slot"))?,
        ))
        .build();
    let res = ring.submit_one(open)?;
    ensure!(res == 0, "O_PATH openat into slot: {res}");
    let res = ring.submit_one(
        Getdents::new(DirFd::Fixed(1), small.as_mut_ptr(), 4096)
            .build()
            .flags(Flags::FIXED_FILE),
    )?;
    ensure!(
        res == -libc::EBADF,
        "the op on a fixed O_PATH directory returned {res}, getdents64(2) -EBADF"
    );
    Ok(())
}

/// Names a set of readers saw, failing on any duplicate.
fn merge_unique(all: impl IntoIterator<Item = Rec>) -> Result<HashSet<OsString>> {
    let mut seen = HashSet::new();
    for r in all {
        ensure!(
            seen.insert(r.name.clone()),
            "entry {:?} returned twice",
            r.name
        );
    }
    Ok(seen)
}

fn expected_names(dir: &Path) -> Result<HashSet<OsString>> {
    let fd = open_dir(dir)?;
    let (recs, _) = read_all(sys_read(&fd), 32 * 1024)?;
    merge_unique(recs)
}

fn concurrent() -> Result<()> {
    require_op()?;
    for (_, base) in crate::TEST_FILESYSTEMS {
        let dir = &Path::new(base).join("gd-conc");
        populate(dir, 5000, numbered)?;
        let want = expected_names(dir)?;
        let mut ring = Ring::new(128)?;
        for round in 0..5 {
            let fd = open_dir(dir)?;
            let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 2048]).collect();
            let mut got = Vec::new();
            // Keep 64 requests in flight on one descriptor until every one of a wave
            // reports the end.
            loop {
                {
                    let mut sq = ring.0.submission();
                    for (i, b) in bufs.iter_mut().enumerate() {
                        let e = Getdents::new(
                            DirFd::Fd(fd.as_raw_fd()),
                            b.as_mut_ptr(),
                            b.len() as u32,
                        )
                        .build()
                        .user_data(i as u64);
                        // SAFETY: `bufs` and `fd` outlive the wave, completed below.
                        unsafe { sq.push(&e).ok().context("SQ full")? };
                    }
                }
                ring.0.submit_and_wait(64)?;
                let done: Vec<(usize, i32)> = ring
                    .0
                    .completion()
                    .map(|c| (c.user_data() as usize, c.result()))
                    .collect();
                ensure!(done.len() == 64, "wave completed {} of 64", done.len());
                let mut any = false;
                for (i, res) in done {
                    ensure!(
                        res >= 0,
                        "request {i}: {}",
                        std::io::Error::from_raw_os_error(-res)
                    );
                    if res > 0 {
                        any = true;
                        got.extend(parse(&bufs[i][..res as usize])?);
                    }
                }
                if !any {
                    break;
                }
            }
            let seen =
                merge_unique(got).with_context(|| format!("{} round {round}", dir.display()))?;
            ensure!(
                seen == want,
                "{} round {round}: {} of {} entries seen",
                dir.display(),
                seen.len(),
                want.len()
            );
        }
    }
    Ok(())
}

fn mixed_with_syscall() -> Result<()> {
    require_op()?;
    for (fs, base) in crate::TEST_FILESYSTEMS {
        mixed_with_syscall_in(
            &Path::new(base).join("gd-mixed"),
            crate::entries_on(base, 20_000),
        )
        .context(fs)?;
    }
    Ok(())
}

fn mixed_with_syscall_in(dir: &Path, entries: usize) -> Result<()> {
    populate(dir, entries, numbered)?;
    let want = expected_names(dir)?;
    for _ in 0..3 {
        let fd = std::sync::Arc::new(open_dir(dir)?);
        let fd2 = fd.clone();
        // One thread reads through getdents64(2), this one through the op, same fd.
        let sys = std::thread::spawn(move || -> Result<Vec<Rec>> {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 1024];
            loop {
                let n = getdents64(fd2.as_fd(), &mut buf)?;
                if n == 0 {
                    return Ok(out);
                }
                out.extend(parse(&buf[..n])?);
            }
        });
        let mut ring = Ring::new(8)?;
        let (mine, _) = read_all(|b| ring.getdents(DirFd::Fd(fd.as_raw_fd()), b, 0), 1024)?;
        let theirs = sys
            .join()
            .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
        let seen = merge_unique(mine.into_iter().chain(theirs))?;
        ensure!(
            seen == want,
            "{} of {} entries seen",
            seen.len(),
            want.len()
        );
    }
    // lseek to a d_off the op returned continues right after that entry.
    let fd = open_dir(dir)?;
    let mut ring = Ring::new(8)?;
    let mut buf = vec![0u8; 4096];
    // A read may return a single record (it stops early when a signal or io_uring task
    // work is pending, as getdents64(2) does): read until there are records on both
    // sides of the mark.
    let mut first = Vec::new();
    while first.len() < 3 {
        let n = ring.getdents(DirFd::Fd(fd.as_raw_fd()), &mut buf, 0)?;
        ensure!(n > 0, "the op returned {n} before three records");
        first.extend(parse(&buf[..n as usize])?);
    }
    let mark = &first[first.len() / 2];
    let after = &first[first.len() / 2 + 1];
    nix::unistd::lseek(fd.as_raw_fd(), mark.off, nix::unistd::Whence::SeekSet)?;
    let n = ring.getdents(DirFd::Fd(fd.as_raw_fd()), &mut buf, 0)?;
    ensure!(n > 0, "the op returned {n} after lseek");
    let resumed = parse(&buf[..n as usize])?;
    ensure!(
        resumed.first() == Some(after),
        "lseek(d_off of {mark:?}) did not resume after that entry: got {:?}, expected {after:?}",
        resumed.first()
    );
    // And getdents64 continues where the op stopped.
    let fd = open_dir(dir)?;
    let n1 = ring.getdents(DirFd::Fd(fd.as_raw_fd()), &mut buf, 0)?;
    let a = parse(&buf[..n1 as usize])?;
    let n2 = getdents64(fd.as_fd(), &mut buf)?;
    let b = parse(&buf[..n2])?;
    let reference = open_dir(dir)?;
    let mut big = vec![0u8; 64 * 1024];
    let n = getdents64(reference.as_fd(), &mut big)?;
    let all = parse(&big[..n])?;
    ensure!(
        all.starts_with(&[a.clone(), b].concat()),
        "op then getdents64 is not one continuous listing"
    );
    Ok(())
}

fn mutation() -> Result<()> {
    require_op()?;
    for (fs, base) in crate::TEST_FILESYSTEMS {
        mutation_in(Path::new(base).join("gd-mut")).context(fs)?;
    }
    Ok(())
}

fn mutation_in(dir: PathBuf) -> Result<()> {
    populate(&dir, 3000, |i| OsString::from(format!("keep-{i:05}")))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let churn_dir = dir.clone();
    let churn = std::thread::spawn(move || -> Result<u64> {
        let dir = churn_dir;
        let mut i = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let p = dir.join(format!("tmp-{}", i % 500));
            if i.is_multiple_of(2) {
                let _ = std::fs::File::create(&p);
            } else {
                let _ = std::fs::remove_file(dir.join(format!("tmp-{}", (i / 2) % 500)));
            }
            i += 1;
        }
        Ok(i)
    });
    let mut ring = Ring::new(8)?;
    for round in 0..20 {
        let fd = open_dir(&dir)?;
        let (recs, _) = read_all(op_read(&mut ring, &fd), 1024)?;
        let keep: Vec<&Rec> = recs
            .iter()
            .filter(|r| r.name.as_bytes().starts_with(b"keep-"))
            .collect();
        let unique: HashSet<&OsString> = keep.iter().map(|r| &r.name).collect();
        ensure!(
            unique.len() == keep.len(),
            "round {round}: an unchanged entry was returned twice"
        );
        ensure!(
            keep.len() == 3000,
            "round {round}: {} of 3000 unchanged entries",
            keep.len()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    ensure!(ops > 0, "the directory never changed during the walk");
    Ok(())
}

fn stock_unsupported() -> Result<()> {
    let verdict = uring_getdents::detect_uncached();
    ensure!(
        verdict == Support::NotInProbe,
        "stock kernel: detection said {verdict:?}"
    );
    // The raw opcode is refused, and the fallback reads the directory.
    let mut ring = Ring::new(4)?;
    let fd = open_dir(Path::new("/"))?;
    let mut buf = vec![0u8; 4096];
    let r = ring.getdents(DirFd::Fd(fd.as_raw_fd()), &mut buf, 0)?;
    ensure!(r == -libc::EINVAL, "stock kernel accepted opcode 58: {r}");
    // To the end: getdents64(2) may return fewer records than fit (on a stock kernel,
    // one record when task work of the ring is pending, as filldir64 stops at a
    // pending signal), so the first read need not hold them all.
    let (recs, _) = read_all(sys_read(&fd), 4096)?;
    ensure!(
        recs.iter().any(|r| r.name == "bin"),
        "getdents64 fallback: no bin among {:?}",
        recs.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    Ok(())
}
