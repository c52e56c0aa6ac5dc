//! Errors that say which operation failed on which path.

use std::io;
use std::path::{Path, PathBuf};

/// The payload of every [`io::Error`] this crate returns for a failed system operation.
///
/// The surrounding [`io::Error`] keeps the [`io::ErrorKind`] of the underlying error, so
/// `err.kind() == io::ErrorKind::NotFound` works as usual; its message reads
/// `"<operation> <path>: <cause>"`. To get at the errno, downcast:
///
/// ```
/// # use std::io;
/// # use tokio_uring_dir::OpError;
/// fn errno(err: &io::Error) -> Option<i32> {
///     err.get_ref()?.downcast_ref::<OpError>()?.source_error().raw_os_error()
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct OpError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl OpError {
    /// The operation that failed: `"open"`, `"getdents"`, `"statx"` or `"close"`.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The path the operation was applied to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying error, with its raw OS error code when there is one.
    pub fn source_error(&self) -> &io::Error {
        &self.source
    }
}

/// Wraps `source` so that its message names `op` and `path`, keeping its kind.
pub(crate) fn op_error(op: &'static str, path: &Path, source: io::Error) -> io::Error {
    let kind = source.kind();
    io::Error::new(
        kind,
        OpError {
            op,
            path: path.to_path_buf(),
            source,
        },
    )
}

/// An error from a negative io_uring result (`-errno`).
pub(crate) fn from_res(res: i32) -> io::Error {
    io::Error::from_raw_os_error(res.saturating_neg())
}
