//! The kernel log as a test verdict: a test during which the kernel reported a bug
//! (lockdep, sleeping in atomic context, KASAN, a WARN that did not panic) fails, even
//! if everything it checked in user space was right.
//!
//! The debug kernel's checks print a report and carry on; most of them do not honour
//! panic_on_warn, and at the guest's quiet log level the console does not show them.
//! /dev/kmsg has every record regardless of the console level.

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// How the kernel's bug reports begin (lib/bug.c, kernel/locking/lockdep.c,
/// kernel/sched/core.c __might_resched, mm/kasan/report.c, lib/ubsan.c).
const REPORT_PREFIXES: [&str; 4] = ["BUG:", "WARNING:", "INFO:", "UBSAN:"];

/// The kernel's bug reports logged since boot, one line each.
pub fn reports() -> Result<Vec<String>> {
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .context("opening /dev/kmsg")?;
    let mut found = Vec::new();
    // One read returns one record; EAGAIN means there are no more.
    let mut record = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(line) = report_in(&String::from_utf8_lossy(&record[..n])) {
                    found.push(line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // A record overwritten while we read: the next read continues after it.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e).context("reading /dev/kmsg"),
        }
    }
    Ok(found)
}

/// The message of a /dev/kmsg record (`prio,seq,usec,flags;message\n continuation`)
/// if it is a bug report.
fn report_in(record: &str) -> Option<String> {
    let message = record.split_once(';')?.1.lines().next()?.trim_end();
    REPORT_PREFIXES
        .iter()
        .any(|p| message.starts_with(p))
        .then(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::report_in;

    #[test]
    fn bug_reports_are_told_from_ordinary_messages() {
        let sleeping = "3,512,1234567,-;BUG: sleeping function called from invalid context at fs/ext4/dir.c:170\n SUBSYSTEM=x\n";
        assert_eq!(
            report_in(sleeping).as_deref(),
            Some("BUG: sleeping function called from invalid context at fs/ext4/dir.c:170")
        );
        let lockdep = "4,900,99,-;WARNING: possible circular locking dependency detected\n";
        assert!(report_in(lockdep).is_some());
        assert!(
            report_in("3,77,1,-;BUG: KASAN: slab-use-after-free in ext4_readdir+0x1c/0x40\n")
                .is_some()
        );
        assert!(report_in("6,1,0,-;EXT4-fs (vdb): mounted filesystem\n").is_none());
        assert!(report_in("6,2,0,-;a message mentioning BUG: inside\n").is_none());
        assert!(report_in("no separator").is_none());
    }
}
