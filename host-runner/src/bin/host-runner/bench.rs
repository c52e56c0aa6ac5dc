//! `host-runner bench`: traverse against du -bs and the fastest peers on the Linux 6.12
//! source tree, warm and cold cache, on the host and in a microvm on the patched kernel.
//!
//! Correctness first: every tool's numbers on the tree are printed beside du's before
//! anything is timed. Timing is hyperfine's (`-N`, warm-ups for warm cache,
//! `drop_caches` as `--prepare` for cold); the results are a markdown table (mean, sigma,
//! ratio to du -bs in the same run), the hyperfine JSON files, and a PNG bar chart.

use anyhow::{bail, Context, Result};
use host_runner::args::BenchArgs;
use host_runner::launcher::{self, OutputSink, VmRequest};
use host_runner::setup;
use host_runner::vmplan::DiskAttach;
use host_runner::{cache, deps, image};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vm_wire::{DiskMount, JobSpec};

/// Packages the host benchmark uses.
const BENCH_PACKAGES: &[deps::Package] = &[
    deps::Package {
        name: "hyperfine",
        provides: "/usr/bin/hyperfine",
    },
    deps::Package {
        name: "bfs",
        provides: "/usr/bin/bfs",
    },
    deps::Package {
        name: "fd-find",
        provides: "/usr/bin/fdfind",
    },
    deps::Package {
        name: "gdu",
        provides: "/usr/bin/gdu",
    },
];

/// Peers from crates.io: (crate, version that builds with this toolchain, binary).
const CARGO_PEERS: &[(&str, &str, &str)] = &[
    ("diskus", "0.9.0", "diskus"),
    ("dua-cli", "3.0.0", "dua"),
    ("parallel-disk-usage", "0.24.0", "pdu"),
    ("du-dust", "1.2.7", "dust"),
];

fn peers_root() -> Result<PathBuf> {
    Ok(cache::cache_dir("tools")?.join("peers"))
}

/// Installs the crates.io peers into the cache when missing.
fn ensure_cargo_peers() -> Result<PathBuf> {
    let root = peers_root()?;
    let _lock = cache::lock("peers")?;
    for (krate, version, bin) in CARGO_PEERS {
        if root.join("bin").join(bin).is_file() {
            continue;
        }
        eprintln!("host-runner: installing {krate} {version} (benchmark peer)");
        let ok = host_runner::cargo::install(krate, version, &root)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("host-runner: could not install {krate} {version}; it is left out");
        }
    }
    Ok(root.join("bin"))
}

/// The guest's benchmark tools, built static from crates.io (the guest has no libc):
/// hyperfine (the version the host toolchain supports) and diskus, the fastest
/// thread-pool walker on the host, as the VM's peer.
fn ensure_guest_tools() -> Result<PathBuf> {
    let root = cache::cache_dir("tools")?.join("hyperfine-static");
    for (krate, version, bin) in [
        ("hyperfine", "1.20.0", "hyperfine"),
        ("diskus", "0.9.0", "diskus"),
    ] {
        cache::build_once(
            &root.join("bin").join(bin),
            &format!("{bin}-static"),
            || {
                eprintln!("host-runner: building a static {krate} {version} for the guest");
                let status = host_runner::cargo::install(krate, version, &root)
                    .args(["--target", "x86_64-unknown-linux-gnu"])
                    .env("RUSTFLAGS", "-C target-feature=+crt-static")
                    .status()
                    .with_context(|| format!("cargo install {krate}"))?;
                if !status.success() {
                    bail!("building a static {krate} failed ({status})");
                }
                Ok(())
            },
        )?;
    }
    Ok(root.join("bin"))
}

/// The Linux 6.12 tree, unpacked once from Debian's tarball.
fn ensure_tree() -> Result<PathBuf> {
    deps::ensure(&[deps::KERNEL_SOURCE])?;
    let dir = cache::cache_dir("bench")?;
    let tree = dir.join("linux-source-6.12");
    // The tree appears in one rename, Makefile and all.
    cache::build_once(&tree.join("Makefile"), "bench-tree", || {
        let staging = dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        let ok = host_runner::child::dies_with_runner(&mut Command::new("tar"))
            .arg("-xf")
            .arg(host_runner::kernel::DEBIAN_TARBALL)
            .arg("-C")
            .arg(&staging)
            .status()?
            .success();
        if !ok {
            bail!("unpacking {} failed", host_runner::kernel::DEBIAN_TARBALL);
        }
        cache::publish(&staging.join("linux-source-6.12"), &tree)?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(())
    })?;
    Ok(tree)
}

