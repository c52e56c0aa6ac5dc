//! Dir as a futures Stream.

mod common;

use common::*;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::BTreeSet;
use std::ffi::OsString;
use tokio_uring_dir::{Dir, DirOptions};

#[test]
fn collect_as_a_stream() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 777, numbered);
        let want: BTreeSet<OsString> = std_listing(tmp.path()).into_keys().collect();
        for (what, opts) in variants() {
            let dir = opts.open(tmp.path()).await.unwrap();
            let got: Vec<OsString> = dir
                .map_ok(|e| e.file_name().to_owned())
                .try_collect()
                .await
                .unwrap();
            assert_eq!(got.len(), 777, "{what}");
            assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want, "{what}");
        }
    });
}

#[test]
fn stream_and_next_share_one_position() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 300, numbered);
        let mut dir = DirOptions::new()
            .buffer_size(512)
            .emulate_in_flight(true)
            .open(tmp.path())
            .await
            .unwrap();
        let mut names = Vec::new();
        // Alternate between the inherent method and the Stream one.
        loop {
            let a = dir.next().await;
            let b = StreamExt::next(&mut dir).await;
            let mut end = false;
            for e in [a, b] {
                match e {
                    Some(e) => names.push(e.unwrap().file_name().to_owned()),
                    None => end = true,
                }
            }
            if end {
                break;
            }
        }
        let set: BTreeSet<OsString> = names.iter().cloned().collect();
        assert_eq!(set.len(), names.len());
        assert_eq!(set.len(), 300);
        dir.close().await.unwrap();
    });
}

#[test]
fn stream_combinators() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path(), 50, numbered);
        std::fs::create_dir(tmp.path().join("a-dir")).unwrap();
        let dirs: Vec<_> = Dir::open(tmp.path())
            .await
            .unwrap()
            .filter_map(|e| async move {
                let e = e.ok()?;
                e.file_type().await.ok()?.is_dir().then_some(e)
            })
            .collect()
            .await;
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].file_name(), "a-dir");
    });
}
