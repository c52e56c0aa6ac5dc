//! A walk holds no more descriptors than it is allowed, and dropping it at any point
//! leaks none.
//!
//! One test in this binary, so no other test opens descriptors meanwhile.

mod common;

use common::{open_fds, settles_to};
use tokio_uring_dir::{Dir, DirOptions, WalkDir};

#[test]
fn bounded_descriptors_and_no_leak_when_dropped_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 levels of 6 directories with 4 files each: 259 directories.
    let mut dirs = vec![tmp.path().to_path_buf()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for d in &dirs {
            for i in 0..6 {
                let sub = d.join(format!("d{i}"));
                std::fs::create_dir(&sub).unwrap();
                for f in 0..4 {
                    std::fs::write(sub.join(format!("f{f}")), b"x").unwrap();
                }
                next.push(sub);
            }
        }
        dirs = next;
    }
    tokio_uring::start(async {
        Dir::open(tmp.path()).await.unwrap().close().await.unwrap();
        let base = open_fds();

        // The bound holds at every entry (without metadata no stat holds a share).
        for max_open in [1, 2, 5] {
            for options in [
                DirOptions::new(),
                DirOptions::new().emulate_in_flight(true).buffer_size(512),
            ] {
                let mut walk = WalkDir::new(tmp.path())
                    .max_open(max_open)
                    .dir_options(options)
                    .walk();
                let mut n = 0;
                let mut most = 0;
                while let Some(e) = walk.next().await {
                    e.unwrap();
                    n += 1;
                    most = most.max(open_fds() - base);
                }
                assert_eq!(n, 1 + 6 + 36 + 216 + (6 + 36 + 216) * 4);
                assert!(most <= max_open, "{most} descriptors, bound {max_open}");
                drop(walk);
                assert!(settles_to(base).await);
            }
        }

        // Dropped after k entries, for many k, in every reading mode and with stats in
        // flight: nothing stays open once the requests in flight have completed.
        let mut k = 0;
        for round in 0..120 {
            let options = match round % 3 {
                0 => DirOptions::new(),
                1 => DirOptions::new().emulate_in_flight(true).buffer_size(512),
                _ => DirOptions::new().force_fallback(true),
            };
            let mut walk = WalkDir::new(tmp.path())
                .metadata(round % 2 == 0)
                .max_open(8)
                .dir_options(options)
                .walk();
            for _ in 0..k {
                if walk.next().await.is_none() {
                    break;
                }
            }
            drop(walk);
            k = (k * 7 + 13) % 1300;
        }
        assert!(
            settles_to(base).await,
            "{} descriptors left after dropped walks",
            open_fds() - base
        );
    });
}