/// One timed command: a label and its argv.
#[derive(Debug, Clone)]
struct Tool {
    label: String,
    argv: Vec<String>,
}

fn tool(label: &str, argv: &[&str], tree: &Path) -> Tool {
    let t = tree.to_string_lossy();
    Tool {
        label: label.to_string(),
        argv: argv
            .iter()
            .map(|a| {
                if *a == "TREE" {
                    t.to_string()
                } else {
                    a.to_string()
                }
            })
            .collect(),
    }
}

fn host_tools(tree: &Path, traverse: &Path, peers: &Path) -> Vec<Tool> {
    let tv = traverse.to_string_lossy().into_owned();
    let p = |b: &str| peers.join(b).to_string_lossy().into_owned();
    let mut tools = vec![
        tool("du -bs", &["du", "-bs", "TREE"], tree),
        tool("traverse sync", &[&tv, "--engine", "sync", "TREE"], tree),
        tool("traverse tokio", &[&tv, "--engine", "tokio", "TREE"], tree),
        tool(
            "traverse tokio-per-entry",
            &[&tv, "--engine", "tokio-per-entry", "TREE"],
            tree,
        ),
        tool("traverse uring", &[&tv, "--engine", "uring", "TREE"], tree),
        tool("bfs (walk only)", &["bfs", "TREE", "-type", "f"], tree),
        // The walk-only rows skip the stat of every entry that du's numbers need; this
        // is bfs doing that work (one size per line, which add up to du -bs).
        tool(
            "bfs -printf %s (stats all)",
            &["bfs", "TREE", "-printf", "%s\\n"],
            tree,
        ),
        tool(
            "fd (walk only)",
            &["fdfind", "-u", "-t", "f", ".", "TREE"],
            tree,
        ),
        tool("gdu -a", &["gdu", "-n", "-p", "-a", "TREE"], tree),
    ];
    for (label, bin, args) in [
        (
            "diskus -b",
            "diskus",
            vec!["-b", "--directories", "included", "TREE"],
        ),
        // dua leaves out the top directory's own size.
        ("dua -A", "dua", vec!["-A", "-f", "bytes", "TREE"]),
        (
            "pdu apparent-size",
            "pdu",
            vec![
                "--quantity",
                "apparent-size",
                "--max-depth",
                "1",
                "--bytes-format",
                "plain",
                "TREE",
            ],
        ),
        (
            "dust -s -o b",
            "dust",
            vec!["-s", "-o", "b", "-d", "0", "TREE"],
        ),
    ] {
        if peers.join(bin).is_file() {
            let mut argv = vec![p(bin)];
            argv.extend(args.iter().map(|a| {
                if *a == "TREE" {
                    tree.to_string_lossy().into_owned()
                } else {
                    a.to_string()
                }
            }));
            tools.push(Tool {
                label: label.into(),
                argv,
            });
        }
    }
    tools
}

