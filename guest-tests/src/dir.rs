//! tokio-uring-dir on the patched kernel: `Dir` must read through IORING_OP_GETDENTS
//! and list exactly what std::fs::read_dir lists, with and without the fallback.

use crate::fixtures::{numbered, odd_names};
use crate::Test;
use anyhow::{bail, ensure, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::task::Poll;
use tokio_uring_dir::{Dir, DirOptions, FileType};

/// The tokio-uring-dir tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "dir_uses_io_uring",
            needs: "",
            run: uses_io_uring,
        },
        Test {
            name: "dir_listings_match_read_dir",
            needs: "",
            run: listings,
        },
        Test {
            name: "dir_100k_entries",
            needs: "mem=1024 timeout=900",
            run: hundred_thousand,
        },
        Test {
            name: "dir_force_fallback_identical",
            needs: "",
            run: fallback_identical,
        },
        Test {
            name: "dir_cancellation",
            needs: "",
            run: cancellation,
        },
        Test {
            name: "dir_many_on_one_ring",
            needs: "",
            run: many_on_one_ring,
        },
        Test {
            name: "dir_errors",
            needs: "",
            run: errors,
        },
        Test {
            name: "dir_metadata",
            needs: "",
            run: metadata,
        },
    ]
}

/// Name -> (inode, type), as a listing reports them.
type Listing = BTreeMap<OsString, (u64, FileType)>;

fn std_listing(dir: &Path) -> Result<Listing> {
    let mut out = Listing::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("read_dir {}", dir.display()))? {
        let e = e?;
        let name = e.file_name();
        let kind = FileType::from(e.file_type()?);
        ensure!(
            out.insert(name.clone(), (e.ino(), kind)).is_none(),
            "read_dir returned {name:?} twice"
        );
    }
    Ok(out)
}

/// Lists `dir` with `opts`, requiring the io_uring path unless the fallback is forced.
async fn our_listing(dir: &Path, opts: &DirOptions, want_uring: bool) -> Result<Listing> {
    let mut d = opts.open(dir).await?;
    ensure!(
        d.uses_io_uring() == want_uring,
        "{}: uses_io_uring() is {}",
        dir.display(),
        d.uses_io_uring()
    );
    let mut out = Listing::new();
    while let Some(e) = d.next().await {
        let e = e?;
        let kind = e.file_type().await?;
        let name = e.file_name().to_owned();
        ensure!(
            out.insert(name.clone(), (e.ino(), kind)).is_none(),
            "{}: {name:?} returned twice",
            dir.display()
        );
    }
    ensure!(d.next().await.is_none(), "the end is not sticky");
    d.close().await?;
    Ok(out)
}

/// Names in the order `opts` returns them.
async fn sequence(dir: &Path, opts: &DirOptions) -> Result<Vec<OsString>> {
    let mut d = opts.open(dir).await?;
    let mut names = Vec::new();
    while let Some(e) = d.next().await {
        names.push(e?.file_name().to_owned());
    }
    d.close().await?;
    Ok(names)
}

/// The ways of reading compared against std: io_uring and fallback, with buffers that
/// take many reads and one.
fn variants() -> Vec<(&'static str, DirOptions, bool)> {
    vec![
        ("io_uring", DirOptions::new(), true),
        ("io_uring 512 B", DirOptions::new().buffer_size(512), true),
        ("io_uring 4 KiB", DirOptions::new().buffer_size(4096), true),
        ("fallback", DirOptions::new().force_fallback(true), false),
        (
            "fallback 512 B",
            DirOptions::new().buffer_size(512).force_fallback(true),
            false,
        ),
    ]
}

async fn compare_all(dir: &Path) -> Result<usize> {
    let want = std_listing(dir)?;
    for (what, opts, uring) in variants() {
        let got = our_listing(dir, &opts, uring)
            .await
            .with_context(|| format!("{} ({what})", dir.display()))?;
        if got != want {
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            bail!(
                "{} ({what}): {} entries, read_dir {}; missing {missing:?}, extra {extra:?}",
                dir.display(),
                got.len(),
                want.len()
            );
        }
    }
    Ok(want.len())
}

/// A fresh directory `base/name` with `n` files named by `name_of(i)`.
/// A fresh `base/name` (emptied if a previous run left it) with `n` entries.
fn populate(
    base: &str,
    name: &str,
    n: usize,
    name_of: impl Fn(usize) -> OsString,
) -> Result<PathBuf> {
    let dir = Path::new(base).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    crate::fixtures::populate(&dir, n, name_of)?;
    Ok(dir)
}

/// One of every file type this crate tells apart.
fn mixed_types(base: &str) -> Result<PathBuf> {
    let dir = populate(base, "dir-types", 0, numbered)?;
    std::fs::write(dir.join("file"), b"data")?;
    std::fs::create_dir(dir.join("subdir"))?;
    std::os::unix::fs::symlink("file", dir.join("link"))?;
    std::os::unix::fs::symlink("nowhere", dir.join("dangling"))?;
    let fifo = CString::new(dir.join("fifo").as_os_str().as_bytes())?;
    // SAFETY: `fifo` is a valid NUL-terminated path.
    ensure!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) } == 0, "mkfifo");
    std::os::unix::net::UnixListener::bind(dir.join("sock"))?;
    Ok(dir)
}

