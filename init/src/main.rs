//! PID 1 of the test microvm.
//!
//! The kernel starts this program as `/sbin/init`. It mounts the pseudo filesystems,
//! connects to the host over the channel named on the kernel command line, runs the one
//! job the host sends, streams its output back as it is produced, reaps every process,
//! forwards signals, reports how the job ended and reboots (which, with `reboot=t` and
//! QEMU's `-no-reboot`, ends the VM).
//!
//! PID 1 must never exit or panic (either is a kernel panic), so every step reports its
//! error and carries on to the clean shutdown.

mod channel;
mod console;
mod job;
mod mounts;
mod shutdown;

use vm_wire::{GuestMsg, JobEnd};

fn main() {
    // Turn a bug in this program into a reported failure and a clean shutdown instead of
    // a kernel panic.
    let outcome = std::panic::catch_unwind(run).unwrap_or_else(|_| {
        console::log("init: internal error (panic); shutting down");
        None
    });
    if outcome.is_none() {
        console::log("init: no job was run");
    }
    shutdown::power_off()
}

/// The steps of PID 1, in order. Returns how the job ended, if one ran.
fn run() -> Option<JobEnd> {
    // 1. Pseudo filesystems: /proc is needed to read the kernel command line.
    let mount_errors = mounts::mount_all(mounts::PSEUDO_FILESYSTEMS);

    // 2. Block the signals we handle so they queue on a signalfd instead of killing
    //    or interrupting us; the job gets a clean mask from its spawn.
    let signals = match job::Signals::block_and_open() {
        Ok(s) => s,
        Err(e) => {
            console::log(&format!("init: signalfd: {e}"));
            return None;
        }
    };

    // 3. Connect to the host over the channel the kernel command line names.
    let mut chan = match channel::Channel::connect_from_cmdline() {
        Ok(c) => c,
        Err(e) => {
            console::log(&format!("init: cannot reach the host: {e}"));
            return None;
        }
    };
    for err in &mount_errors {
        console::log(&format!("init: {err}"));
        chan.send(&GuestMsg::Log(err.clone()));
    }

    // 4. Receive the job.
    let spec = match chan.receive_job() {
        Ok(spec) => spec,
        Err(e) => {
            let msg = format!("receiving the job: {e}");
            console::log(&format!("init: {msg}"));
            chan.send(&GuestMsg::End(JobEnd::SetupFailed(msg)));
            // Like any end: powering off must not overtake the frame that says why.
            chan.wait_end_ack();
            return None;
        }
    };

    // 5. Mount the job's disks, then run it, pumping output, signals and reaping.
    let end = match mounts::mount_disks(&spec.disks) {
        Ok(()) => job::run(&spec, &mut chan, &signals),
        Err(msg) => JobEnd::SetupFailed(msg),
    };
    if !matches!(end, JobEnd::Exited(_) | JobEnd::Signaled(_)) {
        console::log(&format!("init: job {end}"));
    }

    // 6. Report. Everything the job wrote has been sent before this frame.
    chan.send(&GuestMsg::End(end.clone()));
    chan.wait_end_ack();
    Some(end)
}
