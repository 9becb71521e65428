//! TAP devices opened with a virtio-net header and TSO/checksum offloads, so
//! the kernel hands over (and accepts) whole 64 KiB GSO frames; with several
//! queues (IFF_MULTI_QUEUE) so that one app's flows spread over workers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::queues::Queues;
use super::steering::{self, CpuSteering};
use super::{PortIo, cvt, ifctl, last_err};
use crate::config::Mac;
use crate::frame::VNET_HDR_LEN;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_TUN_EXCL: libc::c_short = -0x8000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// How to make a TAP.
#[derive(Debug, Clone, Default)]
pub struct TapOptions {
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    /// Keep the device when the descriptor closes (host TAPs that must
    /// survive a restart of niswitch).
    pub persist: bool,
    /// Refuse to attach to a TAP that already exists (one niswitch did not make).
    pub exclusive: bool,
    /// Receive queues wanted (0 or 1: a plain TAP). The kernel puts each flow
    /// the app sends on one queue, by its hash.
    pub queues: usize,
    /// Frames each queue holds for niswitch (None: the kernel's 1000).
    pub txqueuelen: Option<u32>,
}

pub struct Tap {
    fds: Queues,
    name: String,
}

/// Opens /dev/net/tun and attaches it to TAP `name` with `flags`.
fn attach(name: &str, flags: libc::c_short) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: open(2) with a constant path.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
    // SAFETY: fd was just opened.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | flags;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut libc::ifreq) })?;
    Ok(fd)
}

impl Tap {
    /// Creates (or attaches to an existing persistent) TAP in the calling
    /// thread's namespace, sets its MAC and MTU and brings it up.
    pub fn open(opts: &TapOptions) -> io::Result<Tap> {
        if opts.name.is_empty() || opts.name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad TAP name `{}`", opts.name),
            ));
        }
        let (fd, multi) = Tap::attach_first(opts).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                io::Error::new(e.kind(), format!("create TAP `{}`: an interface of that name exists and niswitch did not make it", opts.name))
            } else {
                io::Error::new(e.kind(), format!("create TAP `{}`: {e}", opts.name))
            }
        })?;
        let hdr: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ takes a pointer to an int.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                TUNSETVNETHDRSZ as _,
                &hdr as *const libc::c_int,
            )
        })?;
        let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes the flags by value. USO needs Linux 6.2;
        // fall back to TSO only when the kernel refuses it.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                TUNSETOFFLOAD as _,
                (base | TUN_F_USO4 | TUN_F_USO6) as libc::c_ulong,
            )
        };
        if r < 0 {
            // SAFETY: as above.
            cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, base as libc::c_ulong) })?;
        }
        // SAFETY: TUNSETPERSIST takes an int by value.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                TUNSETPERSIST as _,
                opts.persist as libc::c_ulong,
            )
        })?;
        if let Some(mac) = opts.mac
            && ifctl::mac(&opts.name).ok() != Some(mac)
        {
            ifctl::set_mac(&opts.name, mac)?;
        }
        if let Some(mtu) = opts.mtu {
            ifctl::set_mtu(&opts.name, mtu)?;
        }
        ifctl::set_up(&opts.name, true)?;
        if let Some(len) = opts.txqueuelen {
            ifctl::set_txqueuelen(&opts.name, len)?;
        }
        let more = match multi {
            true => Tap::attach_more(&opts.name, opts.queues),
            false => Vec::new(),
        };
        Ok(Tap {
            fds: Queues::new(fd, more),
            name: opts.name.clone(),
        })
    }

    /// The first queue, multiqueue when more than one is wanted; returns
    /// whether the device is multiqueue. A persistent TAP that already
    /// exists keeps the mode it was made with (the kernel refuses the other).
    fn attach_first(opts: &TapOptions) -> io::Result<(OwnedFd, bool)> {
        let multi = opts.queues > 1;
        let mode = |m: bool| if m { IFF_MULTI_QUEUE } else { 0 };
        let excl = if opts.exclusive { IFF_TUN_EXCL } else { 0 };
        match attach(&opts.name, mode(multi) | excl) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !opts.exclusive => {
                Ok((attach(&opts.name, mode(!multi))?, !multi))
            }
            r => r.map(|fd| (fd, multi)),
        }
    }

    /// Queues 2..=`queues` of a multiqueue TAP; one that cannot be attached
    /// leaves the port with fewer (and a warning), not without one.
    fn attach_more(name: &str, queues: usize) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        for _ in 1..queues {
            match attach(name, IFF_MULTI_QUEUE) {
                Ok(fd) => fds.push(fd),
                Err(e) => {
                    tracing::warn!(tap = name, error = %e, "cannot add a queue to the TAP");
                    break;
                }
            }
        }
        fds
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Steers the frames the app sends over the queues with `steering`, or
    /// (None) by their flow's hash, taking off a program an earlier run left.
    pub fn steer(&self, steering: Option<&CpuSteering>) -> io::Result<()> {
        match steering {
            Some(s) => s.attach(self.fds.first()),
            None => steering::detach(self.fds.first()),
        }
    }

    /// Clears the persist flag, so the device goes away with the descriptors.
    pub fn unpersist(&self) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes an int by value.
        cvt(unsafe {
            libc::ioctl(
                self.fds.first().as_raw_fd(),
                TUNSETPERSIST as _,
                0 as libc::c_ulong,
            )
        })?;
        Ok(())
    }
}

/// Reads one packet from `fd`.
fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a buffer we own, bounded by its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(last_err())
    } else {
        Ok(n as usize)
    }
}

impl PortIo for Tap {
    fn fd(&self) -> Option<RawFd> {
        Some(self.fds.first().as_raw_fd())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(self.fds.first(), buf)
    }

    /// Writes on the queue of the calling worker (of a multiqueue TAP), so
    /// that the kernel sends the app's frames of this flow to that worker's
    /// queue too.
    fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let fd = self.fds.for_send();
        // SAFETY: writing from a buffer we borrow, bounded by its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if n < 0 {
            Err(last_err())
        } else if n as usize != pkt.len() {
            Err(io::Error::other("short write to TAP"))
        } else {
            Ok(())
        }
    }

    fn queues(&self) -> usize {
        self.fds.len()
    }

    fn queue_fd(&self, q: usize) -> Option<RawFd> {
        self.fds.raw(q)
    }

    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        self.fds.read(q, |fd| read(fd, buf))
    }
}
