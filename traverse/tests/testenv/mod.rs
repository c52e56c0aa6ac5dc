//! A test environment that builds real directory trees and runs the real references
//! (`du -bs`, `find -type f`) next to `traverse` on them.

#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The engines every check runs.
pub const ENGINES: [&str; 4] = ["sync", "tokio", "tokio-per-entry", "uring"];

/// A temporary tree, world-readable so an unprivileged user can walk it too.
pub struct TestTree {
    dir: tempfile::TempDir,
}

impl TestTree {
    /// An empty tree.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("traverse-test-")
            .tempdir()
            .expect("tempdir");
        chmod(dir.path(), 0o755);
        TestTree { dir }
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the tree.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    /// Creates directories.
    pub fn dir(&self, rel: impl AsRef<Path>) -> &Self {
        std::fs::create_dir_all(self.path(rel)).expect("mkdir");
        self
    }

    /// Creates a file of `len` bytes.
    pub fn file(&self, rel: impl AsRef<Path>, len: usize) -> &Self {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, vec![b'x'; len]).expect("write");
        self
    }

    /// A file with a hole: apparent size `len`, almost no blocks.
    pub fn sparse(&self, rel: impl AsRef<Path>, len: u64) -> &Self {
        let f = std::fs::File::create(self.path(rel)).expect("create");
        f.set_len(len).expect("truncate");
        self
    }

    /// A symlink at `rel` pointing to `target` (which need not exist).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> &Self {
        std::os::unix::fs::symlink(target, self.path(rel)).expect("symlink");
        self
    }

    /// A hard link.
    pub fn hardlink(&self, existing: impl AsRef<Path>, rel: impl AsRef<Path>) -> &Self {
        std::fs::hard_link(self.path(existing), self.path(rel)).expect("link");
        self
    }

    /// A named pipe.
    pub fn fifo(&self, rel: impl AsRef<Path>) -> &Self {
        let c = CString::new(self.path(rel).as_os_str().as_bytes()).expect("path");
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        self
    }

    /// `n` empty files in `rel`.
    pub fn many(&self, rel: impl AsRef<Path>, n: usize) -> &Self {
        let d = self.path(rel);
        std::fs::create_dir_all(&d).expect("mkdir");
        for i in 0..n {
            std::fs::File::create(d.join(format!("f{i:06}"))).expect("create");
        }
        self
    }

    /// A chain of `depth` nested directories named `d` under `rel`, each holding a
    /// 3-byte file. Built with *at() calls: the full path is far beyond PATH_MAX.
    pub fn deep(&self, rel: impl AsRef<Path>, depth: usize) -> &Self {
        let top_path = self.path(rel);
        std::fs::create_dir_all(&top_path).expect("mkdir");
        let top = CString::new(top_path.as_os_str().as_bytes()).expect("path");
        // SAFETY: plain *at() syscalls on descriptors this function owns and closes.
        unsafe {
            let mut fd = libc::open(top.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(fd >= 0);
            for _ in 0..depth {
                assert_eq!(libc::mkdirat(fd, c"d".as_ptr(), 0o755), 0, "mkdirat");
                let f = libc::openat(fd, c"file".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                assert!(f >= 0);
                assert_eq!(libc::write(f, b"abc".as_ptr().cast(), 3), 3);
                libc::close(f);
                let next = libc::openat(fd, c"d".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                assert!(next >= 0);
                libc::close(fd);
                fd = next;
            }
            libc::close(fd);
        }
        self
    }

    /// A chain of `depth` nested directories under `rel`, named with `name_len` d's,
    /// each also holding a directory of `name_len` s's with a 3-byte file `f`: a branch
    /// at every level, and long names reach beyond PATH_MAX in few levels. Built with
    /// *at() calls, as [`TestTree::deep`].
    pub fn comb(&self, rel: impl AsRef<Path>, depth: usize, name_len: usize) -> &Self {
        let top_path = self.path(rel);
        std::fs::create_dir_all(&top_path).expect("mkdir");
        let top = CString::new(top_path.as_os_str().as_bytes()).expect("path");
        let down = CString::new("d".repeat(name_len)).expect("name");
        let side = CString::new("s".repeat(name_len)).expect("name");
        let file = CString::new(format!("{}/f", "s".repeat(name_len))).expect("name");
        // SAFETY: plain *at() syscalls with NUL-terminated names on descriptors this
        // function owns and closes.
        unsafe {
            let mut fd = libc::open(top.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(fd >= 0);
            for _ in 0..depth {
                assert_eq!(libc::mkdirat(fd, down.as_ptr(), 0o755), 0, "mkdirat");
                assert_eq!(libc::mkdirat(fd, side.as_ptr(), 0o755), 0, "mkdirat");
                let f = libc::openat(fd, file.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                assert!(f >= 0);
                assert_eq!(libc::write(f, b"abc".as_ptr().cast(), 3), 3);
                libc::close(f);
                let next = libc::openat(fd, down.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                assert!(next >= 0);
                libc::close(fd);
                fd = next;
            }
            libc::close(fd);
        }
        self
    }

    /// A tree under `rel` in which every directory down to `depth` holds three
    /// subdirectories (`a`, `b`, `c`) and a 3-byte file.
    pub fn ternary(&self, rel: impl AsRef<Path>, depth: usize) -> &Self {
        let rel = rel.as_ref();
        self.file(rel.join("f"), 3);
        if depth > 0 {
            for sub in ["a", "b", "c"] {
                self.ternary(rel.join(sub), depth - 1);
            }
        }
        self
    }

    /// Hard-links `existing` as `link` in the innermost directory of the chain `deep`
    /// made at `chain`: one inode reached both near the top and beyond PATH_MAX.
    pub fn hardlink_at_bottom(&self, chain: impl AsRef<Path>, existing: impl AsRef<Path>) -> &Self {
        let top = CString::new(self.path(chain).as_os_str().as_bytes()).expect("path");
        let existing = CString::new(self.path(existing).as_os_str().as_bytes()).expect("path");
        // SAFETY: plain *at() syscalls on descriptors this function owns and closes.
        unsafe {
            let mut fd = libc::open(top.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(fd >= 0);
            loop {
                let next = libc::openat(fd, c"d".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                if next < 0 {
                    break;
                }
                libc::close(fd);
                fd = next;
            }
            let linked = libc::linkat(libc::AT_FDCWD, existing.as_ptr(), fd, c"link".as_ptr(), 0);
            assert_eq!(linked, 0, "linkat");
            libc::close(fd);
        }
        self
    }

    /// Sets permission bits.
    pub fn mode(&self, rel: impl AsRef<Path>, mode: u32) -> &Self {
        chmod(&self.path(rel), mode);
        self
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        // Make everything removable again (unreadable directories), and remove deep
        // chains with a shell: remove_dir_all handles depth, but not mode 000.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(self.root())
            .output();
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// How to run a command: as root or as an unprivileged user, with an fd limit.
#[derive(Clone, Copy, Default)]
pub struct As {
    /// Run as uid/gid 65534 (nobody) so permissions apply to the walk.
    pub nobody: bool,
    /// RLIMIT_NOFILE for the command.
    pub nofile: Option<u64>,
    /// traverse ignores d_type (TRAVERSE_NO_DTYPE), as on a file system that lists
    /// every entry as DT_UNKNOWN.
    pub no_dtype: bool,
    /// Further environment for traverse (engine settings, test hooks).
    pub env: &'static [(&'static str, &'static str)],
}

fn command(program: impl AsRef<OsStr>, how: As) -> Command {
    let mut cmd = Command::new(program);
    if how.nobody {
        cmd.uid(65534).gid(65534);
    }
    if how.no_dtype {
        cmd.env("TRAVERSE_NO_DTYPE", "1");
    }
    cmd.envs(how.env.iter().copied());
    if let Some(n) = how.nofile {
        // SAFETY: setrlimit is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// What a tool reported for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// Regular files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Exit status.
    pub status: Option<i32>,
    /// Standard error.
    pub stderr: String,
}

/// `du -bs PATH` and `find PATH -type f | wc -l` (counted robustly against newlines in
/// names with -printf).
pub fn reference(path: &Path, how: As) -> Count {
    let du = command("du", how)
        .arg("-bs")
        .arg(path)
        .output()
        .expect("du runs");
    let bytes = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(u64::MAX);
    let find = command("find", how)
        .arg(path)
        .args(["-type", "f", "-printf", "."])
        .output()
        .expect("find runs");
    Count {
        files: find.stdout.len() as u64,
        bytes,
        status: du.status.code(),
        stderr: String::from_utf8_lossy(&du.stderr).into_owned(),
    }
}

/// `traverse --engine ENGINE PATH`.
pub fn traverse(engine: &str, path: &Path, how: As) -> Count {
    let mut cmd = command(env!("CARGO_BIN_EXE_traverse"), how);
    cmd.args(["--engine", engine]).arg(path);
    let out = output_within(cmd, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout);
    let (files, bytes) = parse_line(text.trim()).unwrap_or((u64::MAX, u64::MAX));
    Count {
        files,
        bytes,
        status: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` to the end, or kills it and fails the test as hung after `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("traverse runs");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for traverse") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung: killed after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Parses `N files, M bytes`.
pub fn parse_line(line: &str) -> Option<(u64, u64)> {
    let (f, rest) = line.split_once(" files, ")?;
    let b = rest.strip_suffix(" bytes")?;
    Some((f.parse().ok()?, b.parse().ok()?))
}

/// Checks every engine against du and find on `path`, with the entry types the file
/// system lists and again without them (every entry DT_UNKNOWN).
pub fn assert_all_engines_match(path: &Path, how: As) {
    let want = reference(path, how);
    assert_ne!(want.bytes, u64::MAX, "du failed: {}", want.stderr);
    for no_dtype in [false, true] {
        let how = As { no_dtype, ..how };
        for engine in ENGINES {
            let got = traverse(engine, path, how);
            assert_eq!(
                (got.files, got.bytes),
                (want.files, want.bytes),
                "engine {engine} (no_dtype {no_dtype}) on {}: traverse stderr: {}",
                path.display(),
                got.stderr
            );
            assert_eq!(
                got.status, want.status,
                "engine {engine} (no_dtype {no_dtype}): exit status vs du; stderr: {}",
                got.stderr
            );
        }
        // On a kernel without the op the uring engine puts nothing on the ring by
        // default; this puts the stats and opens there, so the ring's completion paths
        // are checked on every tree here too, not only in the VM.
        let ring = As {
            env: &[("TRAVERSE_RING_STAT", "1")],
            ..how
        };
        let got = traverse("uring", path, ring);
        assert_eq!(
            (got.files, got.bytes, got.status),
            (want.files, want.bytes, want.status),
            "uring with TRAVERSE_RING_STAT=1 (no_dtype {no_dtype}) on {}: {}",
            path.display(),
            got.stderr
        );
    }
}
