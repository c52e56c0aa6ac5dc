//! Children that must not outlive the runner.
//!
//! A runner killed with SIGKILL runs no destructor, so a QEMU, a vsock backend, or a
//! kernel build's make it started would run on, orphaned, holding CPU and files. The
//! kernel's parent-death signal ends them instead. `children_of` and `is_running`
//! let the soak (and tests) check that nothing did.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s process receive SIGKILL when the thread that spawns it ends (the
/// runner dying included). Spawn it from a thread that outlives it: the signal follows
/// the spawning thread, not the process.
pub fn dies_with_runner(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit); it touches no memory the parent
    // could be changing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The runner may have died between fork and prctl: the signal was missed.
            if libc::getppid() as u32 != parent {
                libc::_exit(137);
            }
            Ok(())
        })
    }
}

/// Process ids of the children of `pid`, with their command names.
pub fn children_of(pid: u32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            if let Ok(child) = e.file_name().to_string_lossy().parse() {
                out.push((child, stat[open + 1..close].to_string()));
            }
        }
    }
    out
}

/// True while `pid` exists and is not a zombie (a zombie is dead; it was only not
/// reaped yet).
pub fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let spawner = std::thread::spawn(move || {
            let child = dies_with_runner(Command::new("sleep").arg("60"))
                .spawn()
                .unwrap();
            pid_tx.send(child.id() as i32).unwrap();
            // The thread ends without waiting: as if the runner were SIGKILLed.
            std::mem::forget(child);
        });
        let pid = pid_rx.recv().unwrap();
        spawner.join().unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while is_running(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_running(pid), "sleep {pid} outlived its spawner");
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }

    #[test]
    fn without_it_a_child_outlives_its_thread() {
        // The control: the test above would pass for another reason otherwise.
        let spawner = std::thread::spawn(|| Command::new("sleep").arg("60").spawn().unwrap());
        let mut child = spawner.join().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(is_running(child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
