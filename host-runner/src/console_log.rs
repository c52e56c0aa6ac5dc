//! The guest's serial console log, kept to a fixed size.
//!
//! QEMU writes the console to a file itself (`-serial file:`), so a guest that floods
//! its console (a job writing to /dev/console, a kernel warning in a loop) would grow
//! that file without limit and, read whole, the runner's memory with it. Instead:
//! while the VM runs the file's head is punched out (the blocks are freed; QEMU's write
//! offset is untouched) whenever it grows past twice [`CAP`]; when the VM is gone the
//! file is rewritten as its last [`CAP`] bytes, after a line saying how much was
//! dropped. The runner only ever reads a tail.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes of console output kept: the tail, where a panic's report is.
pub const CAP: u64 = 1 << 20;
/// How often the running VM's log size is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// What is read to find a kernel panic: its report is the last thing the guest says.
pub const PANIC_WINDOW: u64 = 64 * 1024;

/// The last `max` bytes of `path` (fewer if it is shorter; empty if unreadable).
pub fn read_tail(path: &Path, max: u64) -> Vec<u8> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut out = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_ok() {
        let _ = file.take(max).read_to_end(&mut out);
    }
    out
}

/// The last `lines` lines of `path`, from at most its last [`CAP`] bytes.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    let text = read_tail(path, CAP);
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Keeps a running VM's console log bounded on disk.
pub struct Bound {
    checked_at: Option<Instant>,
}

impl Bound {
    /// Nothing checked yet.
    pub fn new() -> Self {
        Self { checked_at: None }
    }

    /// Frees the head of the log if it has grown past `2 * cap` (at most every
    /// [`CHECK_EVERY`]); errors are ignored: the log is diagnostics, never a verdict.
    pub fn enforce(&mut self, path: &Path, cap: u64) {
        if self.checked_at.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return;
        }
        self.checked_at = Some(Instant::now());
        let _ = punch_head(path, cap);
    }
}

impl Default for Bound {
    fn default() -> Self {
        Self::new()
    }
}

/// Punches out all but the last `cap` bytes (rounded to whole 4 KiB blocks) once the
/// file is past `2 * cap`. Returns the bytes freed.
fn punch_head(path: &Path, cap: u64) -> std::io::Result<u64> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    if len <= 2 * cap {
        return Ok(0);
    }
    let drop = (len - cap) & !4095;
    let punch_len = libc::off_t::try_from(drop).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            punch_len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(drop)
}

/// Rewrites the log of a VM that has ended as its last `cap` bytes, after a line that
/// says how many were dropped (nothing changes for a log within `cap`).
pub fn finish(path: &Path, cap: u64) -> std::io::Result<()> {
    let len = std::fs::metadata(path)?.len();
    if len <= cap {
        return Ok(());
    }
    let tail = read_tail(path, cap);
    // Start at a line boundary: the first partial line is noise.
    let start = tail.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let kept = &tail[start..];
    let tmp = path.with_extension("log.tmp");
    {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(
            out,
            "[host-runner: the first {} bytes of console output were dropped; the last {} are kept]",
            len - kept.len() as u64,
            kept.len()
        )?;
        out.write_all(kept)?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn write_lines(path: &Path, from: usize, to: usize) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in from..to {
            writeln!(f, "line {i:08}").unwrap();
        }
    }

    #[test]
    fn a_flooded_log_stays_bounded_on_disk_and_keeps_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let cap = 64 * 1024;
        let mut bound = Bound::new();
        // 14 bytes a line; 20 000 lines a round, 3 MiB in all.
        for round in 0..11 {
            write_lines(&log, round * 20_000, (round + 1) * 20_000);
            bound.checked_at = None;
            bound.enforce(&log, cap);
            let on_disk = std::fs::metadata(&log).unwrap().blocks() * 512;
            assert!(
                on_disk <= 2 * cap + 20_000 * 14 + 8192,
                "{on_disk} bytes on disk"
            );
        }
        assert!(tail_lines(&log, 1).ends_with("line 00219999"));
        finish(&log, cap).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() as u64 <= cap + 200, "{}", text.len());
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("[host-runner: the first "), "{header}");
        // Whole lines only, in order, up to the last one written.
        let kept: Vec<&str> = lines.collect();
        assert!(kept.iter().all(|l| l.len() == 13 && l.starts_with("line ")));
        assert_eq!(*kept.last().unwrap(), "line 00219999");
        let first: usize = kept[0][5..].parse().unwrap();
        assert_eq!(first + kept.len(), 220_000);
    }

    #[test]
    fn a_small_log_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        write_lines(&log, 0, 10);
        let before = std::fs::read(&log).unwrap();
        Bound::new().enforce(&log, 4096);
        finish(&log, 4096).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), before);
        assert_eq!(read_tail(&log, 14), b"line 00000009\n");
        assert_eq!(tail_lines(&dir.path().join("missing"), 3), "");
    }
}
