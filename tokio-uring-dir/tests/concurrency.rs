//! Many directories open at once on one ring.

mod common;

use common::*;
use futures_util::future::join_all;
use tokio_uring_dir::DirOptions;

#[test]
fn fifty_dirs_spawned_on_one_ring() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<_> = (0..50)
            .map(|i| {
                let d = tmp.path().join(format!("d{i}"));
                populate(&d, 20 + i * 7, numbered);
                d
            })
            .collect();
        for opts in [
            DirOptions::new().buffer_size(512),
            DirOptions::new().buffer_size(512).emulate_in_flight(true),
            DirOptions::new().force_fallback(true),
        ] {
            let handles: Vec<_> = dirs
                .iter()
                .cloned()
                .map(|d| {
                    let opts = opts.clone();
                    tokio_uring::spawn(async move {
                        let got = our_listing(&d, &opts).await.unwrap();
                        (d, got)
                    })
                })
                .collect();
            for h in handles {
                let (d, got) = h.await.unwrap();
                assert_eq!(got, std_listing(&d), "{}", d.display());
            }
        }
    });
}

#[test]
fn fifty_dirs_interleaved_in_one_task() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<_> = (0..50)
            .map(|i| {
                let d = tmp.path().join(format!("d{i}"));
                populate(&d, 100 + i, numbered);
                d
            })
            .collect();
        let opts = DirOptions::new().buffer_size(512).emulate_in_flight(true);
        // All open at the same time, read round-robin one entry each.
        let mut open = join_all(dirs.iter().map(|d| opts.open(d))).await;
        let mut seen: Vec<Vec<std::ffi::OsString>> = vec![Vec::new(); dirs.len()];
        let mut live = dirs.len();
        let mut done = vec![false; dirs.len()];
        while live > 0 {
            let step = join_all(open.iter_mut().zip(&done).filter(|(_, done)| !**done).map(
                |(d, _)| async move {
                    let d = d.as_mut().unwrap();
                    d.next().await
                },
            ))
            .await;
            let idx: Vec<usize> = (0..dirs.len()).filter(|i| !done[*i]).collect();
            for (i, next) in idx.into_iter().zip(step) {
                match next {
                    Some(e) => seen[i].push(e.unwrap().file_name().to_owned()),
                    None => {
                        done[i] = true;
                        live -= 1;
                    }
                }
            }
        }
        for ((d, names), dir) in dirs.iter().zip(seen).zip(open) {
            let mut names = names;
            names.sort();
            let want: Vec<_> = std_listing(d).into_keys().collect();
            assert_eq!(names, want, "{}", d.display());
            dir.unwrap().close().await.unwrap();
        }
    });
}
