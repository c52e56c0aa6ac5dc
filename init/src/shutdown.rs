//! Ending the VM: stop every process, flush the disks, reboot.
//!
//! Without ACPI, power-off only halts the CPU and QEMU would wait forever. The host boots
//! the kernel with `reboot=t` (triple-fault reboot) and QEMU with `-no-reboot`, so a
//! reboot makes QEMU exit by itself.

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

/// Ends the VM. Never returns, even when reboot fails.
pub fn power_off() -> ! {
    // kill(-1) reaches every process except PID 1 itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(10));
    crate::job::reap_orphans();
    nix::unistd::sync();
    let err = match reboot(RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    crate::console::log(&format!("init: reboot failed: {err}; halting here"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        crate::job::reap_orphans();
    }
}
