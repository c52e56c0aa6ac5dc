//! A cheap clock for timing single syscalls.
//!
//! The io_uring walker times every inline stat to notice the first one that waited for
//! the disk. `Instant::now()` goes through the vDSO's clock_gettime, which was a fifth
//! of the walker's user time on a warm walk (and more under emulation); the time stamp
//! counter is one instruction. Its rate is measured once against `Instant`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time in clock ticks.
#[derive(Clone, Copy, Debug)]
pub struct Tick(u64);

impl Tick {
    /// Now.
    pub fn now() -> Self {
        Tick(read())
    }

    /// Ticks since `self` (zero if the counter went backwards, e.g. across CPUs).
    pub fn elapsed(self) -> u64 {
        read().saturating_sub(self.0)
    }
}

/// Ticks in `d`, for turning limits into the clock's unit.
pub fn ticks(d: Duration) -> u64 {
    (d.as_nanos() as f64 * ticks_per_ns()) as u64
}

#[cfg(target_arch = "x86_64")]
fn read() -> u64 {
    // SAFETY: RDTSC has no preconditions and every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(target_arch = "x86_64")]
fn ticks_per_ns() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        // 100 us of spinning once per process: enough for a rate within about 1%,
        // which is plenty for thresholds that are factors of 8 apart.
        let (t0, c0) = (Instant::now(), read());
        while t0.elapsed() < Duration::from_micros(100) {
            std::hint::spin_loop();
        }
        let (ns, c) = (t0.elapsed().as_nanos() as f64, read().saturating_sub(c0));
        if c == 0 {
            1.0
        } else {
            c as f64 / ns
        }
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn read() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks_per_ns() -> f64 {
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_wall_time() {
        let start = Tick::now();
        std::thread::sleep(Duration::from_millis(20));
        let took = start.elapsed();
        // Sleeping oversleeps, never undersleeps; allow a generous margin above.
        assert!(took >= ticks(Duration::from_millis(19)), "{took}");
        assert!(took < ticks(Duration::from_millis(500)), "{took}");
    }

    #[test]
    fn conversion_is_monotonic() {
        assert!(ticks(Duration::from_micros(50)) > ticks(Duration::from_micros(20)));
        assert!(ticks(Duration::from_micros(1)) > 0);
    }
}
