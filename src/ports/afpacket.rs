//! A NIC opened with an AF_PACKET socket: virtio-net headers (GRO'd frames
//! from the NIC side arrive whole, GSO frames go out whole), promiscuous
//! membership, qdisc bypass, and no echo of our own transmissions. With
//! workers pinned to CPUs, one socket per worker in a fanout group, steered
//! by the CPU that received the frame (a queue per worker).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::queues::Queues;
use super::steering::CpuSteering;
use super::{PortIo, cvt, ifctl, last_err};
use crate::frame::{VNET_HDR_LEN, shift_offsets};

const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;
const SOCK_BUF: libc::c_int = 8 << 20;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_EBPF: libc::c_int = 7;
const PACKET_FANOUT_FLAG_UNIQUEID: libc::c_int = 0x2000;
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: libc::c_int = 0x4000;

pub struct AfPacket {
    /// One socket, or one per worker in a fanout group.
    fds: Queues,
    pub ifindex: u32,
}

fn setopt(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    setopt_of(fd, level, opt, &val)
}

/// setsockopt(2) with a value of plain old data.
fn setopt_of<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes of a value we borrow.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

impl AfPacket {
    /// Opens `ifname` (in the calling thread's namespace), brings it up and
    /// joins it promiscuously; with `steering` of several queues, a socket
    /// per queue, each frame going to the one `steering` picks.
    pub fn open(ifname: &str, steering: Option<&CpuSteering>) -> io::Result<AfPacket> {
        let ifindex = ifctl::index(ifname).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface `{ifname}`"))
        })?;
        let single = || {
            Ok::<_, io::Error>(Queues::new(
                AfPacket::socket(ifname, ifindex, false)?,
                Vec::new(),
            ))
        };
        let fds = match steering.filter(|s| s.queues() > 1) {
            None => single()?,
            Some(s) => match AfPacket::fanout(ifname, ifindex, s) {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(nic = ifname, error = %e, "no socket per worker on the NIC (fanout): one socket serves it");
                    single()?
                }
            },
        };
        ifctl::set_up(ifname, true)?;
        Ok(AfPacket { fds, ifindex })
    }

    /// A socket per queue of `steering`, joined in one fanout group (in
    /// order, so socket i is member i) that `steering`'s program demuxes.
    /// The group ignores what is sent on the NIC, as a lone socket does
    /// (Linux 6.2 and later); the sockets after the first receive nothing
    /// until they have joined, so no frame is read twice.
    fn fanout(ifname: &str, ifindex: u32, steering: &CpuSteering) -> io::Result<Queues> {
        let join = |fd: &OwnedFd, id: libc::c_int, flags: libc::c_int| {
            let val =
                id | ((PACKET_FANOUT_EBPF | PACKET_FANOUT_FLAG_IGNORE_OUTGOING | flags) << 16);
            setopt(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, val)
        };
        let first = AfPacket::socket(ifname, ifindex, false)?;
        join(&first, 0, PACKET_FANOUT_FLAG_UNIQUEID)?;
        setopt(
            first.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT_DATA,
            steering.prog_fd(),
        )?;
        let id = getopt(first.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT)? & 0xffff;
        let mut more = Vec::new();
        for _ in 1..steering.queues() {
            let fd = AfPacket::socket(ifname, ifindex, true)?;
            join(&fd, id, 0)?;
            setopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0)?;
            more.push(fd);
        }
        Ok(Queues::new(first, more))
    }

    /// One packet socket bound to `ifname`, promiscuous; `quiet`: with a
    /// filter that drops everything (until it is taken off).
    fn socket(ifname: &str, ifindex: u32, quiet: bool) -> io::Result<OwnedFd> {
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
        if quiet {
            drop_all(raw)?;
        }
        setopt(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        setopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        // The kernel strips VLAN tags on receive; auxdata gives them back.
        setopt(raw, libc::SOL_PACKET, PACKET_AUXDATA, 1)?;
        // Linux 4.20 and later; on older kernels our own transmissions come
        // back to us (they are then learned on the NIC: run a newer kernel).
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
        setopt_of(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)?;
        Ok(fd)
    }
}

