//! How a VM run ended, and the exit status the runner mirrors for it.

use vm_wire::JobEnd;

/// Exit status for a job that ran past its timeout (as timeout(1) uses).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status for a VM that failed: kernel panic, no status reported, QEMU failure.
pub const EXIT_VM_FAILED: i32 = 125;

/// How a VM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reported the job's end.
    Finished(JobEnd),
    /// The user stopped the run with this signal (a second one, or one before the
    /// guest was up); the VM was killed.
    Interrupted(i32),
    /// The job ran past its timeout; the VM was killed.
    Timeout,
    /// The guest kernel panicked.
    KernelPanic,
    /// The guest sent a malformed or oversized frame; the VM was killed.
    ProtocolError(String),
    /// QEMU could not read or write a disk image on the host (a full disk); the VM was
    /// killed. The text names the drive and the host's error.
    HostIoError(String),
    /// The VM ended, or the channel broke, without a job status.
    NoStatus(String),
}

impl Outcome {
    /// The exit status the runner mirrors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Finished(JobEnd::Exited(code)) => code & 0xff,
            // A signal number is at most 64; anything else from the guest is garbage
            // that must not wrap into a success-looking status.
            Outcome::Finished(JobEnd::Signaled(sig)) if (1..=64).contains(sig) => 128 + sig,
            Outcome::Finished(JobEnd::Signaled(_)) => EXIT_VM_FAILED,
            Outcome::Finished(JobEnd::SpawnFailed { status, .. }) => i32::from(*status),
            Outcome::Finished(JobEnd::SetupFailed(_) | JobEnd::InitPanicked(_)) => EXIT_VM_FAILED,
            Outcome::Timeout => EXIT_TIMEOUT,
            Outcome::Interrupted(sig) => 128 + sig,
            Outcome::KernelPanic
            | Outcome::ProtocolError(_)
            | Outcome::HostIoError(_)
            | Outcome::NoStatus(_) => EXIT_VM_FAILED,
        }
    }

    /// One line naming what happened.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Finished(JobEnd::InitPanicked(why)) => {
                format!("CRASH: guest init panicked; the job's status is lost ({why})")
            }
            Outcome::Finished(end) => format!("job {end}"),
            Outcome::Timeout => "TIMEOUT: the job did not finish in time; VM killed".into(),
            Outcome::Interrupted(sig) => {
                format!("INTERRUPTED: signal {sig} stopped the run; VM killed")
            }
            Outcome::KernelPanic => "CRASH: guest kernel panic".into(),
            Outcome::HostIoError(what) => format!("{what}; VM killed"),
            Outcome::ProtocolError(why) => {
                format!("PROTOCOL ERROR: the guest sent a bad frame ({why}); VM killed")
            }
            Outcome::NoStatus(why) => format!("CRASH: VM ended without a job status ({why})"),
        }
    }

    /// True unless the VM itself failed (the job may still have failed).
    pub fn vm_ok(&self) -> bool {
        matches!(
            self,
            Outcome::Finished(JobEnd::Exited(_) | JobEnd::Signaled(_) | JobEnd::SpawnFailed { .. })
        )
    }
}
