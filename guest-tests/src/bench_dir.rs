//! `guest-tests bench-dir`: directory listing throughput of tokio-uring-dir (io_uring
//! and fallback) against std::fs::read_dir and tokio::fs::read_dir, in one process run,
//! in the VM (patched kernel) or on the host.
//!
//! ```text
//! guest-tests bench-dir DIR [--fallback] [--fallback-inline] [--std] [--tokio] [--tree [--walk] [--walkdir] [--jwalk] [--ignore] [--peers]] [--only] [--repeat N]
//! ```
//!
//! Without variant flags all four variants run; with some, the default `Dir` runs plus
//! the ones named (`--only`: just the ones named). Each variant lists DIR once untimed (to warm the caches equally), then
//! N times (default 5) timed. `--tree` walks the whole tree below DIR instead, descending
//! into directories as their entries' `d_type` says (no stat unless the filesystem
//! leaves the type unknown; symlinks are not followed).
//!
//! `BENCH_WALK_MAX_OPEN=N` sets the walk's descriptor bound (directories read at once);
//! `BENCH_WALK_EMULATE=1` has the walk's reads complete through a NOP on the ring on
//! kernels without the op (see `DirOptions::emulate_in_flight`), so that its ring path can
//! be profiled on such a host.
//!
//! Output, one line per variant: `variant entries seconds entries_per_sec`, where
//! `entries` is the total over the timed runs. The variant `dir` uses
//! IORING_OP_GETDENTS when the kernel has it (stderr says whether it does).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio_uring_dir::DirOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Dir,
    DirFallback,
    DirFallbackInline,
    Std,
    Tokio,
    /// tokio_uring_dir::WalkDir (tree mode only).
    Walk,
    /// The walkdir crate, one thread.
    Walkdir,
    /// The jwalk crate, rayon threads (one per CPU unless RAYON_NUM_THREADS says).
    Jwalk,
    /// The ignore crate's parallel walker (as fd uses it), every filter off.
    Ignore,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Dir => "dir",
            Variant::DirFallback => "dir-fallback",
            Variant::DirFallbackInline => "dir-fallback-inline",
            Variant::Std => "std",
            Variant::Tokio => "tokio",
            Variant::Walk => "walk",
            Variant::Walkdir => "walkdir",
            Variant::Jwalk => "jwalk",
            Variant::Ignore => "ignore",
        }
    }
}

struct Args {
    dir: PathBuf,
    variants: Vec<Variant>,
    repeat: u32,
    tree: bool,
}

const USAGE: &str =
    "usage: guest-tests bench-dir DIR [--fallback] [--fallback-inline] [--std] [--tokio] [--tree [--walk] [--walkdir] [--jwalk] [--ignore] [--peers]] [--only] [--repeat N]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut dir = None;
    let mut extra = Vec::new();
    let mut repeat = 5;
    let mut tree = false;
    let mut only = false;
    let mut args = argv.iter().map(std::ffi::OsString::from);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--fallback") => extra.push(Variant::DirFallback),
            Some("--fallback-inline") => extra.push(Variant::DirFallbackInline),
            Some("--std") => extra.push(Variant::Std),
            Some("--tokio") => extra.push(Variant::Tokio),
            Some("--walk") => extra.push(Variant::Walk),
            Some("--walkdir") => extra.push(Variant::Walkdir),
            Some("--jwalk") => extra.push(Variant::Jwalk),
            Some("--ignore") => extra.push(Variant::Ignore),
            Some("--peers") => extra.extend([
                Variant::Walk,
                Variant::Std,
                Variant::Walkdir,
                Variant::Jwalk,
                Variant::Ignore,
            ]),
            Some("--tree") => tree = true,
            Some("--only") => only = true,
            Some("--repeat") => {
                let n = args.next().ok_or("--repeat needs a number")?;
                repeat = n
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n: &u32| n > 0)
                    .ok_or("--repeat needs a positive number")?;
            }
            Some("-h" | "--help") => return Err(USAGE.into()),
            Some(s) if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(USAGE.into()),
        }
    }
    let dir = dir.ok_or(USAGE)?;
    let walkers = [
        Variant::Walk,
        Variant::Walkdir,
        Variant::Jwalk,
        Variant::Ignore,
    ];
    if !tree && extra.iter().any(|v| walkers.contains(v)) {
        return Err(format!(
            "--walk, --walkdir, --jwalk, --ignore and --peers need --tree\n{USAGE}"
        ));
    }
    let variants = if extra.is_empty() {
        vec![
            Variant::Dir,
            Variant::DirFallback,
            Variant::DirFallbackInline,
            Variant::Std,
            Variant::Tokio,
        ]
    } else {
        let mut v = if only { Vec::new() } else { vec![Variant::Dir] };
        for e in extra {
            if !v.contains(&e) {
                v.push(e);
            }
        }
        v
    };
    Ok(Args {
        dir,
        variants,
        repeat,
        tree,
    })
}

