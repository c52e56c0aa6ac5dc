//! QEMU's machine protocol (QMP), used for one thing: hearing at once that a disk write
//! of the VM failed on the host.
//!
//! The drives run with `werror=report,rerror=report` (see `vmplan`), so a host error
//! never pauses the VM (QEMU's default on ENOSPC, which turned a full host disk into a
//! silent hang until `--timeout`). QEMU still emits a `BLOCK_IO_ERROR` event for each
//! such error, and the runner ends the run on the first one with a verdict that names
//! it, instead of letting the guest carry on over a disk that lost writes.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// A failed disk access of the VM, as QEMU reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIoError {
    /// The drive id (`root`, `disk0`, ...).
    pub device: String,
    /// `read` or `write`.
    pub operation: String,
    /// QEMU's reason text (strerror of the host's error).
    pub reason: String,
    /// The host ran out of space (ENOSPC).
    pub no_space: bool,
}

/// A QMP connection that only listens for events.
pub struct QmpMonitor {
    path: PathBuf,
    stream: Option<UnixStream>,
    buf: Vec<u8>,
}

impl QmpMonitor {
    /// A monitor for the QMP server socket QEMU will create at `path`; it connects on
    /// the first [`QmpMonitor::poll`] after the socket appears.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            stream: None,
            buf: Vec::new(),
        }
    }

    /// Reads what QEMU sent since the last call (never blocks) and returns the first
    /// block I/O error in it, if any.
    pub fn poll(&mut self) -> Option<BlockIoError> {
        if self.stream.is_none() {
            self.stream = connect(&self.path);
        }
        let stream = self.stream.as_mut()?;
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    // QEMU is exiting; the session notices that on its own.
                    self.stream = None;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut found = None;
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if found.is_none() {
                found = parse_block_io_error(&line);
            }
        }
        found
    }
}

fn connect(path: &Path) -> Option<UnixStream> {
    let mut stream = UnixStream::connect(path).ok()?;
    // Events flow only after capabilities negotiation; the greeting and the reply are
    // read (and ignored) with the events.
    stream
        .write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// The block I/O error one line of QMP output reports, if it is such an event.
pub fn parse_block_io_error(line: &[u8]) -> Option<BlockIoError> {
    let msg: serde_json::Value = serde_json::from_slice(line).ok()?;
    if msg.get("event")?.as_str()? != "BLOCK_IO_ERROR" {
        return None;
    }
    let data = msg.get("data")?;
    let text = |key: &str| {
        data.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let reason = text("reason");
    // QEMU sets `nospace` only for drives that stop on ENOSPC (werror=enospc); with
    // werror=report the host's error is in the reason text alone.
    let no_space = data
        .get("nospace")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
        || reason.contains("No space left on device");
    Some(BlockIoError {
        device: text("device"),
        operation: text("operation"),
        reason,
        no_space,
    })
}

impl std::fmt::Display for BlockIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.no_space {
            "HOST DISK FULL"
        } else {
            "HOST I/O ERROR"
        };
        write!(
            f,
            "{what}: QEMU could not {} the VM's disk {:?} on the host ({})",
            self.operation, self.device, self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_no_space_write_error() {
        // As QEMU 7.2 prints it.
        let line = br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_IO_ERROR", "data": {"device": "disk0", "nospace": true, "node-name": "drive-root", "reason": "No space left on device", "operation": "write", "action": "report"}}"#;
        let err = parse_block_io_error(line).unwrap();
        assert_eq!(
            err,
            BlockIoError {
                device: "disk0".into(),
                operation: "write".into(),
                reason: "No space left on device".into(),
                no_space: true,
            }
        );
        assert!(err
            .to_string()
            .starts_with("HOST DISK FULL: QEMU could not write"));
    }

    #[test]
    fn other_lines_are_not_errors() {
        assert_eq!(parse_block_io_error(br#"{"return": {}}"#), None);
        assert_eq!(
            parse_block_io_error(br#"{"event": "SHUTDOWN", "data": {"guest": true}}"#),
            None
        );
        assert_eq!(parse_block_io_error(b"not json"), None);
        let eio = br#"{"event": "BLOCK_IO_ERROR", "data": {"device": "root", "operation": "read", "reason": "Input/output error", "action": "report"}}"#;
        let err = parse_block_io_error(eio).unwrap();
        assert!(!err.no_space);
        assert!(err.to_string().starts_with("HOST I/O ERROR"));
        // What QEMU 7.2 sends with werror=report: no `nospace` field.
        let report = br#"{"event": "BLOCK_IO_ERROR", "data": {"device": "disk0", "operation": "write", "reason": "No space left on device", "action": "report"}}"#;
        assert!(parse_block_io_error(report).unwrap().no_space);
    }
}
