//! traverse against du -bs and find on real trees, every engine.

mod testenv;

use testenv::{assert_all_engines_match, traverse, As, TestTree, ENGINES};

#[test]
fn mixed_tree_matches_du_and_find() {
    let t = TestTree::new();
    t.file("a/one", 1)
        .file("a/big", 100_000)
        .file("a/empty", 0)
        .dir("empty-dir")
        .dir("a/b/c/d");
    t.hardlink("a/big", "a/big-link")
        .hardlink("a/big", "a/b/big-link-elsewhere");
    t.file("a/b/lonely", 7)
        .hardlink("a/b/lonely", "a/b/lonely2")
        .hardlink("a/b/lonely", "a/b/c/lonely3");
    t.symlink("one", "a/to-file")
        .symlink("../empty-dir", "a/to-dir")
        .symlink("nowhere", "a/dangling");
    t.symlink("loop2", "a/loop1")
        .symlink("loop1", "a/loop2")
        .symlink("self", "a/self");
    t.symlink("/", "a/to-root");
    t.sparse("a/sparse", 50_000_000);
    t.fifo("a/fifo");
    t.file(std::ffi::OsStr::new("a/\u{e9}t\u{e9}"), 3);
    t.file(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"a/bad-\xff\xfe"),
        5,
    );
    t.file("a/new\nline", 2);
    t.file("x".repeat(255), 11);
    assert_all_engines_match(t.root(), As::default());
}

#[test]
fn hundred_thousand_entries_in_one_directory() {
    let t = TestTree::new();
    t.many("wide", 100_000).file("wide/data", 1234);
    assert_all_engines_match(t.root(), As::default());
}

#[test]
fn depth_five_thousand_within_a_small_descriptor_limit() {
    let t = TestTree::new();
    t.deep("deep", 5000);
    // Counted once although one engine may stat it by path near the top and by
    // descriptor at the bottom (tokio-per-entry leaves PATH_MAX to the sync walker).
    t.file("shallow", 1000)
        .hardlink_at_bottom("deep", "shallow");
    // 64 descriptors: far fewer than the depth, so open directories must stay bounded.
    assert_all_engines_match(
        t.root(),
        As {
            nofile: Some(64),
            ..As::default()
        },
    );
}

#[test]
fn several_paths_beyond_path_max_at_once_within_a_small_descriptor_limit() {
    // Side by side, each deep beyond PATH_MAX: the tokio-per-entry engine hands each to
    // the sync walker, which must not hold descriptors for several at once.
    let t = TestTree::new();
    for i in 0..4 {
        t.deep(format!("deep{i}"), 2500);
    }
    assert_all_engines_match(
        t.root(),
        As {
            nofile: Some(64),
            ..As::default()
        },
    );
}

#[test]
fn branching_trees_within_a_small_descriptor_limit() {
    // The tokio engine keeps a directory open while its subdirectories wait; here more
    // wait than 48 descriptors allow, so some give theirs up and are opened again by
    // path when their turn comes, in the combs also beyond PATH_MAX (150-byte names,
    // 50 levels).
    let t = TestTree::new();
    t.ternary("tri", 5);
    for i in 0..8 {
        t.comb(format!("comb{i}"), 50, 150);
    }
    let how = As {
        nofile: Some(48),
        ..As::default()
    };
    assert_all_engines_match(t.root(), how);
    let debug = As {
        env: &[("TRAVERSE_DEBUG", "1")],
        ..how
    };
    // Which directories wait when depends on the order hops finish in: a few runs.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let got = traverse("tokio", t.root(), debug);
        let counters = got
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("traverse tokio: "))
            .unwrap_or_else(|| panic!("no counters: {}", got.stderr))
            .to_owned();
        let reopened = |suffix: &str| -> u64 {
            let before = &counters[..counters.find(suffix).expect(suffix)];
            before.rsplit([' ', '(']).next().unwrap().parse().unwrap()
        };
        let (all, deep) = (reopened(" reopened"), reopened(" beyond PATH_MAX"));
        assert!(all > 0, "no directory was reopened: {counters}");
        if deep > 0 {
            return;
        }
        seen.push(counters);
    }
    panic!("no directory beyond PATH_MAX was reopened: {seen:?}");
}

