//! A wake-up a thread can poll beside its other descriptors: an eventfd
//! that one side rings and the polling side clears.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call; the fd is owned below.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Waker {
            // SAFETY: fd was just returned by eventfd(2).
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable until `clear`.
    pub fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    pub fn clear(&self) {
        let mut v = [0u8; 8];
        // SAFETY: reading 8 bytes from our eventfd into a buffer we own.
        unsafe { libc::read(self.fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_until_cleared() {
        let w = Waker::new().unwrap();
        let readable = |w: &Waker| {
            let mut p = libc::pollfd {
                fd: w.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        assert!(!readable(&w));
        w.ring();
        w.ring();
        assert!(readable(&w));
        w.clear();
        assert!(!readable(&w));
    }
}
