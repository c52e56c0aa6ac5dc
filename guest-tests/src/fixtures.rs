//! Directories the getdents and Dir tests list: numbered entries and awkward names.

use anyhow::{Context, Result};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Creates `dir` (and parents) holding `n` empty files named by `name_of`.
pub fn populate(dir: &Path, n: usize, name_of: impl Fn(usize) -> OsString) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let p = dir.join(name_of(i));
        std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
    }
    Ok(())
}

/// `entry-000042`: names that sort as they are numbered.
pub fn numbered(i: usize) -> OsString {
    OsString::from(format!("entry-{i:06}"))
}

/// Names with every byte value except '/' and NUL, the longest a name can be (in ASCII
/// and in non-UTF-8 bytes), non-UTF-8, multi-byte UTF-8, spaces, newlines and dots.
pub fn odd_names() -> Vec<OsString> {
    let mut names = vec![
        OsString::from("x".repeat(255)),
        OsStr::from_bytes(&[0x80; 255]).to_owned(),
        OsStr::from_bytes(&[0xff, 0xfe, b'a']).to_owned(),
        OsString::from("ünïcødé"),
        OsString::from(" leading space"),
        OsString::from("new\nline"),
        OsString::from("..."),
    ];
    // 40-byte chunks of 1..=255 without '/': none is "." or "..".
    let all: Vec<u8> = (1u8..=255).filter(|&b| b != b'/').collect();
    names.extend(all.chunks(40).map(|c| OsStr::from_bytes(c).to_owned()));
    names
}
