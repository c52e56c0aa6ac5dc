//! `traverse`: counts the regular files and the bytes of a tree, with the numbers of
//! `find PATH -type f | wc -l` and `du -bs PATH`.
//!
//! Bytes are the apparent size (`st_size`) of every entry, the top directory, every
//! directory and symlink included, with hard-linked inodes counted once; files are the
//! regular-file entries (a hard link counts each time, as find lists it). Symlinks are
//! never followed; entries that vanish during the walk are skipped silently, as the
//! project's issue asks (GNU du reports each as "cannot access" and exits 1: a tree that
//! changes while it is counted is no error of ours to report); an unreadable directory
//! is reported and the walk goes on, the run then exiting 1, as with du.
//!
//! Three engines walk the same way and differ only in how they reach the kernel:
//! [`Engine::Sync`] (plain syscalls, one thread), [`Engine::Tokio`] (the same calls, one
//! blocking-pool hop per directory, many directories in flight) and [`Engine::Uring`]
//! (io_uring, many directories in flight, getdents through IORING_OP_GETDENTS when the
//! kernel has it). A fourth, [`Engine::TokioPerEntry`], is tokio::fs as a naive user
//! writes it (one hop per entry, full paths), kept as a comparison.

#![deny(missing_docs)]

pub mod cli;
mod count;
mod stopwatch;
mod sync_walk;
mod sys;
mod tokio_per_entry;
mod tokio_walk;
mod uring_walk;

pub use count::{Totals, WalkError};

/// How to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// One thread, plain syscalls (getdents64, fstatat).
    Sync,
    /// tokio, as a user who knows the *at calls writes it: per directory one
    /// spawn_blocking that opens it under its parent's descriptor, reads it and
    /// fstatat's its entries; many directories in flight.
    Tokio,
    /// tokio::fs as a naive user writes it: one spawn_blocking per entry, full paths.
    TokioPerEntry,
    /// io_uring: openat/getdents/statx/close through the ring, many directories at once.
    Uring,
}

/// Counts `path` with `engine`. Errors inside the tree are collected in the result;
/// an `Err` is a failure to examine `path` itself, or of the engine part-way.
pub fn count(path: &std::path::Path, engine: Engine) -> Result<Totals, WalkError> {
    match engine {
        Engine::Sync => sync_walk::count(path),
        Engine::Tokio => tokio_walk::count(path),
        Engine::TokioPerEntry => tokio_per_entry::count(path),
        Engine::Uring => uring_walk::count(path),
    }
}
