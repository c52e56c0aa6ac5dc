//! End-to-end tests of `run-in-vm`: real kernel, real QEMU microvm, real vsock.
//!
//! Each test boots one or more VMs under whatever accelerator the host offers (TCG here).

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{run, run_in_vm, set_up_once, text};

#[test]
fn exit_statuses_are_mirrored() {
    let cases: &[(&[&str], i32)] = &[
        (&["true"], 0),
        (&["false"], 1),
        (&["sh", "-c", "exit 7"], 7),
        (&["/etc/passwd"], 126),
        (&["no-such-program"], 127),
        (&["sh", "-c", "kill -TERM $$"], 143),
        (&["sh", "-c", "kill -KILL $$"], 137),
        // Real-time signals: 128 + N as for any other (34 = SIGRTMIN, 64 = SIGRTMAX).
        (&["sh", "-c", "kill -34 $$"], 162),
        (&["sh", "-c", "kill -64 $$"], 192),
    ];
    for (cmd, want) in cases {
        // A status the guest cannot decode would show as a TIMEOUT (124) after 120 s.
        let mut args = vec!["--no-src", "--timeout", "120"];
        args.extend_from_slice(cmd);
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(*want),
            "{cmd:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn spawn_failures_are_named() {
    let out = run(&["--no-src", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("no-such-program"),
        "{}",
        text(&out.stderr)
    );
}

fn guest_tests_bin() -> PathBuf {
    // Built by the first run-in-vm call of this process (the runner builds the guest).
    host_runner::cargo::target_dir().join("x86_64-unknown-linux-gnu/release/guest-tests")
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn megabytes_of_stdout_and_stderr_arrive_complete_and_separate() {
    let (out_len, err_len, seed) = ("3000000", "2000000", "12345");
    let vm = run(&["--no-src", "guest-tests", "emit", out_len, err_len, seed]);
    assert_eq!(
        vm.status.code(),
        Some(0),
        "stderr tail: {}",
        text(&vm.stderr[vm.stderr.len().saturating_sub(500)..])
    );
    // The reference: the same static program run on the host.
    let host = Command::new(guest_tests_bin())
        .args(["emit", out_len, err_len, seed])
        .output()
        .expect("guest-tests runs on the host");
    assert!(host.status.success());
    assert_eq!(vm.stdout.len(), 3_000_000);
    assert_eq!(vm.stderr.len(), 2_000_000);
    assert_eq!(sha(&vm.stdout), sha(&host.stdout), "stdout differs");
    assert_eq!(sha(&vm.stderr), sha(&host.stderr), "stderr differs");
}

/// Runs run-in-vm with `args`, its standard input fed from `input` on a thread.
fn run_with_input(args: &[&str], input: Vec<u8>) -> Output {
    let mut child = run_in_vm()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run-in-vm starts");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        // A job may stop reading early: a write error then is no failure of the test.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("run-in-vm runs");
    feeder.join().unwrap();
    out
}

#[test]
fn standard_input_reaches_the_job_byte_for_byte() {
    // Every byte value, in an order no chunking can preserve by accident, and more
    // than the protocol's window many times over.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let input: Vec<u8> = (0..3_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let out = run_with_input(&["--no-src", "--timeout", "300", "cat"], input.clone());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), input.len());
    assert_eq!(sha(&out.stdout), sha(&input), "stdout differs from stdin");
    // Over the virtio-serial fallback too, counted by the guest.
    let out = run_with_input(
        &["--no-src", "--channel", "virtio-serial", "wc", "-c"],
        input[..300_000].to_vec(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "300000");
}

#[test]
fn endless_input_holds_up_no_job() {
    let zero = || Stdio::from(std::fs::File::open("/dev/zero").unwrap());
    // Never read: the job ends, and the run with it.
    let out = run_in_vm()
        .args(["--no-src", "--timeout", "120", "sh", "-c", "echo done"])
        .stdin(zero())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
    // Read in part, then closed (head exits): the rest of the pipeline still runs.
    let out = run_in_vm()
        .args([
            "--no-src",
            "--timeout",
            "120",
            "sh",
            "-c",
            "head -c 100000 | wc -c; sleep 1; echo after",
        ])
        .stdin(zero())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["100000", "after"]
    );
}

#[test]
fn a_job_writing_much_before_it_reads_its_input_gets_all_of_both() {
    // The guest sends output without reading while the runner has input for it: the
    // runner must go on reading rather than wait to write (that deadlocked both).
    let input = vec![b'x'; 1_000_000];
    let out = run_with_input(
        &[
            "--no-src",
            "--timeout",
            "300",
            "sh",
            "-c",
            "head -c 8000000 /dev/zero; wc -c",
        ],
        input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 8_000_000 + "1000000\n".len());
    assert_eq!(text(&out.stdout[8_000_000..]), "1000000\n");
}

#[test]
fn a_non_blocking_standard_input_is_waited_for_not_ended() {
    // A parent may share its input with O_NONBLOCK set: nothing to read yet is not
    // the end of it.
    use nix::fcntl::OFlag;
    // The reader starts only once QEMU does, which a first build would delay.
    set_up_once();
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
    let child = run_in_vm()
        .args(["--no-src", "--timeout", "120", "cat"])
        .stdin(Stdio::from(read_end))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run-in-vm starts");
    std::thread::sleep(Duration::from_secs(3));
    let mut writer = std::fs::File::from(write_end);
    std::io::Write::write_all(&mut writer, b"late\n").unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "late\n");
}

#[test]
fn a_non_blocking_standard_output_loses_nothing() {
    // Output shared with a parent that set O_NONBLOCK, read late: a full pipe means
    // waiting, not dropping the job's output.
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    set_up_once();
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
    fcntl(read_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    let child = run_in_vm()
        .args([
            "--no-src",
            "--timeout",
            "120",
            "head",
            "-c",
            "1000000",
            "/dev/zero",
        ])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run-in-vm starts");
    std::thread::sleep(Duration::from_secs(3));
    let mut got = Vec::new();
    std::fs::File::from(read_end).read_to_end(&mut got).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(got.len(), 1_000_000);
}

#[test]
fn no_stdin_gives_the_job_dev_null() {
    let out = run_with_input(
        &["-n", "--no-src", "sh", "-c", "cat; echo end"],
        b"ignored\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "end\n");
    // And without -n the same input arrives, ended by end-of-file.
    let out = run_with_input(
        &["--no-src", "sh", "-c", "cat; echo end"],
        b"given\n".to_vec(),
    );
    assert_eq!(text(&out.stdout), "given\nend\n");
}

/// Starts run-in-vm with `args` and waits for the job's first line, `first`.
fn start_until_line(
    args: &[&str],
    stderr: Stdio,
    first: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = run_in_vm()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("run-in-vm starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, first);
    (child, stdout)
}

/// Starts `script` under run-in-vm and waits for its first line, "ready".
fn start_until_ready(script: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    start_until_line(
        &["--no-src", "--timeout", "120", "sh", "-c", script],
        Stdio::inherit(),
        "ready\n",
    )
}

/// Starts `script` under run-in-vm, waits for its "ready" line, sends `sig` to the
/// runner, and returns the rest of stdout and the exit status.
fn signal_job(script: &str, sig: nix::sys::signal::Signal) -> (String, Option<i32>) {
    let (mut child, mut stdout) = start_until_ready(script);
    // Give background processes a moment to install their traps.
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    (rest, child.wait().unwrap().code())
}

#[test]
fn ctrl_c_on_the_runner_reaches_the_job() {
    let script = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.05; done";
    let (out, code) = signal_job(script, nix::sys::signal::Signal::SIGINT);
    assert_eq!(out, "got INT\n");
    assert_eq!(code, Some(5));
}

#[test]
fn a_signal_reaches_the_whole_job_process_group() {
    // A background child and its parent shell both receive the forwarded signal.
    // (SIGUSR1: a non-interactive shell starts background jobs with SIGINT ignored.)
    let script = r#"
        (trap 'echo child got USR1; exit 0' USR1; while :; do sleep 0.05; done) &
        trap 'echo parent got USR1' USR1
        echo ready
        wait
        wait
        exit 42
    "#;
    let (out, code) = signal_job(script, nix::sys::signal::Signal::SIGUSR1);
    assert!(out.contains("child got USR1"), "{out}");
    assert!(out.contains("parent got USR1"), "{out}");
    assert_eq!(code, Some(42), "{out}");
}

#[test]
fn a_second_ctrl_c_stops_a_job_that_ignores_the_first() {
    let (mut child, mut stdout) = start_until_ready("trap '' INT; echo ready; exec sleep 1000");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGINT is the job's"
    );
    let second = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(second.elapsed() < Duration::from_secs(10));
    assert_eq!(rest, "");
}

#[test]
fn a_busybox_job_starts_with_default_signal_state() {
    // The job is busybox itself, so no Rust runtime between PID 1 and this status
    // changes SIGPIPE (guest-tests cannot see what PID 1 left for it).
    let out = run(&["--no-src", "cat", "/proc/self/status"]);
    let status = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for field in ["SigBlk:", "SigIgn:"] {
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .trim();
        assert_eq!(
            u64::from_str_radix(mask, 16).unwrap(),
            0,
            "{field} {mask}: the job inherited PID 1's signal state"
        );
    }
}

#[test]
fn a_job_killed_by_sigterm_from_the_host_reports_143() {
    let (out, code) = signal_job(
        "echo ready; exec sleep 1000",
        nix::sys::signal::Signal::SIGTERM,
    );
    assert_eq!(out, "");
    assert_eq!(code, Some(143));
}

#[test]
fn a_job_past_its_timeout_is_killed_and_named() {
    set_up_once();
    let started = std::time::Instant::now();
    let out = run(&["--no-src", "--timeout", "4", "sleep", "100"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("TIMEOUT"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_closed_stdout_ends_the_run_as_sigpipe_would() {
    // `run-in-vm yes | head -1`: the reader goes away, the runner must not go on
    // running the job unread until its timeout.
    set_up_once();
    let started = std::time::Instant::now();
    let (mut child, stdout) = start_until_line(
        &["--no-src", "--timeout", "300", "yes"],
        Stdio::piped(),
        "y\n",
    );
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    // Silent like any writer a closed pipe ends (a first run may still note builds).
    assert!(
        !stderr.contains("console log") && !stderr.contains("signal"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_guest_kernel_panic_is_reported_as_a_crash() {
    let out = run(&["--no-src", "sh", "-c", "echo c > /proc/sysrq-trigger"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("kernel panic"), "{err}");
    assert!(err.contains("console log:"), "{err}");
}

#[test]
fn a_panic_in_guest_init_still_ends_with_its_own_status_and_all_output() {
    // vmjob.fault= makes PID 1 panic after the job ended, before its End frame.
    let out = run(&[
        "--no-src",
        "--kernel-arg",
        "vmjob.fault=panic-after-job",
        "sh",
        "-c",
        "echo before-the-panic; echo on-stderr >&2; exit 3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(text(&out.stdout), "before-the-panic\n");
    assert!(err.starts_with("on-stderr\n"), "{err}");
    assert!(err.contains("CRASH: guest init panicked"), "{err}");
    assert!(
        err.contains("injected after the job exited with status 3"),
        "{err}"
    );
    // Not a lost channel or a timeout in disguise.
    assert!(!err.contains("without a job status"), "{err}");
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop; `None` when
/// this process may not mount (not root).
struct SmallTmpfs(tempfile::TempDir);

impl SmallTmpfs {
    fn mount(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallTmpfs(dir))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_host_disk_is_named_and_ends_the_run_in_seconds() {
    set_up_once();
    let Some(small) = SmallTmpfs::mount(24) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // The VM's runtime dir, its scratch disk and QEMU's snapshot overlay all live in
    // TMPDIR: 64 MiB written in the guest cannot fit. QEMU used to pause the VM on
    // ENOSPC, and the run ended as a TIMEOUT 60 s later.
    let started = std::time::Instant::now();
    let out = run_in_vm()
        .env("TMPDIR", small.0.path())
        .args([
            "--no-src",
            "--timeout",
            "60",
            "--scratch",
            "ext2:/s",
            "sh",
            "-c",
        ])
        .arg("dd if=/dev/zero of=/s/big bs=1M count=64 2>/dev/null; sync; sleep 100")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("HOST DISK FULL"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // And the VM's files went with it.
    let left: Vec<_> = std::fs::read_dir(small.0.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_guest_flooding_its_console_leaves_a_log_of_bounded_size_with_its_tail() {
    // 3 MB to the serial console; the log keeps its last MiB (host-runner's console_log::CAP).
    let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
    let marker = format!("flood-{}-{nanos}", std::process::id());
    let started = std::time::SystemTime::now();
    let out = run(&[
        "--no-src",
        "sh",
        "-c",
        &format!(
            "yes {marker} | head -c 3000000 > /dev/console; echo last-{marker} > /dev/console"
        ),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let logs =
        std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cache/uring-getdents/logs");
    let logs = std::env::var_os("XDG_CACHE_HOME")
        .map(|c| std::path::PathBuf::from(c).join("uring-getdents/logs"))
        .unwrap_or(logs);
    let ours: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.modified().unwrap() >= started))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains(&format!("last-{marker}")))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "console logs with the marker: {}",
        ours.len()
    );
    let log = &ours[0];
    assert!(log.len() <= (1 << 20) + 200, "{} bytes kept", log.len());
    assert!(
        log.starts_with("[host-runner: the first "),
        "{}",
        &log[..200]
    );
    assert!(
        log.lines().nth(1).is_some_and(|l| l == marker),
        "not whole lines"
    );
}

#[test]
fn missing_kernel_and_bad_arguments_exit_2() {
    let out = run(&["--kernel", "/nonexistent/vmlinux", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/vmlinux"),
        "{}",
        text(&out.stderr)
    );
    for bad in [
        &["--mem", "lots", "true"][..],
        &[][..],
        &["--disk", "nocolon", "true"][..],
        &["--disk", "/nonexistent:/x", "true"][..],
        &["--scratch", "ext4", "true"][..],
        &["--scratch", "xfs:/mnt/x", "true"][..],
        &["--scratch", "ext4:relative", "true"][..],
        &["--cpus", "0", "--no-src", "true"][..],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!out.stderr.is_empty(), "{bad:?} gave no message");
    }
    // A job the guest could not receive (more than one wire frame) is refused before
    // a VM starts.
    let big = "a".repeat(100_000);
    let mut args = vec!["--no-src", "true"];
    args.extend(std::iter::repeat_n(big.as_str(), 11));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("too large"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_current_directory_appears_read_only_at_src() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "from the host\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let out = run_in_vm()
        .current_dir(dir.path())
        .args([
            "sh",
            "-c",
            "cat /src/hello.txt; ls /src; touch /src/new 2>/dev/null && echo WRITABLE; true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.starts_with("from the host\n"), "{o}");
    assert!(o.contains("sub"), "{o}");
    assert!(!o.contains("WRITABLE"), "/src must be read-only: {o}");
}

#[test]
fn src_in_a_git_work_tree_leaves_out_what_git_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
    std::fs::write(dir.path().join("tracked.txt"), "t").unwrap();
    std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
    std::fs::write(dir.path().join("src/deep/new.rs"), "u").unwrap();
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::fs::write(dir.path().join("target/release/big"), "build output").unwrap();
    git(&["add", ".gitignore", "tracked.txt"]);
    // The same directory as an explicit disk as well: that snapshot holds everything,
    // and the two snapshots must not replace each other.
    let spec = format!("{}:/data", dir.path().display());
    let out = run_in_vm()
        .current_dir(dir.path())
        .args(["--disk", &spec, "sh", "-c"])
        .arg("cd /src && find . -type f | sort; echo --; ls /data/target/release")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Tracked and untracked files are there, ignored ones are not.
    assert_eq!(
        text(&out.stdout),
        "./.gitignore\n./src/deep/new.rs\n./tracked.txt\n--\nbig\n"
    );
}

#[test]
fn explicit_disks_mount_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), "disk content").unwrap();
    let spec = format!("{}:/mnt/data", dir.path().display());
    let out = run(&["--no-src", "--disk", &spec, "cat", "/mnt/data/data"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "disk content");
}

#[test]
fn scratch_disks_are_writable_filesystems_of_the_asked_type() {
    // Two disks, both mounted read-write as ext4 where asked, and what is written to
    // one is read back after a sync. (That the second lacks dir_index is checked by the
    // guest test getdents_inline_when_warm, through the directory's FS_INDEX_FL.)
    let script = "set -e; grep -cE ' /mnt/(a|b) ext4 rw' /proc/mounts; \
                  echo written > /mnt/a/f; echo other > /mnt/b/f; sync; cat /mnt/a/f /mnt/b/f";
    let out = run(&[
        "--no-src",
        "--scratch",
        "ext4:/mnt/a",
        "--scratch",
        "ext4,^dir_index:/mnt/b",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\nwritten\nother\n");
}

#[test]
fn a_shared_directory_runs_host_binaries_and_keeps_what_the_job_wrote() {
    set_up_once();
    let work = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    // A static binary the host just built, run from the share (not from a snapshot).
    std::fs::copy(guest_tests_bin(), work.path().join("guest-tests")).unwrap();
    std::fs::write(work.path().join("in.txt"), "from the host\n").unwrap();
    std::fs::write(ro.path().join("keep"), "kept\n").unwrap();
    let script = "set -e; cat /work/in.txt; /work/guest-tests --list | grep -q getdents_; \
                  echo result > /work/out.txt; mkdir /work/sub; \
                  dd if=/dev/zero bs=1024 count=3000 2>/dev/null > /work/sub/big; \
                  cat /ro/keep; if touch /ro/new 2>/dev/null; then echo ro-writable; fi; \
                  grep -c ' /ro 9p ro' /proc/mounts";
    let out = run(&[
        "--no-src",
        "--share",
        &format!("{}:/work", work.path().display()),
        "--share",
        &format!("{}:/ro:ro", ro.path().display()),
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the host\nkept\n1\n");
    // On the host after the run, owned by the user who ran it.
    let written = work.path().join("out.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "result\n");
    assert_eq!(
        std::fs::metadata(work.path().join("sub/big"))
            .unwrap()
            .len(),
        3000 * 1024
    );
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), uid);
    assert!(!ro.path().join("new").exists());
}

#[test]
fn a_share_of_a_missing_directory_is_a_usage_error() {
    let out = run(&["--no-src", "--share", "/no/such/dir:/x", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/no/such/dir"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn virtio_serial_fallback_channel_works() {
    let out = run(&[
        "--no-src",
        "--channel",
        "virtio-serial",
        "sh",
        "-c",
        "echo over serial; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over serial\n");
    assert_eq!(text(&out.stderr), "err\n");
}

/// Child processes of `pid`, from /proc.
fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(e.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

/// SIGKILLs the runner's child whose command name starts with `comm` (as the OOM
/// killer or a user might), mid-job, and returns the runner's status, stderr and how
/// long the runner took to end after the kill; `None` if the runner has no such child.
fn kill_helper_mid_job(comm: &str) -> Option<(Option<i32>, String, std::time::Duration)> {
    set_up_once();
    let mut child = run_in_vm()
        .args([
            "--no-src",
            "--timeout",
            "120",
            "sh",
            "-c",
            "echo ready; sleep 100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let Some(victim) = children_of(child.id()).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(comm))
    }) else {
        child.kill().unwrap();
        child.wait().unwrap();
        return None;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed_at = std::time::Instant::now();
    let status = child.wait().unwrap();
    let took = killed_at.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    Some((status.code(), err, took))
}

#[test]
fn a_killed_vsock_backend_is_named_at_once() {
    let Some((code, err, took)) = kill_helper_mid_job("vhost-device-vs") else {
        // Kernel vhost-vsock or virtio-serial: there is no backend process to lose.
        eprintln!("skipped: this host runs no vhost-device-vsock");
        return;
    };
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("vsock backend vhost-device-vsock exited"),
        "{err}"
    );
    // Before, the lost channel was declared only after its 10 s grace.
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}; {err}"
    );
}

#[test]
fn a_killed_qemu_is_named() {
    let (code, err, took) = kill_helper_mid_job("qemu-system").expect("QEMU runs");
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains("CRASH: VM ended without a job status"),
        "{err}"
    );
    assert!(err.contains("QEMU was killed by SIGKILL (9)"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}; {err}"
    );
}

#[test]
fn a_killed_runner_takes_its_vm_with_it() {
    let (mut child, _stdout) = start_until_ready("echo ready; sleep 1000");
    let vm_processes = children_of(child.id());
    assert!(
        !vm_processes.is_empty(),
        "QEMU and the daemon run as children"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<_> = vm_processes
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the runner died: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_test_suite_with_a_summary() {
    // One test at a time: after the first verdict, Ctrl-C. The running test's VM ends,
    // no other test starts, and the summary says so.
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-runner"))
        .args(["test", "-j", "1", "vm_"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("host-runner starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("PASS vm_"), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    let summary = rest.lines().last().unwrap_or_default();
    assert!(
        summary.contains("stopped or not run (interrupted)"),
        "{rest}"
    );
    // The test running at the signal is stopped, not failed.
    assert!(!rest.contains("FAIL "), "{rest}");
}

#[test]
fn descendants_get_a_grace_period_then_are_ended_even_outside_the_job_group() {
    // The job exits at once; a descendant that left its process group writes within
    // the 2 s grace (delivered), then would hold the output open for 100 s.
    set_up_once();
    let started = std::time::Instant::now();
    let out = run(&[
        "--no-src",
        "--timeout",
        "120",
        "sh",
        "-c",
        "setsid sh -c 'echo early; sleep 0.5; echo late; sleep 100' & sleep 0.3; echo main",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in ["early", "main", "late"] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line} missing: {stdout}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_closed_stdout_ends_the_test_command_as_sigpipe_not_as_a_panic() {
    // `host-runner test --list | head -0`: the reader is gone before the list is written
    // (listing first builds the guest binaries, which takes a while).
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-runner"))
        .args(["test", "--list"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host-runner starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("host-runner ends");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// Starts `run-in-vm ARGS` with stdout into a FIFO whose reader takes `take` bytes and
/// then stops reading (keeping the FIFO open); returns the child, the reader, the bytes.
fn start_into_stalled_fifo(
    args: &[&str],
    take: usize,
) -> (
    std::process::Child,
    std::fs::File,
    Vec<u8>,
    std::time::Instant,
) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    fcntl(reader.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let started = std::time::Instant::now();
    let child = run_in_vm()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run-in-vm starts");
    let mut got = vec![0u8; take];
    reader.read_exact(&mut got).unwrap();
    (child, reader, got, started)
}

/// Waits at most `max` for `child`; kills it and fails if it is still running then.
fn wait_at_most(child: &mut std::process::Child, max: Duration) -> std::process::ExitStatus {
    let until = std::time::Instant::now() + max;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("run-in-vm still running after {max:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_yes_prefix(got: &[u8]) {
    assert!(
        got.chunks(2).all(|c| c == b"y\n" || c == b"y"),
        "not an intact prefix of yes's output"
    );
}

#[test]
fn a_stalled_stdout_reader_does_not_hold_up_the_timeout() {
    set_up_once();
    let (mut child, mut reader, mut got, started) =
        start_into_stalled_fifo(&["--no-src", "--timeout", "5", "yes"], 64 * 1024);
    // Before the fix: blocked in write(2) to the FIFO until killed.
    let status = wait_at_most(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(124));
    assert!(started.elapsed() > Duration::from_secs(4));
    reader.read_to_end(&mut got).unwrap();
    assert_yes_prefix(&got);
}

#[test]
fn sigterm_ends_a_run_whose_stdout_reader_stalled() {
    set_up_once();
    let (mut child, mut reader, mut got, _) =
        start_into_stalled_fifo(&["--no-src", "--timeout", "300", "yes"], 64 * 1024);
    std::thread::sleep(Duration::from_secs(2));
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(128 + 15));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    reader.read_to_end(&mut got).unwrap();
    assert_yes_prefix(&got);
}

/// QEMU runs under its seccomp filter (`Seccomp: 2` in /proc/PID/status) when the build
/// supports `-sandbox` (Debian's does), and the job still runs normally inside.
#[test]
fn qemu_runs_under_its_seccomp_sandbox() {
    set_up_once();
    let sandboxable = Command::new("qemu-system-x86_64")
        .args(["-sandbox", "on,spawn=deny", "-version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !sandboxable {
        eprintln!("skipped: this QEMU build has no -sandbox");
        return;
    }
    let (mut child, mut stdout) = start_until_ready("echo ready; sleep 60");
    let runner = child.id().to_string();
    let mut seccomp = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if field("Name:").as_deref() == Some("qemu-system-x86")
            && field("PPid:").as_deref() == Some(runner.as_str())
        {
            seccomp.push(field("Seccomp:").unwrap_or_default());
        }
    }
    // The runner's QEMU dies with it (PR_SET_PDEATHSIG).
    child.kill().unwrap();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert_eq!(
        seccomp,
        ["2"],
        "QEMU children of the runner and their seccomp mode"
    );
}

fn host_runner_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-runner"))
        .arg("test")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("host-runner starts")
}

fn listed(out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn shards_split_the_suite_and_rerun_failed_takes_only_the_failures() {
    let all = listed(&host_runner_test(&["--list"]));
    assert!(all.len() > 10, "{all:?}");
    let mut union = Vec::new();
    for k in 1..=3 {
        let shard = listed(&host_runner_test(&["--list", "--shard", &format!("{k}/3")]));
        assert!(shard.len() >= all.len() / 3 && shard.len() <= all.len() / 3 + 1);
        union.extend(shard);
    }
    union.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(union, want, "the shards are not a partition of the suite");
    let bad = host_runner_test(&["--list", "--shard", "4/3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));

    // A results file in which two tests failed: only those run again.
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r.json");
    let tests: Vec<serde_json::Value> = all
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let status = if i == 1 || i == 4 { "fail" } else { "pass" };
            serde_json::json!({"name": name, "status": status, "seconds": 1.0,
                "message": "", "output": "", "console_tail": null})
        })
        .collect();
    let doc = serde_json::json!({"schema": "uring-getdents.test-results/1",
        "summary": "", "seconds": 1.0, "tests": tests});
    std::fs::write(&results, doc.to_string()).unwrap();
    let rerun = listed(&host_runner_test(&[
        "--list",
        "--rerun-failed",
        "--json",
        results.to_str().unwrap(),
    ]));
    assert_eq!(rerun, vec![all[1].clone(), all[4].clone()]);
}

#[test]
fn a_real_run_writes_junit_and_json_results() {
    set_up_once();
    let dir = tempfile::tempdir().unwrap();
    let (junit, json) = (dir.path().join("j.xml"), dir.path().join("r.json"));
    let out = host_runner_test(&[
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--logs",
        dir.path().join("logs").to_str().unwrap(),
        "dir_errors",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["summary"], "1 passed, 0 failed");
    assert_eq!(doc["tests"][0]["name"], "dir_errors");
    assert_eq!(doc["tests"][0]["status"], "pass");
    assert!(doc["tests"][0]["seconds"].as_f64().unwrap() > 0.1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testcase classname=\"guest-tests\" name=\"dir_errors\""),
        "{xml}"
    );
    assert!(xml.contains("tests=\"1\" failures=\"0\""), "{xml}");
    let log = std::fs::read_to_string(dir.path().join("logs/dir_errors.log")).unwrap();
    assert!(log.starts_with("pass dir_errors ("), "{log}");
    assert!(log.contains("ok dir_errors"), "{log}");
}

#[test]
fn an_installed_run_in_vm_works_from_another_project() {
    set_up_once();
    // `cargo install` into a scratch root, reusing this build's artifacts (the same
    // profile and features, so nothing is rebuilt).
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_run-in-vm"));
    let target_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--quiet", "--locked", "--debug", "--path"])
        .arg(manifest_dir)
        .arg("--root")
        .arg(root.path())
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let installed = root.path().join("bin/run-in-vm");
    let help = Command::new(&installed).arg("--help").output().unwrap();
    assert!(text(&help.stdout).contains("Works from any directory"));

    // A project of someone else's: its directory appears at /src, as in the checkout.
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("data.txt"), "theirs\n").unwrap();
    let out = Command::new(&installed)
        .args(["cat", "/src/data.txt"])
        .current_dir(project.path())
        .env_remove("CARGO")
        .env_remove("CARGO_MANIFEST_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "theirs\n");
}
