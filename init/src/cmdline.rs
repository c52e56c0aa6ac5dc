//! Parameters the host runner puts on the kernel command line for PID 1.

/// The value of `key=` on the kernel command line (the last one wins, as in the kernel).
pub fn value(key: &str) -> Result<Option<String>, String> {
    let line = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    Ok(find(&line, key).map(str::to_owned))
}

fn find<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

/// A failure PID 1 injects on request (`vmjob.fault=`), so that the host's handling of
/// it can be tested for real. Unknown names are reported and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic (caught) after the job ended and its output was sent, before its End frame.
    PanicAfterJob,
}

impl Fault {
    /// Parses a `vmjob.fault=` value.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "panic-after-job" => Some(Fault::PanicAfterJob),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_exact_key() {
        let line = "console=ttyS0 vmjob.channelx=no vmjob.channel=vsock:1 vmjob.channel=vsock:9\n";
        assert_eq!(find(line, "vmjob.channel"), Some("vsock:9"));
        assert_eq!(find(line, "vmjob.fault"), None);
        assert_eq!(find("vmjob.fault= x", "vmjob.fault"), Some(""));
    }

    #[test]
    fn knows_its_faults() {
        assert_eq!(Fault::parse("panic-after-job"), Some(Fault::PanicAfterJob));
        assert_eq!(Fault::parse("panic"), None);
    }
}