#[test]
fn deep_and_wide_with_branches_within_the_limit() {
    let t = TestTree::new();
    for i in 0..40 {
        t.deep(format!("b{i}"), 60);
    }
    assert_all_engines_match(
        t.root(),
        As {
            nofile: Some(48),
            ..As::default()
        },
    );
}

#[test]
fn unreadable_directory_is_reported_and_walk_goes_on() {
    let t = TestTree::new();
    t.file("ok/a", 10)
        .file("locked/secret", 1000)
        .file("zz/b", 20)
        .mode("locked", 0o000);
    let how = As {
        nobody: true,
        ..As::default()
    };
    // du itself: exit 1, the locked directory's own size counted, its contents not.
    assert_all_engines_match(t.root(), how);
    for engine in ENGINES {
        let got = traverse(engine, t.root(), how);
        assert!(
            got.stderr.contains("cannot read directory"),
            "{engine}: {}",
            got.stderr
        );
        assert!(got.stderr.contains("locked"), "{engine}: {}", got.stderr);
        assert_eq!(got.status, Some(1), "{engine}");
    }
}

#[test]
fn a_missing_path_is_an_error_with_status_1() {
    let t = TestTree::new();
    for engine in ENGINES {
        let missing = t.path("does-not-exist");
        let got = traverse(engine, &missing, As::default());
        assert_eq!(got.status, Some(1), "{engine}");
        // Worded as du words it, without Rust's "(os error 2)".
        let du = std::process::Command::new("du")
            .arg("-bs")
            .arg(&missing)
            .output()
            .unwrap();
        let du_says = String::from_utf8_lossy(&du.stderr);
        let du_says = du_says.trim().trim_start_matches("du: ");
        assert!(
            got.stderr.trim().ends_with(du_says),
            "{engine}: {} (du: {du_says})",
            got.stderr
        );
    }
}

#[test]
fn a_result_that_cannot_be_written_is_an_error_with_status_1() {
    let t = TestTree::new();
    t.file("a/f", 10);
    // /dev/full fails every write with ENOSPC, like a full disk under a redirect.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_traverse"))
        .arg(t.path("a"))
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write error"), "{stderr}");
}

#[test]
fn a_symlink_or_file_given_as_the_path_is_not_followed() {
    let t = TestTree::new();
    t.file("d/f", 1000).symlink("d", "link").file("plain", 42);
    assert_all_engines_match(&t.path("link"), As::default());
    assert_all_engines_match(&t.path("plain"), As::default());
    assert_all_engines_match(&t.path("d"), As::default());
}

#[test]
fn several_paths_give_one_line_each() {
    let t = TestTree::new();
    t.file("a/f", 10).file("b/g", 20);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_traverse"))
        .arg(t.path("a"))
        .arg(t.path("b"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<_> = text
        .lines()
        .map(|l| testenv::parse_line(l).unwrap())
        .collect();
    let a = testenv::reference(&t.path("a"), As::default());
    let b = testenv::reference(&t.path("b"), As::default());
    assert_eq!(lines, vec![(a.files, a.bytes), (b.files, b.bytes)]);
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_traverse"))
        .arg("--json")
        .arg(t.path("a"))
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.contains(&format!("\"files\":{},\"bytes\":{}", a.files, a.bytes)),
        "{json}"
    );
}

#[test]
fn entries_vanishing_mid_walk_are_skipped() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = TestTree::new();
    for d in 0..40 {
        for f in 0..25 {
            t.file(format!("stable/d{d}/f{f}"), 10);
        }
    }
    let stable = testenv::reference(&t.path("stable"), As::default()).files;
    let churn = t.path("churn");
    std::fs::create_dir(&churn).unwrap();
    let stop = AtomicBool::new(false);
    let runs: Vec<(&str, testenv::Count)> = std::thread::scope(|s| {
        // Subtrees appear and disappear while the engines walk: entries listed and gone
        // before their stat, directories opened and then removed, and the reverse.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..30 {
                    let sub = churn.join(format!("c{i}/inner"));
                    let _ = std::fs::create_dir_all(&sub);
                    for f in 0..5 {
                        let _ = std::fs::write(sub.join(format!("x{f}")), b"churn");
                    }
                }
                for i in 0..30 {
                    let _ = std::fs::remove_dir_all(churn.join(format!("c{i}")));
                }
            }
        });
        let runs = ENGINES
            .iter()
            .flat_map(|&engine| (0..RUNS).map(move |_| engine))
            .map(|engine| (engine, traverse(engine, t.root(), As::default())))
            .collect();
        // Set before any assertion: a panic here would leave the churn running and
        // the scope waiting for it.
        stop.store(true, Ordering::Relaxed);
        runs
    });
    for (engine, got) in &runs {
        let outcome = format!("{engine}: {got:?}");
        assert_eq!(got.status, Some(0), "{outcome}");
        assert!(got.stderr.is_empty(), "{outcome}");
        assert!((stable..=stable + 30 * 5).contains(&got.files), "{outcome}");
    }
    // The walks overlapped the churn: some saw churned files.
    assert!(
        runs.iter().any(|(_, got)| got.files > stable),
        "no run met the churn"
    );
}

