//! The walk against find(1) and du(1) on real trees, in every configuration.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio_uring_dir::{DirOptions, Order, WalkDir, WalkEntry};

/// A tree with what a walk must handle: depth, width, empty directories, symlinks to
/// a directory, to a file, dangling and looping, a FIFO, and names that are not UTF-8.
fn build_tree(root: &Path) {
    let mut deep = root.join("deep");
    for i in 0..12 {
        deep = deep.join(format!("level{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), b"at the bottom").unwrap();
    let wide = root.join("wide");
    for d in 0..40 {
        let sub = wide.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..(d * 3) {
            std::fs::write(sub.join(format!("f{f}")), vec![b'x'; f * 7]).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("empty/inner")).unwrap();
    let odd = root.join(OsStr::from_bytes(b"odd-\xff\xfe"));
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join(OsStr::from_bytes(b"\x80name")), b"12345").unwrap();
    std::fs::write(root.join("file"), vec![0u8; 10_000]).unwrap();
    std::os::unix::fs::symlink("wide/d05", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("file", root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("..", root.join("empty/loop-up")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
}

fn tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    build_tree(tmp.path());
    tmp
}

/// `find ARGS -printf '%d %y %p\0'` as a set of (depth, type letter, path) lines.
fn find(args: &[&OsStr]) -> BTreeSet<Vec<u8>> {
    let out = Command::new("find")
        .args(args)
        .args(["-printf", "%d %y %p\\0"])
        .output()
        .unwrap();
    out.stdout
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn type_letter(e: &WalkEntry) -> char {
    let t = e.file_type();
    if t.is_dir() {
        'd'
    } else if t.is_file() {
        'f'
    } else if t.is_symlink() {
        'l'
    } else if t.is_fifo() {
        'p'
    } else if t.is_socket() {
        's'
    } else {
        '?'
    }
}

fn line(e: &WalkEntry) -> Vec<u8> {
    let mut l = format!("{} {} ", e.depth(), type_letter(e)).into_bytes();
    l.extend_from_slice(e.path().as_os_str().as_bytes());
    l
}

/// Walks to the end; the entries as find-like lines, and the errors.
async fn walk(walk: WalkDir) -> (BTreeSet<Vec<u8>>, Vec<io::Error>, Vec<WalkEntry>) {
    let mut walk = walk.walk();
    let mut lines = BTreeSet::new();
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    while let Some(e) = walk.next().await {
        match e {
            Ok(e) => {
                assert!(lines.insert(line(&e)), "twice: {:?}", e.path());
                entries.push(e);
            }
            Err(e) => errors.push(e),
        }
    }
    assert!(walk.next().await.is_none(), "the end is not sticky");
    (lines, errors, entries)
}

/// Every way of walking, named for failure messages.
fn configurations(root: &Path) -> Vec<(&'static str, WalkDir)> {
    let w = || WalkDir::new(root);
    vec![
        ("default", w()),
        ("one directory at a time", w().max_open(1)),
        ("two descriptors", w().max_open(2)),
        ("breadth first", w().order(Order::BreadthFirst)),
        (
            "breadth first, one at a time",
            w().order(Order::BreadthFirst).max_open(1),
        ),
        ("metadata", w().metadata(true)),
        ("same filesystem", w().same_file_system(true)),
        (
            "fallback",
            w().dir_options(DirOptions::new().force_fallback(true)),
        ),
        (
            "inline fallback, small buffers",
            w().dir_options(
                DirOptions::new()
                    .force_fallback(true)
                    .inline_fallback(true)
                    .buffer_size(512),
            ),
        ),
        (
            "emulated in flight, small buffers, 3 descriptors",
            w().max_open(3)
                .dir_options(DirOptions::new().emulate_in_flight(true).buffer_size(512)),
        ),
        (
            "no read-ahead",
            w().dir_options(DirOptions::new().read_ahead(false)),
        ),
    ]
}

#[test]
fn every_configuration_finds_what_find_finds() {
    let tmp = tree();
    let want = find(&[tmp.path().as_os_str()]);
    assert!(want.len() > 600, "{}", want.len());
    tokio_uring::start(async {
        for (what, config) in configurations(tmp.path()) {
            let (got, errors, entries) = walk(config).await;
            assert!(errors.is_empty(), "{what}: {errors:?}");
            let missing: Vec<_> = want.difference(&got).take(3).collect();
            let extra: Vec<_> = got.difference(&want).take(3).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{what}: {} entries, find {}; missing {missing:?}, extra {extra:?}",
                got.len(),
                want.len()
            );
            // The root comes first, and every entry's inode is the one lstat gives.
            assert_eq!(entries[0].depth(), 0, "{what}");
            for e in &entries {
                let ino = std::os::unix::fs::MetadataExt::ino(
                    &std::fs::symlink_metadata(e.path()).unwrap(),
                );
                assert_eq!(e.ino(), ino, "{what}: {:?}", e.path());
            }
        }
    });
}

#[test]
fn metadata_adds_up_to_du() {
    let tmp = tree();
    let du = Command::new("du")
        .arg("-bs")
        .arg(tmp.path())
        .output()
        .unwrap();
    let du: u64 = String::from_utf8(du.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tokio_uring::start(async {
        for (what, config) in [
            ("ring", WalkDir::new(tmp.path())),
            (
                "fallback",
                WalkDir::new(tmp.path()).dir_options(DirOptions::new().force_fallback(true)),
            ),
        ] {
            let (_, errors, entries) = walk(config.metadata(true)).await;
            assert!(errors.is_empty(), "{errors:?}");
            // No hard links in this tree, so every entry counts once, as in du.
            let sum: u64 = entries
                .iter()
                .map(|e| e.metadata().expect("metadata asked for").len())
                .sum();
            assert_eq!(sum, du, "{what}");
            for e in &entries {
                let m = e.metadata().unwrap();
                assert_eq!(m.ino(), e.ino());
                assert_eq!(m.file_type(), e.file_type());
            }
        }
        let (_, _, entries) = walk(WalkDir::new(tmp.path())).await;
        assert!(entries.iter().all(|e| e.metadata().is_none()));
    });
}

#[test]
fn max_depth_is_find_maxdepth() {
    let tmp = tree();
    tokio_uring::start(async {
        for depth in [0usize, 1, 2, 5] {
            let d = depth.to_string();
            let want = find(&[
                tmp.path().as_os_str(),
                OsStr::new("-maxdepth"),
                OsStr::new(&d),
            ]);
            for (what, config) in configurations(tmp.path()) {
                let (got, errors, _) = walk(config.max_depth(depth)).await;
                assert!(errors.is_empty(), "{what}");
                assert_eq!(got, want, "{what}, max_depth {depth}");
            }
        }
    });
}

#[test]
fn following_links_is_find_l_and_a_loop_is_an_error() {
    let tmp = tree();
    // find -L reports the loop on stderr and leaves it out; the dangling link stays a
    // link. Our walk reports the loop as an error item and the dangling link as an
    // error too (its target cannot be stat'ed), so compare without those two.
    let loop_up = tmp.path().join("empty/loop-up");
    let dangling = tmp.path().join("dangling");
    let keep = |l: &Vec<u8>| {
        let p = Path::new(OsStr::from_bytes(
            &l[l.iter().position(|&b| b == b'/').unwrap()..],
        ));
        p != loop_up && p != dangling
    };
    let want: BTreeSet<_> = find(&[OsStr::new("-L"), tmp.path().as_os_str()])
        .into_iter()
        .filter(keep)
        .collect();
    tokio_uring::start(async {
        for (what, config) in configurations(tmp.path()) {
            let (got, errors, entries) = walk(config.follow_links(true)).await;
            let got: BTreeSet<_> = got.into_iter().filter(keep).collect();
            assert_eq!(got, want, "{what}");
            let mut paths: Vec<PathBuf> = errors
                .iter()
                .map(|e| {
                    let op = e
                        .get_ref()
                        .unwrap()
                        .downcast_ref::<tokio_uring_dir::OpError>();
                    op.unwrap().path().to_path_buf()
                })
                .collect();
            paths.sort();
            assert_eq!(
                paths,
                [dangling.clone(), loop_up.clone()],
                "{what}: {errors:?}"
            );
            let followed = entries
                .iter()
                .find(|e| e.path() == tmp.path().join("link-to-dir"))
                .unwrap();
            assert!(followed.file_type().is_dir() && followed.path_is_symlink());
        }
    });
}

#[test]
fn a_directory_removed_before_it_is_opened_is_one_error_and_the_walk_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["a", "b", "c"] {
        std::fs::create_dir_all(tmp.path().join(d).join("inner")).unwrap();
    }
    tokio_uring::start(async {
        // One directory at a time: "b" is only opened after the root was read, so it
        // can be removed in between.
        let mut walk = WalkDir::new(tmp.path()).max_open(1).walk();
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        while let Some(e) = walk.next().await {
            match e {
                Ok(e) => {
                    if e.depth() == 1 && e.file_name() == "b" {
                        std::fs::remove_dir_all(e.path()).unwrap();
                    }
                    seen.push(e.path());
                }
                Err(e) => errors.push(e),
            }
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind(), io::ErrorKind::NotFound);
        assert!(errors[0].to_string().contains("open"), "{}", errors[0]);
        for d in ["a", "c"] {
            assert!(seen.contains(&tmp.path().join(d).join("inner")), "{d}");
        }
    });
}

#[test]
fn a_root_that_is_missing_or_not_a_directory() {
    let tmp = tree();
    tokio_uring::start(async {
        let (got, errors, _) = walk(WalkDir::new(tmp.path().join("missing"))).await;
        assert!(got.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind(), io::ErrorKind::NotFound);
        let (got, errors, entries) = walk(WalkDir::new(tmp.path().join("file"))).await;
        assert!(errors.is_empty());
        assert_eq!(got.len(), 1);
        assert!(entries[0].file_type().is_file());
        assert_eq!(entries[0].file_name(), "file");
        // A root that is a symlink to a directory is followed.
        let (got, errors, _) = walk(WalkDir::new(tmp.path().join("link-to-dir"))).await;
        assert!(errors.is_empty());
        assert_eq!(got.len(), 1 + 15, "{got:?}");
    });
}

#[test]
fn a_walk_is_a_stream() {
    use futures_util::StreamExt;
    let tmp = tree();
    let want = find(&[tmp.path().as_os_str()]);
    tokio_uring::start(async {
        let got: BTreeSet<_> = WalkDir::new(tmp.path())
            .walk()
            .map(|e| line(&e.unwrap()))
            .collect()
            .await;
        assert_eq!(got, want);
    });
}
