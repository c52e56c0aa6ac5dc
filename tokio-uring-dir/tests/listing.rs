//! Listings agree with std::fs::read_dir: names, inode numbers and file types.

mod common;

use common::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use tokio_uring_dir::{Dir, DirOptions, FileType};

#[test]
fn path_choice_follows_detection() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let available = uring_getdents::detect().is_available();
        let d = Dir::open(tmp.path()).await.unwrap();
        assert_eq!(d.uses_io_uring(), available);
        assert_eq!(d.path(), tmp.path());
        d.close().await.unwrap();
        let d = DirOptions::new()
            .force_fallback(true)
            .open(tmp.path())
            .await
            .unwrap();
        assert!(!d.uses_io_uring());
        d.close().await.unwrap();
    });
}

#[test]
fn empty_directory() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(check_all_variants(tmp.path()).await, 0);
        let mut d = Dir::open(tmp.path()).await.unwrap();
        assert!(d.next().await.is_none());
        assert!(d.next().await.is_none());
        d.close().await.unwrap();
    });
}

#[test]
fn one_entry() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 1, numbered);
        assert_eq!(check_all_variants(tmp.path()).await, 1);
    });
}

#[test]
fn thousand_entries() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 1000, numbered);
        assert_eq!(check_all_variants(tmp.path()).await, 1000);
    });
}

#[test]
fn hundred_thousand_entries() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 100_000, numbered);
        assert_eq!(check_all_variants(tmp.path()).await, 100_000);
    });
}

#[test]
fn long_and_non_utf8_names() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let names = odd_names();
        populate(tmp.path(), names.len(), |i| names[i].clone());
        assert_eq!(check_all_variants(tmp.path()).await, names.len());
        let listed = our_listing(tmp.path(), &DirOptions::new()).await.unwrap();
        assert!(listed.keys().any(|n| n.len() == 255));
        assert!(listed
            .keys()
            .any(|n| n.as_bytes() == [0xff, 0xfe, b'a'].as_slice()));
    });
}

#[test]
fn every_file_type() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::write(p.join("file"), b"data").unwrap();
        std::fs::create_dir(p.join("subdir")).unwrap();
        std::os::unix::fs::symlink("file", p.join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", p.join("dangling")).unwrap();
        std::os::unix::fs::symlink("subdir", p.join("dirlink")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
        let fifo = std::ffi::CString::new(p.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(check_all_variants(p).await, 7);
        let listed = our_listing(p, &DirOptions::new()).await.unwrap();
        let kinds: Vec<FileType> = listed.values().map(|s| s.kind).collect();
        type Is = fn(&FileType) -> bool;
        let wanted: [(&str, Is); 5] = [
            ("file", FileType::is_file),
            ("dir", FileType::is_dir),
            ("symlink", FileType::is_symlink),
            ("socket", FileType::is_socket),
            ("fifo", FileType::is_fifo),
        ];
        for (name, is) in wanted {
            assert!(kinds.iter().any(is), "{name} missing from {kinds:?}");
        }
    });
}

#[test]
fn io_uring_and_fallback_give_the_same_sequence() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 3000, numbered);
        let want = names_in_order(tmp.path(), &DirOptions::new().force_fallback(true))
            .await
            .unwrap();
        assert_eq!(want.len(), 3000);
        for (what, opts) in variants() {
            let got = names_in_order(tmp.path(), &opts).await.unwrap();
            assert!(got == want, "{what}: order or content differs");
        }
    });
}

#[test]
fn buffer_sizes_are_clamped() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        // 255-byte names: records of 280 bytes, which a too small buffer could not hold.
        populate(tmp.path(), 20, |i| OsString::from(format!("{i:0>255}")));
        let want = std_listing(tmp.path());
        for size in [0, 1, 279, 512, 4096, usize::MAX] {
            let got = our_listing(tmp.path(), &DirOptions::new().buffer_size(size))
                .await
                .unwrap();
            assert_eq!(got, want, "buffer size {size}");
            let mut d = Dir::open_with_buffer(tmp.path(), size).await.unwrap();
            let mut n = 0;
            while let Some(e) = d.next().await {
                e.unwrap();
                n += 1;
            }
            assert_eq!(n, 20);
            d.close().await.unwrap();
        }
    });
}

#[test]
fn relative_paths_and_entry_paths() {
    tokio_uring::start(async {
        let mut d = Dir::open(".").await.unwrap();
        let mut n = 0;
        while let Some(e) = d.next().await {
            let e = e.unwrap();
            assert_eq!(e.path(), std::path::Path::new(".").join(e.file_name()));
            n += 1;
        }
        assert_eq!(n, std::fs::read_dir(".").unwrap().count());
        d.close().await.unwrap();
    });
}

#[test]
fn the_fallback_reads_off_the_runtime_thread() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 10, numbered);
    tokio_uring::start(async {
        // On the blocking pool the first poll of a refill is pending unless the pool
        // thread happened to finish before the poll looked: over 50 directories, some
        // must have been pending. Inline, every first poll has its entry already.
        for inline in [false, true] {
            let opts = DirOptions::new()
                .force_fallback(true)
                .inline_fallback(inline);
            let mut pending = 0;
            for _ in 0..50 {
                let mut d = opts.open(tmp.path()).await.unwrap();
                let first = poll_once(std::pin::pin!(d.next())).await;
                if first.is_pending() {
                    pending += 1;
                } else {
                    assert!(matches!(first, std::task::Poll::Ready(Some(Ok(_)))));
                }
                // A read it started is kept: the listing is still complete.
                let mut n = usize::from(first.is_ready());
                while let Some(e) = d.next().await {
                    e.unwrap();
                    n += 1;
                }
                assert_eq!(n, 10, "inline: {inline}");
                d.close().await.unwrap();
            }
            if inline {
                assert_eq!(pending, 0, "the inline fallback waited");
            } else {
                assert!(pending > 0, "the fallback never left the runtime thread");
            }
        }
    });
}

#[test]
fn the_next_buffer_is_read_while_one_is_consumed() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 1000, numbered);
        for (read_ahead, want) in [
            (true, "reading_ahead: true"),
            (false, "reading_ahead: false"),
        ] {
            let mut d = DirOptions::new()
                .buffer_size(512)
                .emulate_in_flight(true)
                .read_ahead(read_ahead)
                .open(tmp.path())
                .await
                .unwrap();
            d.next().await.unwrap().unwrap();
            let state = format!("{d:?}");
            assert!(state.contains(want), "read_ahead({read_ahead}): {state}");
            let mut n = 1;
            while let Some(e) = d.next().await {
                e.unwrap();
                n += 1;
            }
            assert_eq!(n, 1000);
            d.close().await.unwrap();
        }
    });
}
