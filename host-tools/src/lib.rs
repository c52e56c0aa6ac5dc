//! The host's build plumbing, shared by the kernel build (`microvm-kernel`), the root
//! image (`microvm-image`) and the runner (`host-runner`): the cache (keys, locks,
//! atomic publish, pruning), child processes that die with the runner, system packages,
//! and cargo.

pub mod cache;
pub mod cargo;
pub mod child;
pub mod deps;
