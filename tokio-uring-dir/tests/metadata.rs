//! metadata() and file_type() agree with std::fs::symlink_metadata.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use tokio_uring_dir::{Dir, DirOptions, FileType};

#[test]
fn metadata_agrees_with_symlink_metadata() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::write(p.join("file"), vec![7u8; 12345]).unwrap();
        std::fs::hard_link(p.join("file"), p.join("hardlink")).unwrap();
        std::fs::write(p.join("empty"), b"").unwrap();
        std::fs::create_dir(p.join("subdir")).unwrap();
        std::fs::create_dir(p.join("subdir").join("inner")).unwrap();
        std::os::unix::fs::symlink("file", p.join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere/at/all", p.join("dangling")).unwrap();
        let fifo = std::ffi::CString::new(p.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let odd = std::ffi::OsStr::from_bytes(&[0xff; 200]);
        std::fs::write(p.join(odd), b"odd").unwrap();

        for opts in [DirOptions::new(), DirOptions::new().force_fallback(true)] {
            let mut d = opts.open(p).await.unwrap();
            let mut n = 0;
            while let Some(e) = d.next().await {
                let e = e.unwrap();
                let path = e.path();
                let want = std::fs::symlink_metadata(&path).unwrap();
                let got = e.metadata().await.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                assert_eq!(got.ino(), want.ino(), "{name}");
                assert_eq!(got.ino(), e.ino(), "{name}: d_ino and st_ino differ");
                assert_eq!(got.len(), want.len(), "{name}");
                assert_eq!(got.is_empty(), want.len() == 0, "{name}");
                assert_eq!(got.nlink(), want.nlink(), "{name}");
                assert_eq!(got.mode(), want.mode(), "{name}");
                assert_eq!(got.uid(), want.uid(), "{name}");
                assert_eq!(got.gid(), want.gid(), "{name}");
                assert_eq!(got.blocks(), want.blocks(), "{name}");
                assert_eq!(got.modified().unwrap(), want.modified().unwrap(), "{name}");
                let kind = FileType::from(want.file_type());
                assert_eq!(got.file_type(), kind, "{name}");
                assert_eq!(e.file_type().await.unwrap(), kind, "{name}");
                assert_eq!(got.is_dir(), want.is_dir(), "{name}");
                assert_eq!(got.is_file(), want.is_file(), "{name}");
                assert_eq!(got.is_symlink(), want.file_type().is_symlink(), "{name}");
                n += 1;
            }
            assert_eq!(n, 8);
            d.close().await.unwrap();
        }
    });
}

#[test]
fn symlinks_are_not_followed() {
    tokio_uring::start(async {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("root")).unwrap();
        let mut d = Dir::open(tmp.path()).await.unwrap();
        let e = d.next().await.unwrap().unwrap();
        assert!(e.file_type().await.unwrap().is_symlink());
        let m = e.metadata().await.unwrap();
        assert!(m.is_symlink() && !m.is_dir());
        assert_eq!(m.len(), 1, "a symlink's size is its target's length");
        assert!(d.next().await.is_none());
        d.close().await.unwrap();
    });
}
