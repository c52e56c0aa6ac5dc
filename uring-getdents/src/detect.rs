//! Does this kernel have IORING_OP_GETDENTS? Decided once, never guessed.
//!
//! Out-of-tree opcode numbers collide with later mainline ones (58 is IORING_OP_RECV_ZC
//! from Linux 6.15), so the probe listing the number is not enough: the op must also
//! read a known directory exactly as getdents64(2) does. A colliding op may also wait
//! for something that never comes, so the check waits a bounded time (`CHECK_TIMEOUT`).

use crate::{getdents64, DirFd, DirentIter, Getdents, RawSqe};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The verdict of detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The op exists and behaves like getdents64(2).
    Available,
    /// io_uring itself is unavailable (disabled, seccomp, old kernel).
    NoRing(String),
    /// The probe does not list the opcode.
    NotInProbe,
    /// The probe lists the opcode but it does not behave like getdents (another op with
    /// the same number, or a broken implementation).
    Misbehaves(String),
    /// The probe lists the opcode but it could not be checked: no directory could be
    /// opened (a sandbox that hides "/", procfs and the working directory), or the kernel
    /// cannot bound the check's wait. Not used unverified.
    Unverified(String),
    /// The probe lists the opcode but the check's request did not complete within this
    /// bound (another op with the same number that waits, e.g. for network data). The
    /// kernel may still write into the request's buffer, so the buffer, the directory
    /// descriptor and the ring were leaked, not freed.
    TimedOut(Duration),
}

impl Support {
    /// True when the op can be used.
    pub fn is_available(&self) -> bool {
        matches!(self, Support::Available)
    }
}

/// The cached verdict for this process.
pub fn detect() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(detect_uncached)
}

/// Directories the functional check reads, the first that opens: "/" rarely changes
/// while it is read twice; a process that may not read it usually still has its own
/// procfs directory or its working directory.
const CHECK_DIRS: [&str; 3] = ["/", "/proc/self", "."];

/// How long the functional check waits for its one request. The op reads the first
/// 4 KiB of a directory getdents64(2) has just read, so the blocks are cached and a
/// working op completes in microseconds, even punted to io-wq in a loaded 2-CPU VM;
/// 2 s leaves room for a badly overcommitted host, yet bounds the stall of whatever
/// triggers detection (the first directory opened through tokio-uring-dir, a traverse
/// walk) when the number belongs to an op that waits forever.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs detection now (probe + functional check on the first of `CHECK_DIRS` that opens).
///
/// A check that times out leaks one ring, a 4 KiB buffer and a descriptor (see
/// [`Support::TimedOut`]); [`detect`] runs this once per process.
pub fn detect_uncached() -> Support {
    detect_checking(&CHECK_DIRS)
}

fn detect_checking(dirs: &[&str]) -> Support {
    detect_with(dirs, &getdents_sqe, CHECK_TIMEOUT)
}

/// Builds the check's request from the directory to read and the buffer to fill. Only
/// the real op is used outside tests; the tests put other ops in its place.
type SqeFor<'a> = &'a dyn Fn(RawFd, *mut u8, u32) -> io_uring::squeue::Entry;

fn getdents_sqe(dir: RawFd, buf: *mut u8, len: u32) -> io_uring::squeue::Entry {
    Getdents::new(DirFd::Fd(dir), buf, len).build()
}

/// Detection with the request `sqe_for` builds, waiting at most `timeout` for it.
fn detect_with(dirs: &[&str], sqe_for: SqeFor<'_>, timeout: Duration) -> Support {
    let mut ring = match io_uring::IoUring::new(2) {
        Ok(r) => r,
        Err(e) => return Support::NoRing(e.to_string()),
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Support::NoRing(format!("IORING_REGISTER_PROBE: {e}"));
    }
    // Probe the opcode the request really carries (a test's stand-in is probed as what
    // it is).
    let opcode = RawSqe::from_entry(sqe_for(-1, std::ptr::null_mut(), 0)).opcode;
    if !probe.is_supported(opcode) {
        return Support::NotInProbe;
    }
    if !ring.params().is_feature_ext_arg() {
        // Before 5.11 there is no timed wait; no such kernel has opcode 58 (patched 6.12,
        // mainline 6.15), so this is a sandbox or backport oddity, not worth a fallback.
        return Support::Unverified(
            "no IORING_FEAT_EXT_ARG: the check's wait cannot be bounded".into(),
        );
    }
    let mut unopened = Vec::new();
    for dir in dirs {
        match functional_check(&mut ring, dir, sqe_for, timeout) {
            Ok(()) => return Support::Available,
            Err(Check::CannotOpen(why)) => unopened.push(why),
            Err(Check::Differs(why)) => return Support::Misbehaves(why),
            Err(Check::Abandoned(verdict)) => {
                // SAFETY: a deliberate leak, not unsafe code. The request may still be
                // in flight on this ring: closing it would leave the kernel's ring-exit
                // work retrying to cancel a request that may never finish, while the
                // process frees what is around it; kept, nothing the request touches is
                // freed and a late completion lands in a ring nobody reads.
                std::mem::forget(ring);
                return verdict;
            }
        }
    }
    Support::Unverified(unopened.join("; "))
}

