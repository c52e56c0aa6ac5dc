//! image/manifest.txt as data: what the root filesystem holds.

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A static guest program built from this workspace: cargo package, binary, path.
    Guest {
        /// Cargo package.
        package: String,
        /// Binary of that package.
        binary: String,
        /// Path in the image.
        dest: String,
    },
    /// A file copied from the host, with its shared objects when `with_libs`.
    Host {
        /// Host path.
        path: String,
        /// Path in the image.
        dest: String,
        /// Also copy every shared object `ldd` lists for it (at the same paths).
        with_libs: bool,
    },
    /// An empty directory.
    Dir(String),
    /// A symlink per applet of the busybox at this host path.
    Applets(String),
}

/// The manifest the crate was built with.
pub const MANIFEST: &str = include_str!("../manifest.txt");

/// Parses manifest text; errors name the line.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("manifest line {}: {line:?}", n + 1);
        let relative = |d: &str| -> Result<String, String> {
            match d.starts_with('/') || d.split('/').any(|c| c == "..") {
                true => Err(bad()),
                false => Ok(d.to_string()),
            }
        };
        let entry = match words[..] {
            ["guest", what, dest] => {
                let (package, binary) = what.split_once(':').ok_or_else(bad)?;
                Entry::Guest {
                    package: package.into(),
                    binary: binary.into(),
                    dest: relative(dest)?,
                }
            }
            [kind @ ("host" | "host+libs"), path, dest] if path.starts_with('/') => Entry::Host {
                path: path.into(),
                dest: relative(dest)?,
                with_libs: kind == "host+libs",
            },
            ["dir", dest] => Entry::Dir(relative(dest)?),
            ["applets", path] if path.starts_with('/') => Entry::Applets(path.into()),
            _ => return Err(bad()),
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// The built-in manifest, parsed (checked by a unit test, so this cannot fail in a
/// released build; an empty list would only make an image without those files).
pub fn entries() -> Vec<Entry> {
    parse(MANIFEST).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_manifest_parses_and_has_init_and_a_shell() {
        let e = parse(MANIFEST).unwrap();
        assert!(e
            .iter()
            .any(|x| matches!(x, Entry::Guest { dest, .. } if dest == "sbin/init")));
        assert!(e
            .iter()
            .any(|x| matches!(x, Entry::Host { dest, .. } if dest == "bin/busybox")));
        assert!(e.iter().any(|x| matches!(x, Entry::Applets(_))));
    }

    #[test]
    fn bad_lines_are_named() {
        for line in [
            "guest nocolon bin/x",
            "host rel bin/x",
            "dir /abs",
            "dir a/../b",
            "copy a b",
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains("line 1"), "{line}: {err}");
        }
    }

    #[test]
    fn the_dockerfile_copies_the_tree_the_manifest_describes() {
        // The Dockerfile takes the exported tree whole: nothing of its own to drift.
        let dockerfile = include_str!("../../Dockerfile");
        let instructions: Vec<&str> = dockerfile
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            instructions,
            [
                "FROM scratch",
                "COPY image/rootfs/ /",
                "CMD [\"/sbin/init\"]"
            ]
        );
        assert!(dockerfile.contains("host-runner -- image --export image/rootfs"));
        // ...and what starts the guest is the manifest's PID 1.
        assert!(entries()
            .iter()
            .any(|e| matches!(e, Entry::Guest { dest, .. } if dest == "sbin/init")));
    }
}
