//! The clocks niswitch reads: a monotonic one for timers and timeouts
//! (never moved by NTP stepping the wall clock, as edge devices that boot
//! with a wrong clock do), and the wall clock for what is written down
//! (lease expiry, flow records).

use std::time::{SystemTime, UNIX_EPOCH};

fn monotonic(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

/// Milliseconds on the monotonic clock.
pub fn mono_ms() -> u64 {
    let ts = monotonic(libc::CLOCK_MONOTONIC);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Seconds on the coarse monotonic clock: cheap enough for every frame.
pub fn mono_secs_coarse() -> u32 {
    monotonic(libc::CLOCK_MONOTONIC_COARSE).tv_sec as u32
}

/// Seconds (with fractions) on the coarse monotonic clock.
pub fn mono_f64_coarse() -> f64 {
    let ts = monotonic(libc::CLOCK_MONOTONIC_COARSE);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Unix time in seconds (wall clock).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix time in milliseconds (wall clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lets something happen at most once per period (a solicitation, an
/// advertisement): the first time at once.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    every_ms: u64,
    last_ms: Option<u64>,
}

impl Pacer {
    pub const fn new(every_ms: u64) -> Pacer {
        Pacer {
            every_ms,
            last_ms: None,
        }
    }

    /// True (and the period starts again) when a period has passed since
    /// the last time, or there was none.
    pub fn ready(&mut self, now_ms: u64) -> bool {
        let ready = self
            .last_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.every_ms);
        if ready {
            self.last_ms = Some(now_ms);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward_together() {
        let (m, s) = (mono_ms(), unix_secs());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(mono_ms() >= m + 20);
        assert!(unix_secs() >= s);
        assert!(unix_ms() / 1000 >= s);
        assert!(mono_f64_coarse() > 0.0 && mono_secs_coarse() > 0);
    }

    #[test]
    fn a_pacer_lets_one_through_per_period() {
        let mut p = Pacer::new(1000);
        assert!(p.ready(5), "the first time at once");
        assert!(!p.ready(500));
        assert!(p.ready(1005));
        assert!(!p.ready(2004));
    }
}