/// Walks per engine in `entries_vanishing_mid_walk_are_skipped`.
const RUNS: usize = 200;

#[test]
fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = TestTree::new();
    for d in 0..20 {
        t.file(format!("walked/d{d}/f"), 10);
    }
    for f in 0..500 {
        t.file(format!("outside/o{f}"), 10);
    }
    let walked = t.path("walked");
    let stable = testenv::reference(&walked, As::default()).files;
    let swapped = walked.join("s");
    let stop = AtomicBool::new(false);
    let runs: Vec<(&str, testenv::Count)> = std::thread::scope(|s| {
        // walked/s is a directory holding a file, then a symlink to a directory
        // outside the walk, swapped atomically back and forth: an engine that lists it
        // as a directory and then reads it by path may walk outside.
        std::fs::create_dir(&swapped).unwrap();
        std::fs::write(swapped.join("inner"), b"in").unwrap();
        let spare = t.path("spare");
        std::os::unix::fs::symlink("../outside", &spare).unwrap();
        let c = |p: &std::path::Path| {
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).unwrap()
        };
        let (a, b) = (c(&swapped), c(&spare));
        let stop = &stop;
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: two NUL-terminated paths; renameat2 touches nothing else.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
            }
        });
        let runs = ENGINES
            .iter()
            .flat_map(|&engine| (0..RUNS).map(move |_| engine))
            .map(|engine| (engine, traverse(engine, &walked, As::default())))
            .collect();
        stop.store(true, Ordering::Relaxed);
        runs
    });
    for (engine, got) in &runs {
        let outcome = format!("{engine}: {got:?}");
        assert!((stable..=stable + 1).contains(&got.files), "{outcome}");
        // A directory again by the time it is stat'ed after a failed open is reported
        // as du reports it (fts: "cannot read directory"); nothing else may be.
        for line in got.stderr.lines() {
            assert!(
                line.contains("walked/s': Not a directory")
                    || line.contains("walked/s': Too many levels of symbolic links"),
                "{outcome}"
            );
        }
    }
}

#[test]
fn walkers_without_a_ring_leave_the_walk_to_the_others() {
    let t = TestTree::new();
    t.file("a/f", 10)
        .file("a/b/g", 20)
        .dir("a/b/c/d")
        .file("e", 3);
    t.hardlink("a/f", "a/b/f2");
    let want = testenv::reference(t.root(), As::default());
    // The walkers that work from the start without a ring, the reserve with rings: the
    // reserve must take over (it used to wait for a cold signal nobody could send).
    // Then a single walker with a ring, and none (the sync engine instead).
    let cases: [(&str, &'static [(&str, &str)]); 3] = [
        (
            "the first two",
            &[("TRAVERSE_THREADS", "2"), ("TRAVERSE_TEST_NO_RING", "0,1")],
        ),
        (
            "all but one",
            &[
                ("TRAVERSE_THREADS", "2"),
                ("TRAVERSE_RESERVE", "12"),
                ("TRAVERSE_TEST_NO_RING", "1,2,3,4,5,6,7,8,9,10,11,12,13"),
            ],
        ),
        ("all", &[("TRAVERSE_TEST_NO_RING", "all")]),
    ];
    for (ringless, env) in cases {
        let how = As {
            env,
            ..As::default()
        };
        let got = traverse("uring", t.root(), how);
        assert_eq!(
            (got.files, got.bytes, got.status),
            (want.files, want.bytes, want.status),
            "without rings for {ringless}: {}",
            got.stderr
        );
    }
}
