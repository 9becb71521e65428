//! A NIC opened with an AF_PACKET socket: virtio-net headers (GRO'd frames
//! from the NIC side arrive whole, GSO frames go out whole), promiscuous
//! membership, qdisc bypass, and no echo of our own transmissions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{PortIo, cvt, ifctl, last_err};

const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const SOCK_BUF: libc::c_int = 8 << 20;

pub struct AfPacket {
    fd: OwnedFd,
    pub ifindex: u32,
}

fn setopt(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to an int we own.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

impl AfPacket {
    /// Opens `ifname` (in the calling thread's namespace), brings it up and
    /// joins it promiscuously.
    pub fn open(ifname: &str) -> io::Result<AfPacket> {
        let ifindex = ifctl::index(ifname).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface `{ifname}`"))
        })?;
        // Protocol 0: receive nothing until bound to the one interface.
        // SAFETY: plain socket(2) call.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })
        .map_err(|e| io::Error::new(e.kind(), format!("AF_PACKET socket: {e}")))?;
        // SAFETY: fd was just returned by socket(2).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        setopt(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        setopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        // Kernels before 4.20 lack it; then our own frames come back and are
        // dropped as hairpin by the switch.
        let _ = setopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        if setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCK_BUF).is_err() {
            let _ = setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCK_BUF);
        }
        if setopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SOCK_BUF).is_err() {
            let _ = setopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCK_BUF);
        }
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a sockaddr_ll of the right size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map_err(|e| io::Error::new(e.kind(), format!("bind AF_PACKET to `{ifname}`: {e}")))?;
        // SAFETY: packet_mreq is plain old data.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex as i32;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: setsockopt with a packet_mreq we own.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mr as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        ifctl::set_up(ifname, true)?;
        Ok(AfPacket { fd, ifindex })
    }
}

impl PortIo for AfPacket {
    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: receiving into a buffer we own, bounded by its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(last_err());
        }
        if n as usize > buf.len() {
            // Larger than any buffer we could have offered: never pass on a
            // truncated frame.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "oversized frame from NIC",
            ));
        }
        Ok(n as usize)
    }

    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        // SAFETY: sending from a buffer we borrow, bounded by its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 { Err(last_err()) } else { Ok(()) }
    }
}