/// Attaches a classic filter that accepts nothing (`ret #0`).
fn drop_all(fd: RawFd) -> io::Result<()> {
    let mut nothing = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: nothing.as_mut_ptr(),
    };
    // SO_ATTACH_FILTER copies the program `prog` points to.
    setopt_of(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn getopt(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int we own, with its length.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// The VLAN tag (TPID, TCI) the kernel stripped, from the auxdata message.
fn vlan_of(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: c points at a complete cmsghdr inside the buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == PACKET_AUXDATA {
            // SAFETY: the payload of PACKET_AUXDATA is a tpacket_auxdata.
            let aux = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>())
            };
            if aux.tp_status & TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                0x8100
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: advancing within the control buffer.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    None
}

/// Puts a VLAN tag back after the MAC addresses of the packet in `buf[..n]`
/// (virtio-net header first) and shifts the header's offsets; returns the new length.
pub fn insert_vlan(buf: &mut [u8], n: usize, (tpid, tci): (u16, u16)) -> usize {
    let at = VNET_HDR_LEN + 12;
    if n < at || n + 4 > buf.len() {
        return n;
    }
    buf.copy_within(at..n, at + 4);
    buf[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
    shift_offsets(&mut buf[..VNET_HDR_LEN], 4);
    n + 4
}

/// Reads one frame from `fd`, its stripped VLAN tag put back.
fn recv_on(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // Leave room to put a stripped VLAN tag back.
    let room = buf.len().saturating_sub(4);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: room,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain old data; fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: recvmsg into buffers we own, bounded by their lengths.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        return Err(last_err());
    }
    let n = n as usize;
    if n > room {
        // Larger than any buffer we could have offered: never pass on a
        // truncated frame.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized frame from NIC",
        ));
    }
    match vlan_of(&msg) {
        Some(tag) => Ok(insert_vlan(buf, n, tag)),
        None => Ok(n),
    }
}

impl PortIo for AfPacket {
    fn fd(&self) -> Option<RawFd> {
        Some(self.fds.first().as_raw_fd())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv_on(self.fds.first(), buf)
    }

    /// Sends on the calling worker's socket (any socket of the group sends
    /// on the NIC; this keeps each worker's sends on its own).
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let fd = self.fds.for_send();
        // SAFETY: sending from a buffer we borrow, bounded by its length.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 { Err(last_err()) } else { Ok(()) }
    }

    fn queues(&self) -> usize {
        self.fds.len()
    }

    fn queue_fd(&self, q: usize) -> Option<RawFd> {
        self.fds.raw(q)
    }

    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        self.fds.read(q, |fd| recv_on(fd, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tag_is_reinserted_and_offsets_shift() {
        let mut buf = vec![0u8; 128];
        buf[..10].copy_from_slice(&[1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0]);
        for (i, b) in buf[10..10 + 60].iter_mut().enumerate() {
            *b = i as u8;
        }
        let n = insert_vlan(&mut buf, 70, (0x8100, 0x0064));
        assert_eq!(n, 74);
        assert_eq!(&buf[10..22], &(0u8..12).collect::<Vec<_>>()[..]);
        assert_eq!(&buf[22..26], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(buf[26], 12, "ethertype follows the tag");
        assert_eq!(u16::from_le_bytes([buf[2], buf[3]]), 58, "hdr_len");
        assert_eq!(u16::from_le_bytes([buf[6], buf[7]]), 38, "csum_start");
    }

    #[test]
    fn absurd_offsets_do_not_overflow() {
        let mut buf = vec![0xffu8; 64];
        buf[..10].copy_from_slice(&[1, 1, 0xff, 0xff, 1, 0, 0xff, 0xff, 0, 0]);
        assert_eq!(insert_vlan(&mut buf, 40, (0x8100, 1)), 44);
    }
}