/// The integers in a tool's output (digit groups with thousands separators joined).
fn numbers(text: &str) -> Vec<u64> {
    let cleaned: String = text.chars().filter(|c| *c != ',').collect();
    cleaned
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Runs every tool once and prints its numbers beside du's and find's.
fn correctness_table(tools: &[Tool], tree: &Path) -> Result<String> {
    let find = Command::new("find")
        .arg(tree)
        .args(["-type", "f", "-printf", "."])
        .output()?;
    let want_files = find.stdout.len() as u64;
    let mut want_bytes = 0;
    let mut table = String::from(
        "| tool | output (first line) | files = find? | bytes = du -bs? |\n|---|---|---|---|\n",
    );
    for t in tools {
        let out = Command::new(&t.argv[0])
            .args(&t.argv[1..])
            .output()
            .with_context(|| format!("running {}", t.label))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let nums = numbers(&text);
        if t.label == "du -bs" {
            want_bytes = nums.first().copied().unwrap_or(0);
        }
        let lines = text.lines().count() as u64;
        // "N files" as traverse prints it, or one line per file; not any number equal to
        // N (bfs -printf prints sizes, and some file is N bytes long).
        let files = if text.contains(&format!("{want_files} files")) || lines == want_files {
            "yes"
        } else {
            "-"
        };
        let bytes = bytes_verdict(&text, &nums, want_bytes);
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let first: String = first.chars().take(70).collect();
        table.push_str(&format!(
            "| {} | `{}` | {files} | {bytes} |\n",
            t.label,
            first.replace('|', "\\|")
        ));
    }
    table.push_str(&format!(
        "\nfind -type f: {want_files} files; du -bs: {want_bytes} bytes\n"
    ));
    Ok(table)
}

/// Whether a tool's output gives du's byte count: as one of its numbers, or as the sum
/// of a size per line (bfs -printf).
fn bytes_verdict(text: &str, nums: &[u64], want_bytes: u64) -> &'static str {
    if want_bytes == 0 {
        return "no";
    }
    if nums.contains(&want_bytes) {
        return "yes";
    }
    let per_line: Option<u64> = text
        .lines()
        .map(|l| l.trim().parse::<u64>().ok())
        .try_fold(0u64, |sum, n| sum.checked_add(n?));
    if per_line == Some(want_bytes) {
        "yes (sum of lines)"
    } else {
        "no"
    }
}

fn hyperfine(tools: &[Tool], json: &Path, cold: bool, runs: u32) -> Result<()> {
    let mut cmd = Command::new("hyperfine");
    cmd.args([
        "-N",
        "--style",
        "basic",
        "--runs",
        &runs.to_string(),
        "--export-json",
    ])
    .arg(json);
    if cold {
        // One untimed cold run per command (hyperfine prepares warm-ups too): the very
        // first walk also pays for growing the kernel's inode and dentry caches.
        cmd.args([
            "--warmup",
            "1",
            "--prepare",
            "sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches'",
        ]);
    } else {
        cmd.args(["--warmup", "3"]);
    }
    for t in tools {
        cmd.args(["-n", &t.label]).arg(shell_join(&t.argv));
    }
    let status = cmd.status().context("running hyperfine")?;
    if !status.success() {
        bail!("hyperfine failed ({status})");
    }
    Ok(())
}

fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.=".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One command's timings (seconds) from a hyperfine JSON export.
#[derive(Debug, Clone, PartialEq)]
struct Timed {
    command: String,
    times: Vec<f64>,
}

/// The commands and their timed runs in a hyperfine JSON export.
fn parse_hyperfine(text: &str) -> Result<Vec<Timed>> {
    let v: serde_json::Value = serde_json::from_str(text).context("parsing hyperfine JSON")?;
    let results = v["results"]
        .as_array()
        .context("hyperfine JSON without results")?;
    results
        .iter()
        .map(|r| {
            let command = r["command"]
                .as_str()
                .context("hyperfine result without a command")?
                .to_string();
            let times = r["times"]
                .as_array()
                .context("hyperfine result without times")?
                .iter()
                .filter_map(|t| t.as_f64())
                .collect();
            Ok(Timed { command, times })
        })
        .collect()
}

/// Mean and sample standard deviation (0 for a single run).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The runs of every VM together, per command, in the order the first VM ran them.
fn pool(per_vm: &[Vec<Timed>]) -> Vec<Timed> {
    let mut pooled: Vec<Timed> = Vec::new();
    for run in per_vm {
        for t in run {
            match pooled.iter_mut().find(|p| p.command == t.command) {
                Some(p) => p.times.extend(&t.times),
                None => pooled.push(t.clone()),
            }
        }
    }
    pooled
}

/// Results as a hyperfine-style export (command, mean, stddev, times), which
/// `read_results` and bench/chart.py read.
fn hyperfine_json(results: &[Timed]) -> String {
    let results: Vec<serde_json::Value> = results
        .iter()
        .map(|t| {
            let (mean, sd) = mean_sd(&t.times);
            serde_json::json!({
                "command": t.command,
                "mean": mean,
                "stddev": sd,
                "times": t.times,
            })
        })
        .collect();
    serde_json::json!({ "results": results }).to_string()
}