fn uses_io_uring() -> Result<()> {
    let verdict = uring_getdents::detect();
    ensure!(
        verdict.is_available(),
        "detection on the patched kernel: {verdict:?}"
    );
    tokio_uring::start(async {
        let d = Dir::open("/tmp").await?;
        ensure!(d.uses_io_uring(), "Dir does not use IORING_OP_GETDENTS");
        d.close().await?;
        let d = DirOptions::new().force_fallback(true).open("/tmp").await?;
        ensure!(!d.uses_io_uring(), "force_fallback(true) still uses the op");
        d.close().await?;
        Ok(())
    })
}

fn listings() -> Result<()> {
    tokio_uring::start(async {
        // tmpfs and the ext2 root.
        for base in ["/tmp", "/root"] {
            let empty = populate(base, "dir-empty", 0, numbered)?;
            ensure!(compare_all(&empty).await? == 0);
            let one = populate(base, "dir-one", 1, numbered)?;
            ensure!(compare_all(&one).await? == 1);
            let thousand = populate(base, "dir-1000", 1000, numbered)?;
            ensure!(compare_all(&thousand).await? == 1000);
            let names = odd_names();
            let odd = populate(base, "dir-odd", names.len(), |i| names[i].clone())?;
            ensure!(compare_all(&odd).await? == names.len());
            let types = mixed_types(base)?;
            ensure!(compare_all(&types).await? == 6);
        }
        for dir in ["/", "/dev", "/proc/self", "/sys/class"] {
            compare_all(Path::new(dir)).await?;
        }
        Ok(())
    })
}

