//! The soak and fault run as part of the suite: `host-runner soak` with the CI sizes.
//! Its own test binary, so no other VM test runs beside it (cargo runs test binaries
//! one after the other) and its timings stay comparable.

use std::process::{Command, Stdio};

#[test]
fn fifty_serial_sixteen_parallel_and_every_fault_hold() {
    let out = Command::new(env!("CARGO_BIN_EXE_host-runner"))
        .args(["soak", "--serial", "50", "--parallel", "16"])
        .stdin(Stdio::null())
        .output()
        .expect("host-runner starts");
    let report = String::from_utf8_lossy(&out.stdout);
    // The report goes to the test's output, where the README's figures come from.
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{report}");
    let last = report.lines().last().unwrap_or("");
    assert!(
        last.contains(" runs, 0 failed, ") && last.ends_with(" 0 per-VM temp dirs left"),
        "{last}"
    );
    // 50 + 16 + the fault cases + the clean run after them.
    let runs: usize = last
        .strip_prefix("soak: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(runs >= 50 + 16 + 10, "{last}");
    for fault in [
        "guest kernel panic",
        "guest hang past --timeout",
        "panic in guest init",
        "QEMU killed",
        "runner SIGKILLed",
        "guest /tmp full",
        "job killed by real-time signal 34",
        "stdout not read for 3 s",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok   ") && l.contains(fault)),
            "{fault} not checked: {report}"
        );
    }
}
