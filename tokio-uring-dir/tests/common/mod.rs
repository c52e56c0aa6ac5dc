//! Helpers shared by the integration tests: trees to list, and the reference listing.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
use tokio_uring_dir::{Dir, DirOptions, FileType};

/// What a listing says about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub ino: u64,
    pub kind: FileType,
}

pub type Listing = BTreeMap<OsString, Seen>;

/// Creates `n` empty files in `dir`, named by `name(i)`.
pub fn populate(dir: &Path, n: usize, name: impl Fn(usize) -> OsString) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::File::create(dir.join(name(i))).unwrap();
    }
}

pub fn numbered(i: usize) -> OsString {
    OsString::from(format!("entry-{i:06}"))
}

/// The longest possible name, names that are not UTF-8, and every byte value that a
/// name may contain.
pub fn odd_names() -> Vec<OsString> {
    let mut names = vec![
        OsString::from("x".repeat(255)),
        OsString::from("é".repeat(127)), // 254 bytes
        OsStr::from_bytes(&[0xff, 0xfe, b'a']).to_owned(),
        OsStr::from_bytes(&[b'z'; 255]).to_owned(),
        OsStr::from_bytes(&[0x80; 255]).to_owned(),
        OsString::from("new\nline"),
        OsString::from("..."),
        OsString::from(".hidden"),
    ];
    let all: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').collect();
    for chunk in all.chunks(40) {
        if chunk != b"." && chunk != b".." {
            names.push(OsStr::from_bytes(chunk).to_owned());
        }
    }
    names
}

/// The reference: std::fs::read_dir.
pub fn std_listing(dir: &Path) -> Listing {
    let mut out = Listing::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let seen = Seen {
            ino: e.ino(),
            kind: FileType::from(e.file_type().unwrap()),
        };
        assert!(out.insert(e.file_name(), seen).is_none());
    }
    out
}

/// Lists `dir` with `opts`, in order, failing on a duplicate name.
pub async fn names_in_order(dir: &Path, opts: &DirOptions) -> io::Result<Vec<OsString>> {
    let mut d = opts.open(dir).await?;
    let mut names = Vec::new();
    while let Some(e) = d.next().await {
        names.push(e?.file_name().to_owned());
    }
    d.close().await?;
    Ok(names)
}

/// Lists `dir` with `opts`, with inode and type of each entry; panics on a duplicate.
pub async fn our_listing(dir: &Path, opts: &DirOptions) -> io::Result<Listing> {
    let mut d = opts.open(dir).await?;
    let mut out = Listing::new();
    while let Some(e) = d.next().await {
        let e = e?;
        assert_eq!(e.path(), dir.join(e.file_name()));
        let seen = Seen {
            ino: e.ino(),
            kind: e.file_type().await?,
        };
        let name = e.file_name().to_owned();
        assert!(
            out.insert(name.clone(), seen).is_none(),
            "{name:?} returned twice"
        );
    }
    // The end is sticky.
    assert!(d.next().await.is_none());
    d.close().await?;
    Ok(out)
}

/// Every way of reading this crate offers, named for failure messages.
pub fn variants() -> Vec<(&'static str, DirOptions)> {
    vec![
        ("default", DirOptions::new()),
        ("fallback", DirOptions::new().force_fallback(true)),
        (
            "inline fallback",
            DirOptions::new().force_fallback(true).inline_fallback(true),
        ),
        ("small buffer", DirOptions::new().buffer_size(512)),
        (
            "small buffer fallback",
            DirOptions::new().buffer_size(600).force_fallback(true),
        ),
        (
            "emulated in flight",
            DirOptions::new().buffer_size(1000).emulate_in_flight(true),
        ),
        (
            "emulated in flight, no read-ahead",
            DirOptions::new()
                .buffer_size(1000)
                .emulate_in_flight(true)
                .read_ahead(false),
        ),
        ("no read-ahead", DirOptions::new().read_ahead(false)),
    ]
}

/// Compares every variant's listing of `dir` with std's; returns the number of entries.
pub async fn check_all_variants(dir: &Path) -> usize {
    let want = std_listing(dir);
    for (what, opts) in variants() {
        let got = our_listing(dir, &opts).await.unwrap();
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
            let differ: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k).is_some_and(|w| w != *v))
                .take(5)
                .collect();
            panic!(
                "{} ({what}): {} entries, std {}; missing {missing:?}, extra {extra:?}, differing {differ:?}",
                dir.display(),
                got.len(),
                want.len()
            );
        }
    }
    want.len()
}

/// Polls `fut` exactly once.
pub async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Lists `dir`, starting each `next()` with a single poll and dropping the future when
/// it is pending (then awaiting a fresh `next()`); returns the names and how many
/// `next()` futures were dropped while a read was in flight.
pub async fn list_with_cancellations(dir: &mut Dir) -> io::Result<(Vec<OsString>, usize)> {
    let mut names = Vec::new();
    let mut dropped = 0;
    loop {
        let first = {
            let fut = std::pin::pin!(dir.next());
            poll_once(fut).await
        };
        let next = match first {
            Poll::Ready(next) => next,
            Poll::Pending => {
                dropped += 1;
                dir.next().await
            }
        };
        match next {
            Some(e) => names.push(e?.file_name().to_owned()),
            None => return Ok((names, dropped)),
        }
    }
}

/// A `Dir` on `dir` whose runtime shut down while one of its reads (emulated, so one
/// the kernel has finished but nobody reaped) was in flight.
pub fn dir_outliving_its_runtime(dir: &Path) -> Dir {
    tokio_uring::start(async {
        let mut d = DirOptions::new()
            .emulate_in_flight(true)
            .open(dir)
            .await
            .unwrap();
        {
            let fut = std::pin::pin!(d.next());
            assert!(poll_once(fut).await.is_pending());
        }
        d
    })
}

/// Descriptors open in this process now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Ring round trips until the descriptor count is back to `want`. At least one first,
/// so that requests still queued in the submission ring have reached the kernel (and
/// an open abandoned in flight is closed at a later open, once it has completed).
pub async fn settles_to(want: usize) -> bool {
    for _ in 0..100 {
        Dir::open("/").await.unwrap().close().await.unwrap();
        if open_fds() == want {
            return true;
        }
    }
    false
}
