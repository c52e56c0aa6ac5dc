//! Async directory reading for [tokio-uring] 0.5, on `IORING_OP_GETDENTS`.
//!
//! ```no_run
//! use tokio_uring_dir::Dir;
//!
//! tokio_uring::start(async {
//!     let mut dir = Dir::open(".").await?;
//!     while let Some(entry) = dir.next().await {
//!         let entry = entry?;
//!         println!("entry: {}", entry.file_name().to_string_lossy());
//!     }
//!     dir.close().await?;
//!     Ok::<_, std::io::Error>(())
//! })
//! # .unwrap();
//! ```
//!
//! Everything runs on the runtime's own ring through tokio-uring's public
//! [`UnsubmittedOneshot`](tokio_uring::UnsubmittedOneshot): opening (OPENAT), reading
//! (GETDENTS, the opcode this project's kernel patch adds), stat (STATX) and closing
//! (CLOSE). On kernels without GETDENTS, detected once per process with
//! [`uring_getdents::detect`], entries are read with getdents64(2) instead, on tokio's
//! blocking pool (or inline, by choice), with identical results; [`Dir::uses_io_uring`] tells which path is
//! active and [`DirOptions::force_fallback`] forces the system call.
//!
//! - [`Dir`]: the open directory; [`Dir::next`] returns one [`DirEntry`] at a time, and
//!   `Dir` is also a [`Stream`](futures_core::Stream) of them. Reads are
//!   cancellation-safe.
//! - [`DirEntry`]: name (any bytes), inode, path, [`FileType`] from `d_type` (a statx
//!   only when the filesystem does not say), [`Metadata`] through statx.
//! - Errors are [`std::io::Error`]s that keep their [`ErrorKind`](std::io::ErrorKind)
//!   and name the operation and path; the payload is an [`OpError`].
//!
//! [tokio-uring]: https://docs.rs/tokio-uring/0.5

#![deny(missing_docs)]

mod dir;
mod entry;
mod error;
mod fallback;
mod name;
mod ops;
mod walk;

pub use dir::{Dir, DirOptions, DEFAULT_BUFFER_SIZE, MAX_BUFFER_SIZE, MIN_BUFFER_SIZE};
pub use entry::{DirEntry, FileType, Metadata};
pub use error::OpError;
pub use walk::{Order, Walk, WalkDir, WalkEntry, DEFAULT_MAX_OPEN};

/// Opens the directory at `path` for reading its entries: [`Dir::open`], named after
/// [`std::fs::read_dir`].
pub async fn read_dir(path: impl AsRef<std::path::Path>) -> std::io::Result<Dir> {
    Dir::open(path).await
}
