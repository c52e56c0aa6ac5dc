//! Diagnostics on the kernel console (the serial port, kept in the host's console log).

use std::io::Write;

/// Writes one line to the console. Never fails: there is nowhere else to report to.
pub fn log(line: &str) {
    // The kernel opened /dev/console as our stderr; when that is missing, try it by name.
    let mut stderr = std::io::stderr().lock();
    if writeln!(stderr, "{line}").is_err() {
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = writeln!(c, "{line}");
        }
    }
}
