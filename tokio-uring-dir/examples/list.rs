//! Lists a directory (default: the current one) through tokio-uring.
//!
//! `cargo run -p tokio-uring-dir --example list -- [PATH]`

use tokio_uring_dir::Dir;

fn main() {
    let path = std::env::args_os().nth(1).unwrap_or_else(|| ".".into());
    let result = tokio_uring::start(async {
        let mut dir = Dir::open(&path).await?;
        eprintln!(
            "reading {} with {}",
            dir.path().display(),
            if dir.uses_io_uring() {
                "IORING_OP_GETDENTS"
            } else {
                "getdents64(2) (fallback)"
            }
        );
        while let Some(entry) = dir.next().await {
            let entry = entry?;
            println!("entry: {}", entry.file_name().to_string_lossy());
        }
        dir.close().await?;
        Ok::<_, std::io::Error>(())
    });
    if let Err(e) = result {
        eprintln!("list: {e}");
        std::process::exit(1);
    }
}
