//! How much of its CPU a pinned worker could have: the share of the last
//! interval in which the CPU was idle or ran the worker itself. A worker
//! hands frames to a partner only while the partner's CPU has room; where
//! an app keeps that CPU busy (the receiver of a stream, say), the frames
//! would only take the app's time.

use std::time::{Duration, Instant};

/// How often a worker measures its CPU when it sleeps through its timeout.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);
/// How much longer a worker that keeps being woken goes unmeasured.
const BUSY_DELAY: Duration = Duration::from_millis(200);

/// Samples one CPU's time from /proc/stat and the calling thread's own.
pub(super) struct SpareMeter {
    cpu: usize,
    /// CPU time in all, idle, and this thread's, all in nanoseconds, at the
    /// last sample.
    last: Option<(u64, u64, u64)>,
    next: Instant,
}

impl SpareMeter {
    pub fn new(cpu: usize) -> SpareMeter {
        SpareMeter {
            cpu,
            last: None,
            next: Instant::now(),
        }
    }

    /// Once an interval has passed: the percentage of it in which the CPU
    /// was idle or ran this thread. Reading /proc/stat takes tens of
    /// microseconds, so a worker that did not sleep through its timeout
    /// (`slept` false: a frame may come any moment) is measured less often.
    pub fn sample(&mut self, now: Instant, slept: bool) -> Option<u8> {
        let due = match slept {
            true => self.next,
            false => self.next + BUSY_DELAY,
        };
        if now < due {
            return None;
        }
        self.next = now + INTERVAL;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (total, idle) = cpu_ns(&stat, self.cpu)?;
        let own = thread_cpu_ns();
        let (t0, i0, o0) = self.last.replace((total, idle, own))?;
        spare_percent(
            total.saturating_sub(t0),
            idle.saturating_sub(i0) + own.saturating_sub(o0),
        )
    }
}

/// `free` nanoseconds out of `total`, as a percentage (at most 100); None
/// when no time passed.
fn spare_percent(total: u64, free: u64) -> Option<u8> {
    (total > 0).then(|| (free.min(total) * 100 / total) as u8)
}

/// A CPU's time in all and idle (with I/O wait), in nanoseconds, from the
/// text of /proc/stat.
fn cpu_ns(stat: &str, cpu: usize) -> Option<(u64, u64)> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let ns = 1_000_000_000 / clock_ticks();
    Some((total * ns, idle * ns))
}

/// Clock ticks a second in /proc/stat (USER_HZ).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf(3) reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The calling thread's CPU time, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  300 0 100 2000 10 0 5 1 0 0\n\
                        cpu0 100 0 50 1000 5 0 3 1 7 0\n\
                        cpu1 200 0 50 1000 5 0 2 0 0 0\n\
                        intr 1 2 3\n";

    #[test]
    fn reads_one_cpus_line() {
        let ns = 1_000_000_000 / clock_ticks();
        assert_eq!(cpu_ns(STAT, 0), Some((1159 * ns, 1005 * ns)));
        assert_eq!(cpu_ns(STAT, 1), Some((1257 * ns, 1005 * ns)));
        assert_eq!(cpu_ns(STAT, 2), None, "no such CPU");
        assert_eq!(cpu_ns("cpu0 1 x 3 4\n", 0), None, "not a number");
    }

    #[test]
    fn spare_is_a_bounded_share() {
        assert_eq!(spare_percent(1000, 250), Some(25));
        assert_eq!(spare_percent(1000, 5000), Some(100));
        assert_eq!(spare_percent(0, 0), None);
    }

    #[test]
    fn a_busy_thread_counts_as_spare() {
        let mut m = SpareMeter::new(0);
        assert_eq!(
            m.sample(Instant::now(), true),
            None,
            "the first sample sets a base"
        );
        let t0 = Instant::now();
        while t0.elapsed() < INTERVAL + Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        // This thread ran (on CPU 0 or not): its time counts, so the share
        // is a number whether or not CPU 0 was busy.
        assert!(m.sample(Instant::now(), true).is_some());
    }
}