/// (label, mean s, stddev s) per command.
fn rows(results: &[Timed]) -> Vec<(String, f64, f64)> {
    results
        .iter()
        .map(|t| {
            let (mean, sd) = mean_sd(&t.times);
            (t.command.clone(), mean, sd)
        })
        .collect()
}

/// (label, mean s, stddev s) from a hyperfine JSON export.
fn read_results(json: &Path) -> Result<Vec<(String, f64, f64)>> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let results = parse_hyperfine(&text).with_context(|| format!("reading {}", json.display()))?;
    Ok(rows(&results))
}

/// Each VM's mean times and ratios: how far the boots spread.
fn per_vm_table(title: &str, per_vm: &[Vec<Timed>]) -> String {
    let mean_of = |run: &[Timed], cmd: &str| {
        run.iter()
            .find(|t| t.command == cmd)
            .map_or(f64::NAN, |t| mean_sd(&t.times).0)
    };
    let mut s = format!(
        "### {title}\n\n| VM | du -bs ms | traverse-iouring ms | traverse-tokio ms | du / iouring | tokio / iouring |\n|--:|--:|--:|--:|--:|--:|\n"
    );
    for (i, run) in per_vm.iter().enumerate() {
        let (du, uring, tokio) = (
            mean_of(run, "du -bs"),
            mean_of(run, "traverse-iouring"),
            mean_of(run, "traverse-tokio"),
        );
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x |\n",
            i + 1,
            du * 1e3,
            uring * 1e3,
            tokio * 1e3,
            du / uring,
            tokio / uring
        ));
    }
    s
}

fn markdown(title: &str, rows: &[(String, f64, f64)]) -> String {
    let du = rows
        .iter()
        .find(|r| r.0 == "du -bs")
        .map_or(f64::NAN, |r| r.1);
    let mut s = format!("### {title}\n\n| command | mean ms | σ ms | time / du -bs | speed-up vs du |\n|---|--:|--:|--:|--:|\n");
    for (label, mean, sd) in rows {
        s.push_str(&format!(
            "| {label} | {:.1} | {:.1} | {:.2} | {:.2}x |\n",
            mean * 1e3,
            sd * 1e3,
            mean / du,
            du / mean
        ));
    }
    s
}

/// Captures a VM job's stdout; stderr goes to the terminal.
#[derive(Default)]
struct Capture {
    out: Vec<u8>,
}

impl OutputSink for Capture {
    fn stdout(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(data);
    }
    fn note(&mut self, text: &str) {
        eprintln!("host-runner: {text}");
    }
}

const GUEST_SCRIPT: &str = r#"
set -e
T=/data
cold="sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches'"
# Touch (nearly) all guest RAM once: a guest page the host has never backed costs a host
# page fault on first use, and cold walks fill RAM with new inodes and dentries.
dd if=/dev/zero of=/dev/null bs=$(( $(awk '/MemFree/{print $2}' /proc/meminfo) * 9 / 10 ))k count=1 2>/dev/null
echo "@@correctness"
for c in "du -bs $T" "traverse --engine sync $T" "traverse-tokio $T" "traverse --engine tokio-per-entry $T" "traverse-iouring $T" "env TRAVERSE_NO_OP=1 traverse-iouring $T" "/tools/diskus -b $T"; do
  printf '%s\t%s\n' "$c" "$($c 2>&1 | head -n 1)"
done
echo "find -type f	$(find $T -type f | wc -l) files"
H="/tools/hyperfine -N --style none"
# One untimed cold run per command: in a fresh VM the first walk also pays for growing
# the inode and dentry caches.
$H --runs $COLD --warmup 1 --prepare "$cold" --export-json /tmp/cold.json \
  -n 'traverse-tokio' "traverse-tokio $T" -n 'traverse-iouring' "traverse-iouring $T" \
  -n 'traverse sync' "traverse --engine sync $T" -n 'du -bs' "du -bs $T" \
  -n 'traverse-iouring, TRAVERSE_NO_OP=1' "env TRAVERSE_NO_OP=1 traverse-iouring $T" \
  -n 'diskus -b' "/tools/diskus -b $T" \
  -n 'traverse tokio-per-entry' "traverse --engine tokio-per-entry $T" >/dev/null
