//! Entry metadata is looked up relative to the directory's descriptor, as
//! `std::fs::DirEntry::metadata` does (fstatat), not by a joined path from the working
//! directory.
//!
//! One test in this binary: it changes the process's working directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use tokio_uring_dir::Dir;

/// The one entry of `dir` named `name`.
async fn entry_named(dir: &mut Dir, name: &str) -> tokio_uring_dir::DirEntry {
    while let Some(e) = dir.next().await {
        let e = e.unwrap();
        if e.file_name() == name {
            return e;
        }
    }
    panic!("{name} not listed");
}

/// A directory under `base` whose path is between 3850 and 4050 bytes long, made with
/// relative steps, and made the working directory.
fn deep_dir(base: &Path) -> PathBuf {
    let component = "d".repeat(200);
    let mut path = base.to_path_buf();
    std::env::set_current_dir(base).unwrap();
    while path.as_os_str().len() + 1 + component.len() <= 4050 {
        std::fs::create_dir(&component).unwrap();
        std::env::set_current_dir(&component).unwrap();
        path.push(&component);
    }
    path
}

#[test]
fn metadata_is_relative_to_the_directory_descriptor() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("sub/five"), b"12345").unwrap();

    // A directory opened by a relative path keeps meaning that directory after a chdir.
    std::env::set_current_dir(tmp.path()).unwrap();
    tokio_uring::start(async {
        let mut dir = Dir::open("sub").await.unwrap();
        let entry = entry_named(&mut dir, "five").await;
        std::env::set_current_dir("/").unwrap();
        let meta = entry.metadata().await.unwrap();
        assert_eq!(meta.len(), 5, "statx looked up another file");
        assert!(entry.file_type().await.unwrap().is_file());
        dir.close().await.unwrap();
    });

    // An entry whose full path is longer than PATH_MAX (4096) still has metadata: only
    // its name is looked up. The directory's own path stays below the limit.
    let deep = deep_dir(tmp.path());
    let name = OsString::from("n".repeat(250));
    // Relative to the working directory: the joined path is too long for open(2) too.
    std::fs::write(&name, b"abc").unwrap();
    std::env::set_current_dir("/").unwrap();
    assert!(deep.join(&name).as_os_str().len() > 4096);
    tokio_uring::start(async {
        let mut dir = Dir::open(&deep).await.unwrap();
        let entry = entry_named(&mut dir, name.to_str().unwrap()).await;
        assert_eq!(entry.metadata().await.unwrap().len(), 3);
        dir.close().await.unwrap();
    });
}
