//! `emit STDOUT_BYTES STDERR_BYTES SEED`: writes two different deterministic byte
//! streams, interleaved in uneven chunks, so the host can check that large outputs
//! arrive complete, in order and unmixed (it computes the same streams with `stream`).

use anyhow::{Context, Result};
use std::io::Write;

/// The deterministic stream for (seed, which): xorshift64 bytes.
pub fn stream(seed: u64, which: u64, len: usize) -> Vec<u8> {
    let mut state = (seed.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ which.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Entry point of the subcommand.
pub fn main(args: &[String]) -> Result<()> {
    let num = |i: usize| -> Result<u64> {
        args.get(i)
            .context("usage: emit STDOUT_BYTES STDERR_BYTES SEED")?
            .parse()
            .context("not a number")
    };
    let (out_len, err_len, seed) = (num(0)? as usize, num(1)? as usize, num(2)?);
    let out = stream(seed, 0, out_len);
    let err = stream(seed, 1, err_len);
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let (mut o, mut e) = (0usize, 0usize);
    let mut step = 1usize;
    while o < out.len() || e < err.len() {
        // Chunk sizes vary from 1 byte to ~100 KiB to cross every buffering boundary.
        step = (step * 7 + 3) % 100_003;
        let n = (step % (out.len() - o + 1)).max(1).min(out.len() - o);
        stdout.write_all(&out[o..o + n])?;
        stdout.flush()?;
        o += n;
        let n = (step % (err.len() - e + 1)).max(1).min(err.len() - e);
        stderr.write_all(&err[e..e + n])?;
        stderr.flush()?;
        e += n;
    }
    Ok(())
}
