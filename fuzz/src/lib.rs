//! The properties both fuzz targets check, for either direction of the protocol.
//!
//! Input layout: the first byte picks how the rest is cut into reads (1 to 256 bytes
//! each), the rest is the byte stream a peer sent. For any stream:
//! - decoding never panics, and never allocates more than the stream could hold;
//! - how the stream is cut into reads changes nothing (the same messages, the same
//!   error, at the same place);
//! - after an error nothing more comes out, whatever bytes follow;
//! - the encoding is canonical: the messages re-encode to exactly the bytes they were
//!   decoded from, so no two streams mean the same thing and nothing is dropped.

use std::fmt::Debug;
use vm_wire::{Decode, GuestMsg, HostMsg, Inbox, WireError};

/// A message type with both halves of its codec.
pub trait Wire: Decode + PartialEq + Debug {
    /// One complete frame.
    fn encode_frame(&self) -> Vec<u8>;
}

impl Wire for HostMsg {
    fn encode_frame(&self) -> Vec<u8> {
        self.encode()
    }
}

impl Wire for GuestMsg {
    fn encode_frame(&self) -> Vec<u8> {
        self.encode()
    }
}

/// Everything an inbox yields for `stream` delivered in reads of `step` bytes.
fn decode_all<M: Wire>(stream: &[u8], step: usize) -> Vec<Result<M, WireError>> {
    let mut inbox = Inbox::<M>::new();
    let mut out = Vec::new();
    for read in stream.chunks(step) {
        inbox.push(read);
        while let Some(item) = inbox.next_msg() {
            out.push(item);
        }
    }
    out
}

/// Checks every property above for one fuzz input.
pub fn check<M: Wire>(input: &[u8]) {
    let Some((&cut, stream)) = input.split_first() else {
        return;
    };
    let whole = decode_all::<M>(stream, stream.len().max(1));
    let pieces = decode_all::<M>(stream, usize::from(cut) + 1);
    assert_eq!(whole, pieces, "the cut into reads changed the result");

    let errors = whole.iter().filter(|r| r.is_err()).count();
    assert!(errors <= 1, "more than one error from one stream");
    if errors == 1 {
        assert!(whole.last().is_some_and(Result::is_err), "messages after an error");
    }

    let reencoded: Vec<u8> = whole
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(Wire::encode_frame)
        .collect();
    assert!(
        stream.starts_with(&reencoded),
        "decoded messages do not re-encode to the bytes they came from"
    );
    if errors == 0 {
        // Whatever is left is one incomplete frame, nothing silently skipped.
        let rest = &stream[reencoded.len()..];
        let announced = rest
            .get(..4)
            .map(|len| u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize);
        assert!(
            announced.is_none_or(|len| rest.len() < 4 + len),
            "a complete frame was left unread"
        );
    }
}