$H --runs $WARM --warmup 3 --export-json /tmp/warm.json \
  -n 'traverse-tokio' "traverse-tokio $T" -n 'traverse-iouring' "traverse-iouring $T" \
  -n 'traverse sync' "traverse --engine sync $T" -n 'du -bs' "du -bs $T" \
  -n 'traverse-iouring, TRAVERSE_NO_OP=1' "env TRAVERSE_NO_OP=1 traverse-iouring $T" \
  -n 'diskus -b' "/tools/diskus -b $T" \
  -n 'traverse tokio-per-entry' "traverse --engine tokio-per-entry $T" >/dev/null
echo "@@cold"; cat /tmp/cold.json
echo "@@warm"; cat /tmp/warm.json
echo "@@end"
"#;

fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = format!("@@{name}\n");
    text.split(&start)
        .nth(1)
        .and_then(|r| r.split("\n@@").next())
        .unwrap_or("")
}

fn run_vm_part(args: &BenchArgs, tree: &Path, out: &Path) -> Result<String> {
    let art = setup::prepare(&args.kernel)?;
    let caps = host_runner::caps::HostCaps::probe();
    let tools_dir = ensure_guest_tools()?;
    let data = image::ensure_dir_image(tree, image::Snapshot::Everything)
        .context("snapshotting the benchmark tree")?;
    let tools = image::ensure_dir_image(&tools_dir, image::Snapshot::Everything)
        .context("snapshotting the guest benchmark tools")?;
    let mut env = setup::base_env();
    env.push((b"COLD".to_vec(), args.cold_runs.to_string().into_bytes()));
    env.push((b"WARM".to_vec(), args.warm_runs.to_string().into_bytes()));
    let spec = JobSpec {
        argv: vec![
            b"/bin/sh".to_vec(),
            b"-c".to_vec(),
            GUEST_SCRIPT.as_bytes().to_vec(),
        ],
        env,
        cwd: b"/".to_vec(),
        disks: vec![
            DiskMount {
                serial: "data".into(),
                target: b"/data".to_vec(),
                fstype: "ext2".into(),
                read_only: true,
            },
            DiskMount {
                serial: "tools".into(),
                target: b"/tools".to_vec(),
                fstype: "ext2".into(),
                read_only: true,
            },
        ],
        stdin: false,
        ..JobSpec::default()
    };
    let req = VmRequest {
        spec,
        timeout: Duration::from_secs(3 * 3600),
        accel: caps.accel(host_runner::caps::AccelChoice::Auto),
        mem_mib: 2048,
        cpus: args.cpus,
        kernel: art.kernel.clone(),
        root_image: art.root_image.clone(),
        disks: vec![
            // cache=none: "cold" in the guest must not be served by the host's page cache.
            DiskAttach {
                image: data,
                serial: "data".into(),
                read_only: true,
                bypass_host_cache: true,
            },
            DiskAttach {
                image: tools,
                serial: "tools".into(),
                read_only: true,
                bypass_host_cache: false,
            },
        ],
        shares: Vec::new(),
        channel: launcher::ChannelChoice::Auto,
        verbose_kernel: false,
        kernel_args: Vec::new(),
        // A benchmark is no interactive job: a Ctrl-C ends it.
        stop_signals_to_job: false,
    };
    // Per-VM files of an earlier run with more VMs would look like this run's.
    for entry in std::fs::read_dir(out)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let per_vm = ["vm-cold-", "vm-warm-"].iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|rest| rest.strip_suffix(".json"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if per_vm {
            std::fs::remove_file(entry.path())?;
        }
    }
    let (mut cold, mut warm, mut correctness) = (Vec::new(), Vec::new(), String::new());
    for vm in 1..=args.vms {
        if args.vms > 1 {
            eprintln!("host-runner: benchmark VM {vm} of {}", args.vms);
        }
        let mut cap = Capture::default();
        let report = launcher::run_vm(&req, &caps, &mut cap, None)?;
        if report.outcome != launcher::Outcome::Finished(vm_wire::JobEnd::Exited(0)) {
            bail!(
                "benchmark VM {vm}: {} (console log {})",
                report.outcome.describe(),
                report.console_log.display()
            );
        }
        let text = String::from_utf8_lossy(&cap.out).into_owned();
        if vm == 1 {
            correctness = section(&text, "correctness").trim().to_string();
        }
        for (name, runs) in [("cold", &mut cold), ("warm", &mut warm)] {
            let json = section(&text, name);
            if args.vms > 1 {
                std::fs::write(out.join(format!("vm-{name}-{vm}.json")), json)?;
            }
            runs.push(
                parse_hyperfine(json)
                    .with_context(|| format!("benchmark VM {vm}: {name} results"))?,
            );
        }
    }
    let (cold_pooled, warm_pooled) = (pool(&cold), pool(&warm));
    std::fs::write(out.join("vm-cold.json"), hyperfine_json(&cold_pooled))?;
    std::fs::write(out.join("vm-warm.json"), hyperfine_json(&warm_pooled))?;
    let pooled = if args.vms > 1 {
        format!(", the runs of {} VMs pooled", args.vms)
    } else {
        String::new()
    };
    let mut md = format!(
        "## In the microvm (patched kernel, {}, {} vCPUs, tree on its own ext2 virtio-blk disk, cache=none)\n\nCorrectness:\n\n```\n{correctness}\n```\n\n",
        match req.accel {
            host_runner::caps::Accel::Kvm => "KVM",
            host_runner::caps::Accel::Tcg => "TCG",
        },
        args.cpus,
    );
    md.push_str(&markdown(
        &format!(
            "Cold cache ({} runs after 1 cold warm-up, drop_caches before each{pooled})",
            args.cold_runs
        ),
        &rows(&cold_pooled),
    ));
    md.push('\n');
    md.push_str(&markdown(
        &format!(
            "Warm cache ({} runs after 3 warm-ups{pooled})",
            args.warm_runs
        ),
        &rows(&warm_pooled),
    ));
    if args.vms > 1 {
        md.push('\n');
        md.push_str(&per_vm_table("Cold cache, each VM", &cold));
        md.push('\n');
        md.push_str(&per_vm_table("Warm cache, each VM", &warm));
    }
    Ok(md)
}

