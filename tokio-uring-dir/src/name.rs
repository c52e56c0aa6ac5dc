//! An entry's name, kept inline when short.
//!
//! Every entry of a listing owns its name. As an `OsString` that is one allocation per
//! entry, and a walk makes its entries in bursts (a whole buffer of records) that the
//! caller frees later, which keeps the allocator off its fast per-thread cache: in
//! callgrind counts, malloc and free were a fifth of the walk's instructions. Most
//! names are short (the median in the Linux tree is under 15 bytes), so they live in
//! the entry itself.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Names up to this many bytes need no allocation; with the length byte and the tag
/// the type is 32 bytes, as an `OsString` plus padding would be in most places it sits.
const INLINE: usize = 30;

/// A name: any bytes (a directory entry's are never empty and hold no `/` or NUL, but
/// nothing here depends on it).
#[derive(Clone)]
pub(crate) enum Name {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Name {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE => {
                let mut inline = [0u8; INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Name::Inline(len, inline)
            }
            _ => Name::Heap(bytes.into()),
        }
    }

    pub(crate) fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(match self {
            Name::Inline(len, inline) => &inline[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        })
    }
}

impl From<&OsStr> for Name {
    fn from(name: &OsStr) -> Self {
        Name::new(name.as_bytes())
    }
}

impl std::ops::Deref for Name {
    type Target = OsStr;

    fn deref(&self) -> &OsStr {
        self.as_os_str()
    }
}

impl AsRef<OsStr> for Name {
    fn as_ref(&self) -> &OsStr {
        self.as_os_str()
    }
}

impl AsRef<std::path::Path> for Name {
    fn as_ref(&self) -> &std::path::Path {
        self.as_os_str().as_ref()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_os_str() == other.as_os_str()
    }
}

impl Eq for Name {}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_os_str().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_keep_their_bytes() {
        for len in [1, 2, INLINE - 1, INLINE, INLINE + 1, 255, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let name = Name::new(&bytes);
            assert_eq!(name.as_os_str().as_bytes(), &bytes[..], "length {len}");
            assert_eq!(
                matches!(name, Name::Inline(..)),
                len <= INLINE,
                "length {len}"
            );
            assert_eq!(name.clone(), name);
            assert_eq!(
                format!("{name:?}"),
                format!("{:?}", OsStr::from_bytes(&bytes))
            );
        }
        assert_ne!(Name::new(b"ab"), Name::new(b"abc"));
        assert_eq!(std::mem::size_of::<Name>(), 32);
    }
}
