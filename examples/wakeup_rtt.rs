//! What two thread wake-ups cost on this machine: the floor under any
//! request/response that crosses a userspace forwarder. Two threads pass a
//! token back and forth over a pair of eventfds, with a pause between round
//! trips (so the CPUs go idle, as between pings); prints the round trip's
//! p50 and p99.
//!
//! Usage: wakeup_rtt CPU_A CPU_B [PAUSE_US] [ROUNDS]
//!   CPU_A, CPU_B  the CPUs of the two threads; -1 leaves one to the scheduler
//!   PAUSE_US      pause between round trips (default 2000, as ping -i 0.002)

use std::io;
use std::time::{Duration, Instant};

fn pin(cpu: i32) {
    if cpu < 0 {
        return;
    }
    // SAFETY: cpu_set_t is plain old data; sched_setaffinity on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

fn eventfd() -> io::Result<i32> {
    // SAFETY: plain eventfd(2).
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn post(fd: i32) {
    let one = 1u64;
    // SAFETY: an 8-byte write from a u64 we own.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn take(fd: i32) {
    let mut v = 0u64;
    // SAFETY: an 8-byte read into a u64 we own; blocks until posted.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

fn arg(i: usize, default: i64) -> i64 {
    std::env::args()
        .nth(i)
        .map_or(Some(default), |a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: wakeup_rtt CPU_A CPU_B [PAUSE_US] [ROUNDS]");
            std::process::exit(2)
        })
}

fn main() -> io::Result<()> {
    let (cpu_a, cpu_b) = (arg(1, -1) as i32, arg(2, -1) as i32);
    let pause = Duration::from_micros(arg(3, 2000).max(0) as u64);
    let rounds = arg(4, 2000).max(1) as usize;
    let (ping, pong) = (eventfd()?, eventfd()?);
    let peer = std::thread::spawn(move || {
        pin(cpu_b);
        for _ in 0..rounds {
            take(ping);
            post(pong);
        }
    });
    pin(cpu_a);
    let mut rtt = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        post(ping);
        take(pong);
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(pause);
    }
    let _ = peer.join();
    rtt.sort_by(f64::total_cmp);
    let p = |q: f64| rtt[((rtt.len() - 1) as f64 * q) as usize];
    println!(
        "cpus {cpu_a}/{cpu_b} pause {} us: p50 {:.1} us, p99 {:.1} us",
        pause.as_micros(),
        p(0.5),
        p(0.99)
    );
    Ok(())
}
