//! Follows link state (carrier up/down) of interfaces through rtnetlink
//! RTM_NEWLINK notifications, without polling and without `ip`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::cvt;

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const NLMSG_HDR: usize = 16;
const IFINFO_LEN: usize = 16;

/// A change seen on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifindex: u32,
    /// Admin up and carrier present.
    pub running: bool,
}

/// A netlink socket subscribed to link notifications of the namespace it was
/// opened in.
pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    pub fn open() -> io::Result<LinkWatch> {
        let fd = super::rtnl::route_socket()?;
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: bind with a sockaddr_nl of the right size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        })?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a timeval we own.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        })?;
        Ok(LinkWatch { fd })
    }

    /// Calls `on_event` for every link notification until `stop` is set,
    /// and `resync` when notifications may have been lost (the socket
    /// overflowed) and every few seconds, so a missed event never sticks.
    pub fn run(
        &self,
        stop: &AtomicBool,
        mut on_event: impl FnMut(LinkEvent),
        mut resync: impl FnMut(),
    ) {
        let mut buf = vec![0u8; 32 * 1024];
        let mut idle = 0u32;
        resync();
        while !stop.load(Relaxed) {
            // SAFETY: receiving into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                idle += 1;
                let overflow =
                    n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS);
                if overflow || idle >= 10 {
                    idle = 0;
                    resync();
                }
                continue;
            }
            for ev in parse(&buf[..n as usize]) {
                on_event(ev);
            }
        }
    }
}

/// Extracts link events from a netlink datagram; malformed parts are skipped.
pub fn parse(mut b: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDR || len > b.len() {
            break;
        }
        if kind == RTM_NEWLINK && len >= NLMSG_HDR + IFINFO_LEN {
            let m = &b[NLMSG_HDR..];
            let ifindex = i32::from_ne_bytes([m[4], m[5], m[6], m[7]]) as u32;
            let flags = u32::from_ne_bytes([m[8], m[9], m[10], m[11]]) as i32;
            out.push(LinkEvent {
                ifindex,
                running: flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0,
            });
        }
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_newlink_and_skips_garbage() {
        let mut m = vec![0u8; 32];
        m[0..4].copy_from_slice(&32u32.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m[20..24].copy_from_slice(&7i32.to_ne_bytes());
        m[24..28].copy_from_slice(&((libc::IFF_UP | libc::IFF_RUNNING) as u32).to_ne_bytes());
        let mut two = m.clone();
        two.extend(&m);
        two[36 + 8..36 + 12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        let ev = parse(&two);
        assert_eq!(
            ev,
            vec![
                LinkEvent {
                    ifindex: 7,
                    running: true
                },
                LinkEvent {
                    ifindex: 7,
                    running: true
                }
            ]
        );
        two[32 + 24..32 + 28].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        assert!(!parse(&two)[1].running);
        assert!(parse(&[1, 2, 3]).is_empty());
        let mut bad = m.clone();
        bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(parse(&bad).is_empty());
    }
}
