//! Errors keep their kind and name the operation and the path; nothing panics.

mod common;

use common::*;
use std::io;
use tokio_uring_dir::{Dir, DirOptions, OpError};

fn op_of(err: &io::Error) -> &OpError {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<OpError>())
        .unwrap_or_else(|| panic!("not an OpError: {err:?}"))
}

#[test]
fn regular_file_is_not_a_directory() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        for opts in [DirOptions::new(), DirOptions::new().force_fallback(true)] {
            let err = opts.open(&file).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
            let msg = err.to_string();
            assert!(msg.starts_with("open "), "{msg}");
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            let op = op_of(&err);
            assert_eq!(op.op(), "open");
            assert_eq!(op.path(), file);
            assert_eq!(op.source_error().raw_os_error(), Some(libc::ENOTDIR));
        }
    });
}

#[test]
fn missing_path_is_not_found() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("no").join("such");
        let err = Dir::open(&missing).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&missing.display().to_string()));
        assert_eq!(
            op_of(&err).source_error().raw_os_error(),
            Some(libc::ENOENT)
        );
        let err = Dir::open("").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    });
}

#[test]
fn nul_in_path_is_invalid_input() {
    tokio_uring::start(async {
        let err = Dir::open("/tmp/a\0b").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().starts_with("open "), "{err}");
    });
}

#[test]
fn removed_directory_fails_once_then_ends() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        for (what, opts) in variants() {
            std::fs::create_dir_all(&gone).unwrap();
            let mut d = opts.open(&gone).await.unwrap();
            std::fs::remove_dir(&gone).unwrap();
            let err = match d.next().await {
                Some(Err(e)) => e,
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{what}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with("getdents "), "{what}: {msg}");
            assert!(msg.contains(&gone.display().to_string()), "{what}: {msg}");
            assert!(d.next().await.is_none(), "{what}: the listing goes on");
            d.close().await.unwrap();
        }
    });
}

#[test]
fn statx_of_a_vanished_entry_names_the_path() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("short-lived"), b"").unwrap();
        let mut d = Dir::open(tmp.path()).await.unwrap();
        let entry = d.next().await.unwrap().unwrap();
        std::fs::remove_file(entry.path()).unwrap();
        let err = entry.metadata().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.starts_with("statx "), "{msg}");
        assert!(msg.contains(&entry.path().display().to_string()), "{msg}");
        // The type came with the entry, so it needs no stat and still works.
        assert!(entry.file_type().await.unwrap().is_file());
        d.close().await.unwrap();
    });
}