fn run_host_part(args: &BenchArgs, tree: &Path, out: &Path) -> Result<String> {
    deps::ensure(BENCH_PACKAGES)?;
    let peers = ensure_cargo_peers()?;
    let traverse = build_host_traverse()?;
    let tools = host_tools(tree, &traverse, &peers);
    let mut md = String::from("## On the host (stock kernel: getdents64 outside the ring)\n\nCorrectness (each tool once):\n\n");
    md.push_str(&correctness_table(&tools, tree)?);
    md.push('\n');
    hyperfine(&tools, &out.join("host-warm.json"), false, args.warm_runs)?;
    hyperfine(&tools, &out.join("host-cold.json"), true, args.cold_runs)?;
    md.push_str(&markdown(
        &format!("Warm cache ({} runs after 3 warm-ups)", args.warm_runs),
        &read_results(&out.join("host-warm.json"))?,
    ));
    md.push('\n');
    md.push_str(&markdown(
        &format!(
            "Cold cache ({} runs after 1 cold warm-up, drop_caches before each)",
            args.cold_runs
        ),
        &read_results(&out.join("host-cold.json"))?,
    ));
    Ok(md)
}

fn build_host_traverse() -> Result<PathBuf> {
    let status = host_runner::cargo::command()
        .current_dir(image::workspace_dir())
        .args(["build", "--release", "--quiet", "-p", "traverse"])
        .status()?;
    if !status.success() {
        bail!("building traverse failed");
    }
    Ok(host_runner::cargo::target_dir().join("release/traverse"))
}

fn chart(out: &Path) -> Result<()> {
    let script = image::workspace_dir().join("bench/chart.py");
    let ok = Command::new("python3")
        .arg(&script)
        .arg(out)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("host-runner: no chart (python3 with matplotlib needed: pip install matplotlib)");
    }
    Ok(())
}

/// Refuses a `--tree` that is not a directory, as a usage error.
fn check_tree(tree: &Path) -> Result<()> {
    match std::fs::metadata(tree) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(host_runner::UsageError(format!(
            "--tree {}: not a directory",
            tree.display()
        ))
        .into()),
        Err(e) => Err(host_runner::UsageError(format!("--tree {}: {e}", tree.display())).into()),
    }
}

