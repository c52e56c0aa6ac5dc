//! Dropping a `next()` future while its read is in flight loses and repeats nothing.
//!
//! On a kernel without IORING_OP_GETDENTS the fallback leaves a read in flight only on
//! the blocking pool, so these tests also use the emulated mode, where a real ring request (a NOP carrying the
//! result of a getdents64 already done) is pending when the future is dropped: exactly
//! the situation of a GETDENTS the kernel has completed but nobody has reaped.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::task::Poll;
use tokio_uring_dir::{Dir, DirOptions};

fn check(names: Vec<OsString>, dir: &std::path::Path) {
    let unique: BTreeSet<OsString> = names.iter().cloned().collect();
    assert_eq!(unique.len(), names.len(), "an entry was returned twice");
    let want: BTreeSet<OsString> = std_listing(dir).into_keys().collect();
    assert_eq!(unique, want, "entries lost");
}

#[test]
fn dropped_next_loses_and_repeats_nothing() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 2000, numbered);
        for (what, opts) in [
            ("default", DirOptions::new().buffer_size(1024)),
            (
                "fallback",
                DirOptions::new().buffer_size(1024).force_fallback(true),
            ),
            (
                "inline fallback",
                DirOptions::new()
                    .buffer_size(1024)
                    .force_fallback(true)
                    .inline_fallback(true),
            ),
            (
                "emulated",
                DirOptions::new().buffer_size(1024).emulate_in_flight(true),
            ),
        ] {
            let mut d = opts.open(tmp.path()).await.unwrap();
            let (names, dropped) = list_with_cancellations(&mut d).await.unwrap();
            check(names, tmp.path());
            // 2000 names of 12 bytes in 1 KiB buffers: dozens of reads, each in flight
            // (on the ring or the blocking pool) except inline.
            // (On the blocking pool a read may also be done by the time it is polled.)
            match what {
                "inline fallback" => {
                    assert_eq!(dropped, 0, "{what}: the inline fallback never waits")
                }
                "fallback" if !d.uses_io_uring() => {
                    assert!(dropped > 0, "{what}: no read was ever in flight")
                }
                _ => assert!(dropped > 20, "{what}: only {dropped} reads were in flight"),
            }
            d.close().await.unwrap();
        }
    });
}

#[test]
fn dropped_next_then_other_ring_work_then_continue() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 500, numbered);
        let opts = DirOptions::new().buffer_size(512).emulate_in_flight(true);
        let mut d = opts.open(tmp.path()).await.unwrap();
        let mut names = Vec::new();
        let mut dropped = 0;
        loop {
            let polled = {
                let fut = std::pin::pin!(d.next());
                poll_once(fut).await
            };
            match polled {
                Poll::Ready(Some(e)) => names.push(e.unwrap().file_name().to_owned()),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    dropped += 1;
                    // Let the read complete and be dispatched with nobody waiting for
                    // it, while other requests go through the same ring.
                    let other = Dir::open(tmp.path()).await.unwrap();
                    other.close().await.unwrap();
                }
            }
        }
        assert!(dropped > 5);
        check(names, tmp.path());
        d.close().await.unwrap();
    });
}

#[test]
fn close_with_a_read_in_flight() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 100, numbered);
        // Whether the very first poll must be pending: on the ring (emulated or real) it
        // must; inline it cannot be; on the blocking pool it usually is, but the pool
        // thread may finish before the poll looks.
        for (opts, first_pending) in [
            (DirOptions::new().emulate_in_flight(true), Some(true)),
            (
                DirOptions::new(),
                uring_getdents::detect().is_available().then_some(true),
            ),
            (DirOptions::new().force_fallback(true), None),
            (
                DirOptions::new().force_fallback(true).inline_fallback(true),
                Some(false),
            ),
        ] {
            let mut d = opts.open(tmp.path()).await.unwrap();
            let polled = {
                let fut = std::pin::pin!(d.next());
                poll_once(fut).await
            };
            if let Some(want) = first_pending {
                assert_eq!(polled.is_pending(), want, "{d:?}");
            }
            d.close().await.unwrap();
        }
    });
}

#[test]
fn drop_with_a_read_in_flight_and_keep_going() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 100, numbered);
        for _ in 0..50 {
            let mut d = DirOptions::new()
                .emulate_in_flight(true)
                .open(tmp.path())
                .await
                .unwrap();
            {
                let fut = std::pin::pin!(d.next());
                assert!(poll_once(fut).await.is_pending());
            }
            drop(d);
        }
        // The ring still works and the directory still lists completely.
        assert_eq!(check_all_variants(tmp.path()).await, 100);
    });
}

#[test]
fn dir_outliving_its_runtime_with_a_read_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 10, numbered);
    let want = std::fs::metadata(tmp.path()).unwrap();
    // The runtime shuts down while the read is in flight; its driver settles the read
    // before it goes away, so dropping the Dir afterwards frees the read's data and
    // closes the descriptor (rather than leaking it, as during the shutdown itself).
    let d = dir_outliving_its_runtime(tmp.path());
    let raw = d.as_fd().as_raw_fd();
    drop(d);
    // The number is closed, or (other tests run in parallel) reused for another file.
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes a struct stat into the buffer it is given.
    let rc = unsafe { libc::fstat(raw, st.as_mut_ptr()) };
    if rc == 0 {
        // SAFETY: fstat succeeded, so it filled the struct.
        let st = unsafe { st.assume_init() };
        assert!(
            (st.st_dev, st.st_ino) != (want.dev(), want.ino()),
            "the directory stayed open after its Dir was dropped"
        );
    }
}
