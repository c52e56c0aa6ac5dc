//! Reading directories through io_uring with `IORING_OP_GETDENTS`.
//!
//! The opcode comes from this project's Linux 6.12 patch series (kernel/patches). This
//! crate knows nothing about VMs; it gives any io_uring user:
//!
//! - [`Getdents`]: an SQE builder producing an [`io_uring::squeue::Entry`] (io-uring 0.7)
//!   or the io-uring 0.6 entry that tokio-uring 0.5 takes;
//! - [`DirentIter`]: a bounds-checked parser for the `linux_dirent64` records the op
//!   (and getdents64(2)) fill a buffer with;
//! - [`detect`]: whether the running kernel really has the op, decided by the probe AND a
//!   functional comparison with getdents64(2), so an unrelated opcode with the same
//!   number (58 is IORING_OP_RECV_ZC from Linux 6.15) is never mistaken for it;
//! - [`getdents64`]: the plain system call, the fallback and the reference.

#![deny(missing_docs)]

mod detect;
mod dirent;
mod sqe;
mod syscall;

pub use detect::{detect, detect_uncached, wait_for, Support};
pub use dirent::{DirEntry, DirentError, DirentIter};
pub use sqe::{DirFd, Getdents, RawSqe, IORING_GETDENTS_REWIND, IORING_OP_GETDENTS};
pub use syscall::getdents64;