fn hundred_thousand() -> Result<()> {
    tokio_uring::start(async {
        for base in ["/tmp", "/root"] {
            let dir = populate(base, "dir-100k", 100_000, numbered)?;
            ensure!(compare_all(&dir).await? == 100_000);
            let uring = sequence(&dir, &DirOptions::new()).await?;
            let fallback = sequence(&dir, &DirOptions::new().force_fallback(true)).await?;
            ensure!(uring == fallback, "{}: sequences differ", dir.display());
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    })
}

fn fallback_identical() -> Result<()> {
    tokio_uring::start(async {
        let names = odd_names();
        let dirs = [
            populate("/tmp", "dir-seq", 5000, numbered)?,
            populate("/root", "dir-seq", 5000, numbered)?,
            populate("/tmp", "dir-seq-odd", names.len(), |i| names[i].clone())?,
            PathBuf::from("/dev"),
            PathBuf::from("/"),
        ];
        for dir in &dirs {
            for size in [512, 4096, 32 * 1024] {
                let uring = sequence(dir, &DirOptions::new().buffer_size(size)).await?;
                let fallback = sequence(
                    dir,
                    &DirOptions::new().buffer_size(size).force_fallback(true),
                )
                .await?;
                ensure!(
                    uring == fallback,
                    "{} ({size} B): io_uring gave {} entries, fallback {}, or another order",
                    dir.display(),
                    uring.len(),
                    fallback.len()
                );
            }
        }
        Ok(())
    })
}

/// Polls `fut` exactly once.
async fn poll_once<F: Future>(mut fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

fn cancellation() -> Result<()> {
    let dir = populate("/tmp", "dir-cancel", 3000, numbered)?;
    let want: BTreeSet<OsString> = std_listing(&dir)?.into_keys().collect();
    tokio_uring::start(async {
        for round in 0..5 {
            let mut d = Dir::open_with_buffer(&dir, 512).await?;
            ensure!(
                d.uses_io_uring(),
                "Dir reads without the op: {:?}",
                uring_getdents::detect()
            );
            let mut names = Vec::new();
            let mut dropped = 0;
            loop {
                // One poll submits the GETDENTS; the future is then dropped with the
                // request in flight, and a fresh next() must pick it up.
                let first = {
                    let fut = std::pin::pin!(d.next());
                    poll_once(fut).await
                };
                let next = match first {
                    Poll::Ready(next) => next,
                    Poll::Pending => {
                        dropped += 1;
                        if round % 2 == 1 {
                            // Other ring traffic while nobody waits for the read.
                            Dir::open("/").await?.close().await?;
                        }
                        d.next().await
                    }
                };
                match next {
                    Some(e) => names.push(e?.file_name().to_owned()),
                    None => break,
                }
            }
            d.close().await?;
            let unique: BTreeSet<OsString> = names.iter().cloned().collect();
            ensure!(
                unique.len() == names.len(),
                "round {round}: an entry was returned twice"
            );
            ensure!(
                unique == want,
                "round {round}: {} of {} entries",
                unique.len(),
                want.len()
            );
            ensure!(
                dropped > 20,
                "round {round}: only {dropped} reads were in flight when dropped"
            );
        }
        // Closing or dropping a Dir with a read in flight, then listing again.
        for close in [true, false] {
            let mut d = Dir::open_with_buffer(&dir, 512).await?;
            {
                let fut = std::pin::pin!(d.next());
                ensure!(poll_once(fut).await.is_pending(), "the read did not wait");
            }
            if close {
                d.close().await?;
            } else {
                drop(d);
            }
            let again: BTreeSet<OsString> = sequence(&dir, &DirOptions::new())
                .await?
                .into_iter()
                .collect();
            ensure!(again == want, "listing after an abandoned read differs");
        }
        Ok(())
    })
}

fn many_on_one_ring() -> Result<()> {
    let mut dirs = Vec::new();
    for i in 0..50 {
        dirs.push(populate(
            "/tmp/dir-many",
            &format!("d{i}"),
            50 + i * 13,
            numbered,
        )?);
    }
    tokio_uring::start(async {
        for (opts, want_uring) in [
            (DirOptions::new().buffer_size(512), true),
            (DirOptions::new(), true),
            (
                DirOptions::new().buffer_size(512).force_fallback(true),
                false,
            ),
        ] {
            // All 50 are open, and with io_uring have reads in flight, at the same time.
            let handles: Vec<_> = dirs
                .iter()
                .cloned()
                .map(|d| {
                    let opts = opts.clone();
                    tokio_uring::spawn(async move {
                        let mut dir = opts.open(&d).await?;
                        ensure!(dir.uses_io_uring() == want_uring, "wrong path");
                        let mut names = BTreeSet::new();
                        while let Some(e) = dir.next().await {
                            let name = e?.file_name().to_owned();
                            ensure!(names.insert(name.clone()), "{name:?} returned twice");
                        }
                        dir.close().await?;
                        Ok::<_, anyhow::Error>((d, names))
                    })
                })
                .collect();
            for h in handles {
                let (d, names) = h.await??;
                let want: BTreeSet<OsString> = std_listing(&d)?.into_keys().collect();
                ensure!(names == want, "{}: listing differs", d.display());
            }
        }
        Ok(())
    })
}

fn errors() -> Result<()> {
    std::fs::write("/tmp/dir-plain-file", b"x")?;
    tokio_uring::start(async {
        let err = match Dir::open("/tmp/dir-plain-file").await {
            Ok(_) => bail!("opened a regular file as a directory"),
            Err(e) => e,
        };
        ensure!(
            err.kind() == std::io::ErrorKind::NotADirectory,
            "regular file: {err} ({:?})",
            err.kind()
        );
        ensure!(err.to_string().contains("/tmp/dir-plain-file"), "{err}");
        let err = match Dir::open("/tmp/dir-no-such").await {
            Ok(_) => bail!("opened a missing path"),
            Err(e) => e,
        };
        ensure!(err.kind() == std::io::ErrorKind::NotFound, "missing: {err}");
        ensure!(err.to_string().contains("/tmp/dir-no-such"), "{err}");
        // A directory removed while open: GETDENTS itself fails, through the ring.
        for base in ["/tmp", "/root"] {
            let gone = Path::new(base).join("dir-gone");
            std::fs::create_dir_all(&gone)?;
            let mut d = Dir::open(&gone).await?;
            ensure!(
                d.uses_io_uring(),
                "Dir reads without the op: {:?}",
                uring_getdents::detect()
            );
            std::fs::remove_dir(&gone)?;
            match d.next().await {
                Some(Err(e)) => {
                    ensure!(e.kind() == std::io::ErrorKind::NotFound, "{e}");
                    let msg = e.to_string();
                    ensure!(
                        msg.starts_with("getdents ") && msg.contains(&*gone.to_string_lossy()),
                        "{msg}"
                    );
                }
                other => bail!("removed directory: {other:?}"),
            }
            ensure!(
                d.next().await.is_none(),
                "the listing went on after an error"
            );
            d.close().await?;
        }
        Ok(())
    })
}

fn metadata() -> Result<()> {
    let dir = mixed_types("/root")?;
    std::fs::write(dir.join("file"), vec![1u8; 10_000])?;
    tokio_uring::start(async {
        let mut d = Dir::open(&dir).await?;
        ensure!(
            d.uses_io_uring(),
            "Dir reads without the op: {:?}",
            uring_getdents::detect()
        );
        let mut n = 0;
        while let Some(e) = d.next().await {
            let e = e?;
            let want = std::fs::symlink_metadata(e.path())?;
            let got = e.metadata().await?;
            let name = e.file_name().to_string_lossy().into_owned();
            ensure!(
                got.ino() == want.ino() && got.ino() == e.ino(),
                "{name}: ino"
            );
            ensure!(got.len() == want.len(), "{name}: len");
            ensure!(got.nlink() == want.nlink(), "{name}: nlink");
            ensure!(got.mode() == want.mode(), "{name}: mode");
            ensure!(got.blocks() == want.blocks(), "{name}: blocks");
            ensure!(got.modified()? == want.modified()?, "{name}: mtime");
            let kind = FileType::from(want.file_type());
            ensure!(got.file_type() == kind, "{name}: metadata type");
            ensure!(e.file_type().await? == kind, "{name}: d_type");
            n += 1;
        }
        ensure!(n == 6, "{n} entries");
        d.close().await?;
        Ok(())
    })
}