/// Why the functional check did not pass.
enum Check {
    /// The directory to read could not be opened: says nothing about the op.
    CannotOpen(String),
    /// The op failed or read otherwise than getdents64(2).
    Differs(String),
    /// No completion came (timeout or enter failure): the request may still be in
    /// flight, its buffer and descriptor are leaked, and the ring must be too.
    Abandoned(Support),
}

fn open_dir(path: &str) -> Result<OwnedFd, String> {
    // std opens with O_CLOEXEC.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("open {path}: {e}"))
}

/// Submits what is queued on `ring` and waits for the completion of the request tagged
/// `user_data`, returning its result (a negative errno on failure). Other completions
/// are consumed and dropped: meant for a ring that carries one request at a time, such
/// as a probe. An interrupted wait is resumed. The wait has no bound: use it only for
/// an op known to complete. An error means the request may still be in flight: whatever
/// it writes into must then not be freed (leak it).
pub fn wait_for(ring: &mut io_uring::IoUring, user_data: u64) -> std::io::Result<i32> {
    loop {
        if let Some(cqe) = ring.completion().find(|c| c.user_data() == user_data) {
            return Ok(cqe.result());
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// As [`wait_for`], but gives up `timeout` from now with `Ok(None)`, the request then
/// possibly still in flight. Needs IORING_FEAT_EXT_ARG (Linux 5.11).
fn wait_within(
    ring: &mut io_uring::IoUring,
    user_data: u64,
    timeout: Duration,
) -> std::io::Result<Option<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(cqe) = ring.completion().find(|c| c.user_data() == user_data) {
            return Ok(Some(cqe.result()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let ts = io_uring::types::Timespec::from(left);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            // ETIME: the wait ran out (the loop looks at the queue once more, then
            // reports the timeout); EINTR: resumed with the time that is left.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Marks the probe's request ("getd").
const PROBE_USER_DATA: u64 = 0x6765_7464;

/// Reads the first buffer of `path` through the op and through getdents64(2) on two
/// separate opens, and requires identical records.
fn functional_check(
    ring: &mut io_uring::IoUring,
    path: &str,
    sqe_for: SqeFor<'_>,
    timeout: Duration,
) -> Result<(), Check> {
    let reference_fd = open_dir(path).map_err(Check::CannotOpen)?;
    let op_fd = open_dir(path).map_err(Check::CannotOpen)?;
    let reference = first_buffer(reference_fd.as_fd(), 4096)
        .map_err(|e| Check::CannotOpen(format!("getdents64 {path}: {e}")))?;
    op_reads_like(ring, op_fd, &reference, sqe_for, timeout)
}

/// What one getdents64(2) of `size` bytes at offset 0 returns when nothing interrupts
/// it. A single call is not that: filldir64 stops after the first record when a signal
/// or task work is pending, which is the normal state of a thread whose tokio-uring
/// ring has a completion on its way (the Dir::open that triggered detection). Records
/// are packed in order until the next one does not fit, so reading on into the space
/// left gives the same bytes as one uninterrupted call; EINVAL means the next record
/// does not fit, the point where that call would have stopped.
fn first_buffer(dir: BorrowedFd<'_>, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match getdents64(dir, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if filled > 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Reads the first buffer of `op_fd` through the op and compares it with `reference`.
fn op_reads_like(
    ring: &mut io_uring::IoUring,
    op_fd: OwnedFd,
    reference: &[u8],
    sqe_for: SqeFor<'_>,
    timeout: Duration,
) -> Result<(), Check> {
    let mut buf = vec![0u8; 4096];
    let sqe =
        sqe_for(op_fd.as_raw_fd(), buf.as_mut_ptr(), buf.len() as u32).user_data(PROBE_USER_DATA);
    let opcode = RawSqe::from_entry(sqe.clone()).opcode;
    // SAFETY: `buf` and `op_fd` outlive the request: they are dropped only after its
    // completion, and leaked when the wait below ends without one.
    unsafe {
        ring.submission()
            .push(&sqe)
            .map_err(|_| Check::Differs("submission queue full".into()))?;
    }
    let res = match wait_within(ring, PROBE_USER_DATA, timeout) {
        Ok(Some(res)) => res,
        outcome => {
            let verdict = match outcome {
                Err(e) => Support::Misbehaves(format!("io_uring_enter: {e}")),
                _ => Support::TimedOut(timeout),
            };
            // SAFETY: deliberate leaks, not unsafe code. The request may still complete
            // and write into `buf` after we return, so its memory must never go back to
            // the allocator; `op_fd` stays open so that its number cannot be reused by a
            // file the request would then read.
            std::mem::forget(buf);
            std::mem::forget(op_fd);
            return Err(Check::Abandoned(verdict));
        }
    };
    if res < 0 {
        return Err(Check::Differs(format!(
            "opcode {opcode} on a directory failed: {}",
            std::io::Error::from_raw_os_error(-res)
        )));
    }
    buf.truncate(res as usize);
    if buf != reference {
        return Err(Check::Differs(format!(
            "opcode {opcode} filled {} bytes unlike getdents64(2)'s {}",
            buf.len(),
            reference.len()
        )));
    }
    if DirentIter::new(&buf).any(|e| e.is_err()) || buf.is_empty() {
        return Err(Check::Differs("records do not parse".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{opcode, types};
    use std::io::Write;

    /// (major, minor) of the running kernel.
    fn kernel_version() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .expect("/proc/sys/kernel/osrelease");
        let mut parts = release.trim().split(['.', '-']).map(str::parse);
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
            _ => panic!("kernel release {release:?}"),
        }
    }

    /// A ring's probe, independent of detection's own.
    fn probe_lists(opcode: u8) -> Option<bool> {
        let ring = io_uring::IoUring::new(2).ok()?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe).ok()?;
        Some(probe.is_supported(opcode))
    }

    #[test]
    fn detection_agrees_with_the_probe_and_the_kernel_version() {
        let verdict = detect_uncached();
        assert_eq!(detect(), &verdict, "cached and fresh verdicts differ");
        let version = kernel_version();
        eprintln!("kernel {version:?}: {verdict:?}");
        match probe_lists(crate::IORING_OP_GETDENTS) {
            None => assert!(matches!(verdict, Support::NoRing(_)), "{verdict:?}"),
            Some(false) => assert_eq!(verdict, Support::NotInProbe),
            // 58 is IORING_OP_RECV_ZC from 6.15, which fails (or waits) on a directory.
            Some(true) if version >= (6, 15) => assert!(
                matches!(verdict, Support::Misbehaves(_) | Support::TimedOut(_)),
                "{verdict:?}"
            ),
            // Before 6.15 only this project's series puts an op at 58 (a distro backport
            // of RECV_ZC to an older kernel would land here and need this revisited).
            Some(true) => assert_eq!(verdict, Support::Available),
        }
    }

    /// The getdents request with another opcode in its place, all other fields kept.
    fn getdents_as(code: u8) -> impl Fn(RawFd, *mut u8, u32) -> io_uring::squeue::Entry {
        move |dir, buf, len| {
            let mut raw = Getdents::new(DirFd::Fd(dir), buf, len).raw();
            raw.opcode = code;
            raw.into_entry()
        }
    }

    #[test]
    fn another_opcode_under_our_number_is_not_taken_for_the_op() {
        // On any kernel: ops every ring has, in opcode 58's role, as a colliding op would
        // be. NOP succeeds with 0 bytes, READ fails with EISDIR; neither reads like
        // getdents64(2).
        assert_eq!(
            probe_lists(opcode::Nop::CODE),
            Some(true),
            "io_uring needed"
        );
        for code in [opcode::Nop::CODE, opcode::Read::CODE] {
            let verdict = detect_with(&["/"], &getdents_as(code), CHECK_TIMEOUT);
            assert!(
                matches!(&verdict, Support::Misbehaves(why) if why.contains(&format!("opcode {code} "))),
                "opcode {code}: {verdict:?}"
            );
        }
    }

    /// A directory with known names, its first getdents64(2) buffer, and a regular file
    /// holding `edit` applied to that buffer.
    fn dir_and_file_of_its_records(
        edit: impl Fn(&mut Vec<u8>),
    ) -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["alpha", "beta", "gamma"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let fd = open_dir(dir.path().to_str().unwrap()).unwrap();
        let mut records = vec![0u8; 4096];
        let n = getdents64(fd.as_fd(), &mut records).unwrap();
        records.truncate(n);
        edit(&mut records);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&records).unwrap();
        (dir, file)
    }

    #[test]
    fn the_check_passes_exactly_getdents64s_bytes() {
        // A stand-in op that "reads the directory" by READing a file that holds its
        // records: the check must accept these bytes and refuse one changed byte, so the
        // refusals above come from the comparison, not from a check that never passes.
        for (changed, want_available) in [(false, true), (true, false)] {
            let (dir, file) = dir_and_file_of_its_records(|records| {
                if changed {
                    *records.last_mut().unwrap() ^= 1;
                }
            });
            let file_fd = file.as_raw_fd();
            let read_file = move |_dir: RawFd, buf: *mut u8, len: u32| {
                opcode::Read::new(types::Fd(file_fd), buf, len).build()
            };
            let dirs = ["/nonexistent/dir", dir.path().to_str().unwrap()];
            let verdict = detect_with(&dirs, &read_file, CHECK_TIMEOUT);
            assert_eq!(verdict.is_available(), want_available, "{verdict:?}");
            if changed {
                assert!(matches!(verdict, Support::Misbehaves(_)), "{verdict:?}");
            }
        }
    }

    #[test]
    fn a_directory_that_cannot_be_opened_is_skipped_not_blamed_on_the_op() {
        let verdict = detect_uncached();
        // Behind an unopenable directory the next one decides, as "/" alone does.
        assert_eq!(detect_checking(&["/nonexistent/dir", "/"]), verdict);
        // With nothing to read, a listed opcode stays unverified, never available.
        let blind = detect_checking(&["/nonexistent/dir"]);
        match verdict {
            Support::Available | Support::Misbehaves(_) | Support::TimedOut(_) => {
                assert!(
                    matches!(&blind, Support::Unverified(why) if why.contains("/nonexistent/dir")),
                    "{blind:?}"
                )
            }
            other => assert_eq!(blind, other),
        }
        // The same with an opcode every kernel lists, so this runs on any kernel.
        let nop = getdents_as(opcode::Nop::CODE);
        let blind = detect_with(&["/nonexistent/dir"], &nop, CHECK_TIMEOUT);
        assert!(
            matches!(&blind, Support::Unverified(why) if why.contains("/nonexistent/dir")),
            "{blind:?}"
        );
        let decided = detect_with(&["/nonexistent/dir", "/"], &nop, CHECK_TIMEOUT);
        assert!(matches!(decided, Support::Misbehaves(_)), "{decided:?}");
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the 2-element array.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are new and owned by nothing else.
        unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        }
    }

    #[test]
    fn the_reference_is_whole_while_ring_completions_arrive() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("entry-{i:04}")), b"").unwrap();
        }
        let path = dir.path().to_str().unwrap();
        let whole = first_buffer(open_dir(path).unwrap().as_fd(), 4096).unwrap();
        assert!(whole.len() > 2048, "{} bytes", whole.len());
        // READs of a pipe that another thread completes one by one: each completion
        // comes back to this thread as task work announced like a signal
        // (TIF_NOTIFY_SIGNAL), and one that arrives during a getdents64(2) stops
        // filldir64 after the record it is at.
        const READS: usize = 64;
        let (read_end, write_end) = pipe();
        let mut ring = io_uring::IoUring::new(READS as u32).unwrap();
        let mut bytes = [0u8; READS];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let read = opcode::Read::new(types::Fd(read_end.as_raw_fd()), byte, 1)
                .build()
                .user_data(i as u64);
            // SAFETY: `bytes` and the pipe outlive the requests, which all complete
            // before this test returns (the writer writes one byte per read).
            unsafe { ring.submission().push(&read).unwrap() };
        }
        ring.submit().unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(write_end);
            for _ in 0..READS {
                w.write_all(b"x").unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let (mut single_short, mut rounds) = (0, 0);
        while !writer.is_finished() {
            let fd = open_dir(path).unwrap();
            let mut one_call = vec![0u8; 4096];
            if getdents64(fd.as_fd(), &mut one_call).unwrap() < whole.len() {
                single_short += 1;
            }
            let fd = open_dir(path).unwrap();
            assert_eq!(first_buffer(fd.as_fd(), 4096).unwrap(), whole);
            rounds += 1;
        }
        writer.join().unwrap();
        let mut seen = 0;
        while seen < READS {
            ring.submit_and_wait(1).unwrap();
            seen += ring.completion().count();
        }
        eprintln!("{single_short} of {rounds} single getdents64 calls came back short");
    }

    #[test]
    fn an_op_that_never_completes_times_out_instead_of_hanging() {
        // A READ of a pipe nobody writes to, with the write end open, stands for a
        // colliding op that waits forever.
        let (read_end, write_end) = pipe();
        let read_fd = read_end.as_raw_fd();
        let read_pipe = move |_dir: RawFd, buf: *mut u8, len: u32| {
            opcode::Read::new(types::Fd(read_fd), buf, len).build()
        };
        let bound = Duration::from_millis(300);
        let start = Instant::now();
        let verdict = detect_with(&["/"], &read_pipe, bound);
        let took = start.elapsed();
        assert_eq!(verdict, Support::TimedOut(bound));
        assert!(
            took >= bound && took < bound + Duration::from_secs(5),
            "took {took:?}"
        );
        // Closing the write end completes the abandoned read with EOF, into the leaked
        // buffer and ring: nothing of this test's is written to.
        drop(write_end);
        drop(read_end);
    }
}