/// Runs the benchmark; returns the exit status.
pub fn cmd_bench(args: &BenchArgs) -> Result<i32> {
    // Before anything is built or measured: a typo here would otherwise surface
    // minutes later, from the VM part, as a runner failure.
    if let Some(tree) = &args.tree {
        check_tree(tree)?;
    }
    // The VM part drops the guest's caches inside the guest; only the host part needs
    // root, to drop the host's.
    if !args.vm_only && !nix::unistd::geteuid().is_root() {
        return Err(host_runner::UsageError(
            "bench drops the host's page cache: run it as root (or use --vm-only)".into(),
        )
        .into());
    }
    std::fs::create_dir_all(&args.out)?;
    let tree = match &args.tree {
        Some(t) => t.clone(),
        None => ensure_tree()?,
    };
    let mut md = format!("# traverse benchmark\n\nTree: {}\n\n", tree.display());
    if !args.vm_only {
        md.push_str(&run_host_part(args, &tree, &args.out)?);
        md.push('\n');
    }
    if !args.host_only {
        md.push_str(&run_vm_part(args, &tree, &args.out)?);
    }
    let report = args.out.join("results.md");
    std::fs::write(&report, &md)?;
    chart(&args.out)?;
    println!("{md}");
    eprintln!("host-runner: results in {}", args.out.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_several_vms_pool_per_command_and_read_back() {
        let export = |du: &[f64], uring: &[f64]| {
            hyperfine_json(&[
                Timed {
                    command: "traverse-iouring".into(),
                    times: uring.to_vec(),
                },
                Timed {
                    command: "du -bs".into(),
                    times: du.to_vec(),
                },
            ])
        };
        let vm1 = parse_hyperfine(&export(&[2.0, 4.0], &[1.0, 1.0])).unwrap();
        let vm2 = parse_hyperfine(&export(&[3.0], &[1.0])).unwrap();
        let pooled = pool(&[vm1.clone(), vm2.clone()]);
        assert_eq!(pooled[0].command, "traverse-iouring");
        assert_eq!(pooled[1].times, [2.0, 4.0, 3.0]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm-cold.json");
        std::fs::write(&file, hyperfine_json(&pooled)).unwrap();
        let rows = read_results(&file).unwrap();
        assert_eq!(rows[1].0, "du -bs");
        assert!((rows[1].1 - 3.0).abs() < 1e-12);
        assert!((rows[1].2 - 1.0).abs() < 1e-12);
        let table = per_vm_table("t", &[vm1, vm2]);
        assert!(
            table.contains("| 1 | 3000.0 | 1000.0 | NaN | 3.00x | NaNx |"),
            "{table}"
        );
        assert!(table.contains("| 2 | 3000.0 | 1000.0 |"), "{table}");
        assert!(parse_hyperfine("{\"results\": [{\"mean\": 1}]}").is_err());
    }

    #[test]
    fn bytes_are_found_as_a_number_or_as_the_sum_of_one_size_per_line() {
        let du = "1512785519\t/tree\n";
        assert_eq!(bytes_verdict(du, &numbers(du), 1512785519), "yes");
        let sizes = "4096\n1500000000\n12781423\n";
        assert_eq!(
            bytes_verdict(sizes, &numbers(sizes), 1512785519),
            "yes (sum of lines)"
        );
        // Paths are not sizes, even when their digits happen to add up.
        let paths = "/t/1512785518\n/t/1\n";
        assert_eq!(bytes_verdict(paths, &numbers(paths), 1512785519), "no");
        assert_eq!(bytes_verdict(sizes, &numbers(sizes), 7), "no");
        assert_eq!(bytes_verdict(du, &numbers(du), 0), "no");
    }

    #[test]
    fn a_tree_that_is_no_directory_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_tree(dir.path()).is_ok());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        for bad in [file, dir.path().join("nope")] {
            let err = check_tree(&bad).unwrap_err();
            assert_eq!(
                host_runner::exit_code_for(&err),
                host_runner::EXIT_USAGE,
                "{err:#}"
            );
            assert!(err.to_string().starts_with("--tree "), "{err:#}");
        }
    }
}