/// What one listing or walk found.
#[derive(Default)]
struct Count {
    entries: u64,
    /// Directories below the root that could not be read (tree mode only).
    unreadable: u64,
    /// Times the walk waited for the ring (the walk variant only).
    waits: u64,
    /// User and system CPU seconds the timed runs took (see [`cpu_times`]).
    cpu: (f64, f64),
}

async fn dir_list(path: &Path, opts: &DirOptions) -> io::Result<Count> {
    let mut dir = opts.open(path).await?;
    let mut count = Count::default();
    while let Some(e) = dir.next().await {
        e?;
        count.entries += 1;
    }
    dir.close().await?;
    Ok(count)
}

async fn dir_tree(root: &Path, opts: &DirOptions) -> io::Result<Count> {
    let mut count = Count::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let mut dir = match opts.open(&path).await {
            Ok(d) => d,
            Err(e) if path == root => return Err(e),
            Err(_) => {
                count.unreadable += 1;
                continue;
            }
        };
        while let Some(e) = dir.next().await {
            let Ok(e) = e else {
                count.unreadable += 1;
                break;
            };
            count.entries += 1;
            if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        dir.close().await?;
    }
    Ok(count)
}

fn std_list(path: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    for e in std::fs::read_dir(path)? {
        e?;
        count.entries += 1;
    }
    Ok(count)
}

fn std_tree(root: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if path == root => return Err(e),
            Err(_) => {
                count.unreadable += 1;
                continue;
            }
        };
        for e in rd {
            let Ok(e) = e else {
                count.unreadable += 1;
                break;
            };
            count.entries += 1;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(count)
}

async fn tokio_list(path: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let mut rd = tokio::fs::read_dir(path).await?;
    while rd.next_entry().await?.is_some() {
        count.entries += 1;
    }
    Ok(count)
}

async fn tokio_tree(root: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let mut rd = match tokio::fs::read_dir(&path).await {
            Ok(rd) => rd,
            Err(e) if path == root => return Err(e),
            Err(_) => {
                count.unreadable += 1;
                continue;
            }
        };
        loop {
            let e = match rd.next_entry().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(_) => {
                    count.unreadable += 1;
                    break;
                }
            };
            count.entries += 1;
            if e.file_type().await.is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(count)
}

/// Every entry below `root` through tokio_uring_dir's walk.
async fn walk_tree(root: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let max_open = std::env::var("BENCH_WALK_MAX_OPEN")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(tokio_uring_dir::DEFAULT_MAX_OPEN);
    let emulate = std::env::var_os("BENCH_WALK_EMULATE").is_some();
    let mut walk = tokio_uring_dir::WalkDir::new(root)
        .dir_options(DirOptions::new().emulate_in_flight(emulate))
        .max_open(max_open)
        .walk();
    // How often the walk had to wait for the ring: each wait is a trip through the
    // runtime's park (submit, then wait for completions).
    let mut waits = 0u64;
    loop {
        let e = std::future::poll_fn(|cx| {
            let polled = walk.poll_next_entry(cx);
            waits += u64::from(polled.is_pending());
            polled
        })
        .await;
        let Some(e) = e else { break };
        match e {
            Ok(e) if e.depth() == 0 => {}
            Ok(_) => count.entries += 1,
            Err(e) if count.entries == 0 => return Err(e),
            Err(_) => count.unreadable += 1,
        }
    }
    count.waits = waits;
    Ok(count)
}

fn walkdir_tree(root: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        match e {
            Ok(_) => count.entries += 1,
            Err(_) => count.unreadable += 1,
        }
    }
    Ok(count)
}

fn jwalk_tree(root: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let walk = jwalk::WalkDir::new(root)
        .min_depth(1)
        .skip_hidden(false)
        .sort(false);
    for e in walk {
        match e {
            Ok(_) => count.entries += 1,
            Err(_) => count.unreadable += 1,
        }
    }
    Ok(count)
}

