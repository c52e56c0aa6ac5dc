//! The command line shared by `traverse`, `traverse-iouring` and `traverse-tokio`.

use crate::{count, Engine};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

/// Counts files and bytes of each PATH: the bytes of `du -bs PATH`, the files of
/// `find PATH -type f | wc -l`.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Walk engine.
    #[arg(long, value_enum, default_value_t = Engine::Uring)]
    pub engine: Engine,
    /// One JSON object per path instead of text: {"path", "files", "bytes", "errors"};
    /// a path that is not UTF-8 also gets "path_bytes", its exact bytes as numbers.
    #[arg(long)]
    pub json: bool,
    /// Trees to count.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The JSON line for one counted path. JSON strings are Unicode, so a path that is not
/// UTF-8 is shown lossily in "path" and exactly in "path_bytes".
fn json_line(path: &std::path::Path, t: &crate::Totals) -> String {
    use std::os::unix::ffi::OsStrExt;
    let raw = path.as_os_str().as_bytes();
    let exact = match std::str::from_utf8(raw) {
        Ok(_) => String::new(),
        Err(_) => {
            let bytes: Vec<String> = raw.iter().map(u8::to_string).collect();
            format!(",\"path_bytes\":[{}]", bytes.join(","))
        }
    };
    format!(
        "{{\"path\":{}{exact},\"files\":{},\"bytes\":{},\"errors\":{}}}",
        json_string(&path.to_string_lossy()),
        t.files,
        t.bytes,
        t.errors.len()
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the tool; `engine` overrides `--engine` (the traverse-iouring / -tokio commands).
/// Returns the exit status: 0, or 1 when a path or a directory could not be read or the
/// result could not be written.
pub fn main_with(engine: Option<Engine>) -> i32 {
    let args = Args::parse();
    let engine = engine.unwrap_or(args.engine);
    let mut status = 0;
    let stdout = std::io::stdout();
    for path in &args.paths {
        match count(path, engine) {
            Ok(t) => {
                for e in &t.errors {
                    eprintln!("traverse: {e}");
                }
                if !t.errors.is_empty() {
                    status = 1;
                }
                let line = if args.json {
                    json_line(path, &t)
                } else {
                    format!("{} files, {} bytes", t.files, t.bytes)
                };
                // A result that cannot be delivered is a failure, as in du ("write
                // error"): Rust ignores SIGPIPE, so a closed pipe arrives here as EPIPE.
                if let Err(e) = writeln!(stdout.lock(), "{line}") {
                    eprintln!("traverse: write error: {e}");
                    return 1;
                }
            }
            Err(e) => {
                eprintln!("traverse: {e}");
                status = 1;
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn json_keeps_the_exact_bytes_of_a_path_that_is_not_utf8() {
        let t = crate::Totals {
            files: 2,
            bytes: 30,
            errors: vec!["x".into()],
        };
        let plain = json_line(std::path::Path::new("/a \"b\""), &t);
        assert_eq!(
            plain,
            r#"{"path":"/a \"b\"","files":2,"bytes":30,"errors":1}"#
        );
        let odd = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/d\xff"));
        assert_eq!(
            json_line(odd, &t),
            "{\"path\":\"/d\u{fffd}\",\"path_bytes\":[47,100,255],\"files\":2,\"bytes\":30,\"errors\":1}"
        );
    }
}
