//! PID 1 of the test microvm.
//!
//! The kernel starts this program as `/sbin/init`. It mounts the pseudo filesystems,
//! connects to the host over the channel named on the kernel command line, runs the one
//! job the host sends, streams its output back as it is produced, reaps every process,
//! forwards signals, reports how the job ended and reboots (which, with `reboot=t` and
//! QEMU's `-no-reboot`, ends the VM).
//!
//! PID 1 must never exit or panic (either is a kernel panic), so every step reports its
//! error and carries on to the clean shutdown; a panic is caught and still reported to
//! the host as the job's end.

mod channel;
mod cmdline;
mod console;
mod fdwait;
mod job;
mod mounts;
mod net;
mod shutdown;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use vm_wire::{GuestMsg, JobEnd};

/// The guest's host name.
const HOSTNAME: &str = "microvm";

/// The message of the last panic, kept by the panic hook for the End frame.
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn main() {
    record_panic_messages();
    // The channel lives out here so that a panic in `run` cannot take the host's
    // answer with it.
    let mut chan = None;
    match panic::catch_unwind(AssertUnwindSafe(|| run(&mut chan))) {
        Ok(Some(_)) => {}
        Ok(None) => console::log("init: no job was run"),
        Err(_) => report_panic(chan.as_mut()),
    }
    shutdown::power_off()
}

/// The steps of PID 1, in order. Returns how the job ended, if one ran.
fn run(chan_slot: &mut Option<channel::Channel>) -> Option<JobEnd> {
    // 1. Pseudo filesystems: /proc is needed to read the kernel command line.
    let mut setup_errors = mounts::mount_all(mounts::PSEUDO_FILESYSTEMS);

    // 1b. A name for the machine and a loopback interface: programs that print the
    //     host name or talk to 127.0.0.1 expect both.
    if let Err(e) = nix::unistd::sethostname(HOSTNAME) {
        setup_errors.push(format!("sethostname: {e}"));
    }
    if let Err(e) = net::loopback_up() {
        setup_errors.push(e);
    }

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
    let chan = match channel::Channel::connect_from_cmdline() {
        Ok(c) => chan_slot.insert(c),
        Err(e) => {
            console::log(&format!("init: cannot reach the host: {e}"));
            return None;
        }
    };
    for err in &setup_errors {
        console::log(&format!("init: {err}"));
        chan.send(&GuestMsg::Log(err.clone()));
    }
    let fault = requested_fault(chan);

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

    // 5. Mount the job's disks and shared host directories, then run it, pumping
    //    output, signals and reaping.
    let mounted =
        mounts::mount_disks(&spec.disks).and_then(|()| mounts::mount_shares(&spec.shares));
    let end = match mounted {
        Ok(()) => job::run(&spec, chan, &signals),
        Err(msg) => JobEnd::SetupFailed(msg),
    };
    if !matches!(end, JobEnd::Exited(_) | JobEnd::Signaled(_)) {
        console::log(&format!("init: job {end}"));
    }
    if fault == Some(cmdline::Fault::PanicAfterJob) {
        panic!("vmjob.fault=panic-after-job: injected after the job {end}");
    }

    // 6. Report. Everything the job wrote has been sent before this frame.
    chan.send(&GuestMsg::End(end.clone()));
    chan.wait_end_ack();
    Some(end)
}

/// The fault the host asked PID 1 to inject, if any (see [`cmdline::Fault`]).
fn requested_fault(chan: &mut channel::Channel) -> Option<cmdline::Fault> {
    let name = match cmdline::value("vmjob.fault") {
        Ok(name) => name?,
        Err(e) => {
            console::log(&format!("init: {e}"));
            return None;
        }
    };
    let fault = cmdline::Fault::parse(&name);
    if fault.is_none() {
        chan.send(&GuestMsg::Log(format!(
            "unknown vmjob.fault={name}; ignored"
        )));
    }
    fault
}

/// Keeps each panic's message (and prints it on the console, as the default hook does)
/// so the host can be told what went wrong.
fn record_panic_messages() {
    panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        console::log(&format!("init: {text}"));
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(text);
        }
    }));
}

/// Tells the host that PID 1 panicked, with an End frame of its own kind, then waits for
/// the acknowledgement like any end. A second panic here is caught too: nothing may keep
/// PID 1 from the clean shutdown.
fn report_panic(chan: Option<&mut channel::Channel>) {
    let message = PANIC_MESSAGE
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or_else(|| "panic".into());
    console::log("init: internal error (panic); reporting it and shutting down");
    if let Some(chan) = chan {
        let reported = panic::catch_unwind(AssertUnwindSafe(|| chan.end_after_panic(&message)));
        if reported.is_err() {
            console::log("init: panicked again while reporting a panic");
        }
    }
}
