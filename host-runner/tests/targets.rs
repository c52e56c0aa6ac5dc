//! Named targets end to end: a targets file, `run-in-vm --target`, `host-runner test
//! --target` and the `host-runner targets` matrix, each booting real VMs.

use std::process::{Command, Output, Stdio};

mod common;
use common::{run_in_vm, set_up_once, text};

fn host_runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-runner"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("host-runner starts")
}

const FILE: &str = r#"
[target.two-cpus]
cpus = 2
mem = 256
command = ["sh", "-c", "test $(nproc) = 2 && awk '/MemTotal/ { exit !($2 > 150000 && $2 < 262144) }' /proc/meminfo"]

[target.stock]
kernel = "stock"
command = ["guest-tests", "run", "getdents_stock_kernel_unsupported"]

[target.writes-back]
shares = ["out:/out"]
command = ["sh", "-c", "echo from the matrix > /out/f"]

[target.suite]
cpus = 2
tests = ["vm_smp"]

[target.failing]
command = ["false"]

[target.missing-disk]
disks = ["no/such/dir:/data"]
command = ["true"]
"#;

fn targets_file() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vm-targets.toml"), FILE).unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    dir
}

#[test]
fn the_matrix_runs_every_target_and_sums_up_each() {
    set_up_once();
    let dir = targets_file();
    let file = dir.path().join("vm-targets.toml");
    let out = host_runner(&["targets", "--targets", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one target fails:\n{stdout}\n{}",
        text(&out.stderr)
    );
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "targets:")
        .skip(1)
        .collect();
    let verdict = |name: &str| {
        summary
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
            .to_string()
    };
    for name in ["two-cpus", "stock", "writes-back", "suite"] {
        assert_eq!(
            verdict(name),
            "PASS",
            "{name}:\n{stdout}\n{}",
            text(&out.stderr)
        );
    }
    assert_eq!(verdict("failing"), "FAIL");
    // One that cannot start fails by itself, named, and the matrix goes on.
    assert_eq!(verdict("missing-disk"), "FAIL");
    assert!(stdout.contains("error: --disk"), "{stdout}");
    assert!(
        stdout.contains("guest tests: 1 passed, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("targets: 4 passed, 2 failed"), "{stdout}");
    // The share's path was relative to the file.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/f")).unwrap(),
        "from the matrix\n"
    );
}

#[test]
fn one_target_for_run_in_vm_and_for_the_test_suite() {
    set_up_once();
    let dir = targets_file();
    // From the file's directory, where the default file name is found.
    let out = run_in_vm()
        .current_dir(dir.path())
        .args(["--no-src", "--target", "two-cpus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_in_vm()
        .current_dir(dir.path())
        .args(["--no-src", "--target", "two-cpus", "nproc"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "2\n", "the command line's command wins");
    let file = dir.path().join("vm-targets.toml");
    let out = host_runner(&[
        "test",
        "--targets",
        file.to_str().unwrap(),
        "--target",
        "suite",
        "vm_smp",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PASS vm_smp"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn unknown_targets_and_conflicting_flags_are_usage_errors() {
    let dir = targets_file();
    let file = dir.path().join("vm-targets.toml");
    let file = file.to_str().unwrap();
    for args in [
        &["--targets", file, "--target", "nope", "true"][..],
        &["--targets", file, "--target", "stock", "--stock", "true"],
        &["--targets", "/no/such.toml", "--target", "stock", "true"],
    ] {
        let out = run_in_vm().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = host_runner(&["targets", "--targets", file, "--list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).lines().count(),
        6,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&host_runner(&["targets", "--targets", file, "nope"]).stderr)
            .contains("no target \"nope\"")
    );
}
