//! No descriptor outlives its Dir for longer than an in-flight read needs.
//!
//! One test in this binary, so no other test opens descriptors meanwhile.

mod common;

use common::*;
use tokio_uring_dir::{Dir, DirOptions};

#[test]
fn no_descriptor_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path(), 200, numbered);
    tokio_uring::start(async {
        // Warm up: detection and the runtime's own descriptors.
        Dir::open(tmp.path()).await.unwrap().close().await.unwrap();
        let base = open_fds();

        // close(), drop after the end, drop halfway, for every variant.
        for (_, opts) in variants() {
            let d = opts.open(tmp.path()).await.unwrap();
            assert_eq!(open_fds(), base + 1);
            d.close().await.unwrap();
            assert_eq!(open_fds(), base);

            let mut d = opts.open(tmp.path()).await.unwrap();
            while d.next().await.is_some() {}
            drop(d);
            assert_eq!(open_fds(), base);

            let mut d = opts.open(tmp.path()).await.unwrap();
            d.next().await.unwrap().unwrap();
            drop(d);
            assert!(settles_to(base).await);
        }

        // Dropped with a read in flight: the descriptor stays open until the read
        // completes (so its number cannot be reused under it), then closes.
        let opts = DirOptions::new().emulate_in_flight(true);
        for _ in 0..20 {
            let mut d = opts.open(tmp.path()).await.unwrap();
            {
                let fut = std::pin::pin!(d.next());
                assert!(poll_once(fut).await.is_pending());
            }
            drop(d);
            assert_eq!(open_fds(), base + 1, "closed under an in-flight read");
            assert!(settles_to(base).await, "leaked after the read completed");
        }

        // Opens abandoned in flight (a timeout or select! dropping the future): each
        // descriptor is closed once its open has completed, instead of one leaking per
        // iteration until EMFILE.
        for _ in 0..200 {
            let fut = std::pin::pin!(Dir::open(tmp.path()));
            assert!(poll_once(fut).await.is_pending());
        }
        assert!(
            settles_to(base).await,
            "abandoned opens leaked {} descriptors",
            open_fds() - base
        );

        // close() with a read in flight.
        let mut d = opts.open(tmp.path()).await.unwrap();
        {
            let fut = std::pin::pin!(d.next());
            assert!(poll_once(fut).await.is_pending());
        }
        d.close().await.unwrap();
        assert_eq!(open_fds(), base);
    });

    // A Dir that outlives its runtime with a read in flight: the runtime's shutdown
    // settles the read, and nothing of it (descriptor, ring) stays open afterwards.
    let before = open_fds();
    drop(dir_outliving_its_runtime(tmp.path()));
    assert_eq!(
        open_fds(),
        before,
        "a descriptor outlived its Dir and runtime"
    );
}
