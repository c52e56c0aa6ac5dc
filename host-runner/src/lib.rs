//! Host side of the microvm test system: builds the guest kernel and root image, boots
//! one QEMU microvm per job and talks to the guest's PID 1 over vsock.
//!
//! The binaries (`host-runner`, `run-in-vm`) are thin: [`args`] is the command line as
//! values, [`cli`] runs the commands, [`setup`] is what they share before a VM runs.

pub mod args;
// The kernel, the root image and the plumbing they share are crates of their own
// (kernel/, image/, host-tools/); their old paths stay for the runner's modules.
pub use host_tools::{cache, cargo, child, deps};
pub use microvm_image as image;
pub use microvm_kernel as kernel;
pub mod caps;
pub mod cli;
pub mod console_log;
pub mod launcher;
pub mod output;
pub mod qmp;
pub mod results;
pub mod scratch;
pub mod setup;
pub mod share;
pub mod soak;
pub mod targets;
pub mod testsuite;
pub mod tty;
pub mod vmplan;
pub mod vsockd;

/// Exit status for bad arguments or a missing input file.
pub const EXIT_USAGE: i32 = 2;

/// An error in what the user asked for (as opposed to a failure while doing it).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Maps an error to the runner's exit status: 2 for usage errors, else 125.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else {
        launcher::EXIT_VM_FAILED
    }
}