fn ignore_tree(root: &Path) -> io::Result<Count> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let entries = AtomicU64::new(0);
    let unreadable = AtomicU64::new(0);
    ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .build_parallel()
        .run(|| {
            Box::new(|e| {
                match e {
                    Ok(e) if e.depth() == 0 => {}
                    Ok(_) => {
                        entries.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ignore::WalkState::Continue
            })
        });
    Ok(Count {
        entries: entries.into_inner(),
        unreadable: unreadable.into_inner(),
        ..Count::default()
    })
}

/// Runs `once` untimed, then `repeat` times timed; returns the sum of the timed runs'
/// counts and their time in seconds.
fn measure(repeat: u32, mut once: impl FnMut() -> io::Result<Count>) -> io::Result<(Count, f64)> {
    once()?;
    let mut total = Count::default();
    let cpu_before = cpu_times();
    let start = Instant::now();
    for _ in 0..repeat {
        let c = once()?;
        total.entries += c.entries;
        total.unreadable += c.unreadable;
        total.waits += c.waits;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (user, system) = cpu_times();
    total.cpu = (user - cpu_before.0, system - cpu_before.1);
    Ok((total, elapsed))
}

/// User and system CPU seconds of this process so far, all its threads (io-wq workers
/// and blocking-pool threads included): where a variant's time goes, which in a TCG
/// guest is not where it goes on a host.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given and keeps no pointer.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn run(args: &Args, variant: Variant) -> io::Result<(Count, f64)> {
    let (dir, tree, repeat) = (&args.dir, args.tree, args.repeat);
    match variant {
        Variant::Dir | Variant::DirFallback | Variant::DirFallbackInline => {
            let opts = DirOptions::new()
                .force_fallback(variant != Variant::Dir)
                .inline_fallback(variant == Variant::DirFallbackInline);
            let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
            if variant == Variant::Dir {
                let uring = rt.block_on(async {
                    let d = opts.open(dir).await?;
                    let uring = d.uses_io_uring();
                    d.close().await?;
                    Ok::<_, io::Error>(uring)
                })?;
                eprintln!(
                    "dir: {}",
                    if uring {
                        "IORING_OP_GETDENTS"
                    } else {
                        "getdents64(2) fallback (the kernel lacks the op)"
                    }
                );
            }
            measure(repeat, || {
                rt.block_on(async {
                    if tree {
                        dir_tree(dir, &opts).await
                    } else {
                        dir_list(dir, &opts).await
                    }
                })
            })
        }
        Variant::Std => measure(repeat, || if tree { std_tree(dir) } else { std_list(dir) }),
        Variant::Walk => {
            let rt = tokio_uring::Runtime::new(&tokio_uring::builder())?;
            measure(repeat, || rt.block_on(walk_tree(dir)))
        }
        Variant::Walkdir => measure(repeat, || walkdir_tree(dir)),
        Variant::Jwalk => measure(repeat, || jwalk_tree(dir)),
        Variant::Ignore => measure(repeat, || ignore_tree(dir)),
        Variant::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            measure(repeat, || {
                rt.block_on(async {
                    if tree {
                        tokio_tree(dir).await
                    } else {
                        tokio_list(dir).await
                    }
                })
            })
        }
    }
}

/// Entry point of the subcommand.
pub fn main(argv: &[String]) -> anyhow::Result<()> {
    let args = parse_args(argv).map_err(anyhow::Error::msg)?;
    for &variant in &args.variants {
        let (
            Count {
                entries,
                unreadable,
                waits,
                cpu: (user, system),
            },
            seconds,
        ) = run(&args, variant).map_err(|e| anyhow::anyhow!("{}: {e}", variant.name()))?;
        let rate = if seconds > 0.0 {
            entries as f64 / seconds
        } else {
            0.0
        };
        println!("{} {entries} {seconds:.6} {rate:.0}", variant.name());
        eprintln!(
            "{}: CPU user {user:.3} s, system {system:.3} s in {seconds:.3} s",
            variant.name()
        );
        if unreadable > 0 {
            eprintln!(
                "{}: {unreadable} directories could not be read",
                variant.name()
            );
        }
        if waits > 0 {
            eprintln!(
                "{}: waited for the ring {waits} times, {:.1} entries per wait",
                variant.name(),
                entries as f64 / waits as f64
            );
        }
    }
    Ok(())
}
