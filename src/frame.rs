//! Typed views over the frames that move through the switch. Every frame is
//! carried as a 10-byte virtio-net header followed by the Ethernet frame, the
//! format TAPs (IFF_VNET_HDR) and AF_PACKET (PACKET_VNET_HDR) both speak, so a
//! 64 KiB GSO frame passes between them whole, without conversion.

use crate::config::Mac;

/// Length of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
pub const ETH_HDR_LEN: usize = 14;
/// Largest buffer a port hands the switch: a 64 KiB GSO frame plus headers.
pub const MAX_PACKET: usize = VNET_HDR_LEN + ETH_HDR_LEN + 65535 + 64;

pub const VNET_F_NEEDS_CSUM: u8 = 1;
pub const VNET_F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// Why a packet from a port cannot be switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a virtio-net header plus an Ethernet header.
    Runt,
    /// The virtio-net header is inconsistent (unknown GSO type, offsets past the end).
    BadVnetHeader,
}

/// A checked packet: virtio-net header + Ethernet frame.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Validates lengths and the virtio-net header once; the accessors below
    /// then read fields without further checks.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, FrameError> {
        if buf.len() < VNET_HDR_LEN + ETH_HDR_LEN {
            return Err(FrameError::Runt);
        }
        let p = Packet { buf };
        let frame_len = buf.len() - VNET_HDR_LEN;
        match p.gso_type() & !GSO_ECN {
            GSO_NONE => {}
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP | GSO_UDP_L4 => {
                if p.gso_size() == 0 {
                    return Err(FrameError::BadVnetHeader);
                }
            }
            _ => return Err(FrameError::BadVnetHeader),
        }
        if p.vnet_flags() & VNET_F_NEEDS_CSUM != 0
            && p.csum_start() as usize + p.csum_offset() as usize + 2 > frame_len
        {
            return Err(FrameError::BadVnetHeader);
        }
        Ok(p)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn frame(&self) -> &'a [u8] {
        &self.buf[VNET_HDR_LEN..]
    }
    pub fn vnet_flags(&self) -> u8 {
        self.buf[0]
    }
    pub fn gso_type(&self) -> u8 {
        self.buf[1]
    }
    fn le16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.buf[at], self.buf[at + 1]])
    }
    pub fn hdr_len(&self) -> u16 {
        self.le16(2)
    }
    pub fn gso_size(&self) -> u16 {
        self.le16(4)
    }
    pub fn csum_start(&self) -> u16 {
        self.le16(6)
    }
    pub fn csum_offset(&self) -> u16 {
        self.le16(8)
    }
    pub fn is_gso(&self) -> bool {
        self.gso_type() & !GSO_ECN != GSO_NONE
    }
    pub fn dst(&self) -> Mac {
        let f = self.frame();
        Mac([f[0], f[1], f[2], f[3], f[4], f[5]])
    }
    pub fn src(&self) -> Mac {
        let f = self.frame();
        Mac([f[6], f[7], f[8], f[9], f[10], f[11]])
    }
    pub fn ethertype(&self) -> u16 {
        let f = self.frame();
        u16::from_be_bytes([f[12], f[13]])
    }
    /// The tag control information (priority and VLAN) of an 802.1Q tag.
    pub fn tci(&self) -> Option<u16> {
        let f = self.frame();
        (self.ethertype() == ETHERTYPE_VLAN && f.len() >= ETH_HDR_LEN + 4)
            .then(|| u16::from_be_bytes([f[14], f[15]]))
    }
    /// The size of the largest L3 packet this frame puts on the wire: the
    /// frame itself, or one segment of a GSO frame.
    pub fn wire_l3_len(&self) -> usize {
        let frame_len = self.buf.len() - VNET_HDR_LEN;
        let vlan = if self.ethertype() == ETHERTYPE_VLAN {
            4
        } else {
            0
        };
        match self.gso_header_len() {
            Some(h) => h.saturating_sub(ETH_HDR_LEN + vlan) + self.gso_size() as usize,
            None => frame_len.saturating_sub(ETH_HDR_LEN + vlan),
        }
    }

    /// The headers in front of each segment of a GSO frame, from the
    /// Ethernet header to the end of the TCP or UDP header. `hdr_len` is
    /// only a hint (drivers report their linear length, often 128 bytes or
    /// more): the checksum start and the L4 header itself say where the
    /// payload begins; `hdr_len` counts only when they cannot.
    pub fn gso_header_len(&self) -> Option<usize> {
        if !self.is_gso() {
            return None;
        }
        let f = self.frame();
        let l4 = self.csum_start() as usize;
        let l4_len = match self.gso_type() & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 => f.get(l4 + 12).map_or(0, |b| (b >> 4) as usize * 4),
            GSO_UDP_L4 => 8,
            _ => 0,
        };
        if self.vnet_flags() & VNET_F_NEEDS_CSUM != 0 && l4_len >= 8 && l4 + l4_len <= f.len() {
            return Some(l4 + l4_len);
        }
        let hint = self.hdr_len() as usize;
        (hint > ETH_HDR_LEN).then_some(hint)
    }
}

/// Moves the virtio-net header's offsets into the frame (`hdr_len`, and
/// `csum_start` when a checksum is pending) by `by` bytes, after a VLAN tag
/// was put in or taken out in front of them.
pub fn shift_offsets(hdr: &mut [u8], by: i16) {
    let shift = |hdr: &mut [u8], i: usize| {
        let v = u16::from_le_bytes([hdr[i], hdr[i + 1]]);
        if v != 0 {
            let moved = v.saturating_add_signed(by);
            hdr[i..i + 2].copy_from_slice(&moved.to_le_bytes());
        }
    };
    if hdr[0] & VNET_F_NEEDS_CSUM != 0 {
        shift(hdr, 6);
    }
    if hdr[1] & !GSO_ECN != GSO_NONE {
        shift(hdr, 2);
    }
}

/// Writes `p` into `out` (cleared first) with its 802.1Q tag set to `tci`,
/// or without a tag (`None`): the payload is copied once and the
/// virtio-net header's offsets follow it.
pub fn retag(p: &Packet, tci: Option<u16>, out: &mut Vec<u8>) {
    let f = p.frame();
    let rest = if p.tci().is_some() { 16 } else { 12 };
    out.clear();
    out.extend_from_slice(&p.bytes()[..VNET_HDR_LEN]);
    out.extend_from_slice(&f[..12]);
    if let Some(t) = tci {
        out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        out.extend_from_slice(&t.to_be_bytes());
    }
    out.extend_from_slice(&f[rest..]);
    let by = out.len() as isize - p.bytes().len() as isize;
    shift_offsets(&mut out[..VNET_HDR_LEN], by as i16);
}

/// Writes a plain (no offload) virtio-net header in front of a frame.
pub fn plain_vnet_header() -> [u8; VNET_HDR_LEN] {
    [0; VNET_HDR_LEN]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(hdr: [u8; 10], frame_len: usize) -> Vec<u8> {
        let mut v = hdr.to_vec();
        v.extend(std::iter::repeat_n(0u8, frame_len));
        v
    }

    #[test]
    fn runts_and_headers() {
        assert_eq!(Packet::new_checked(&[0; 23]).err(), Some(FrameError::Runt));
        assert!(Packet::new_checked(&pkt([0; 10], 14)).is_ok());
        // unknown GSO type
        assert_eq!(
            Packet::new_checked(&pkt([0, 9, 0, 0, 0, 0, 0, 0, 0, 0], 60)).err(),
            Some(FrameError::BadVnetHeader)
        );
        // TSO with gso_size 0
        assert_eq!(
            Packet::new_checked(&pkt([0, 1, 54, 0, 0, 0, 0, 0, 0, 0], 60)).err(),
            Some(FrameError::BadVnetHeader)
        );
        // checksum offset beyond the frame
        assert_eq!(
            Packet::new_checked(&pkt([1, 0, 0, 0, 0, 0, 50, 0, 16, 0], 60)).err(),
            Some(FrameError::BadVnetHeader)
        );
        assert!(Packet::new_checked(&pkt([1, 0, 0, 0, 0, 0, 34, 0, 16, 0], 60)).is_ok());
    }

    #[test]
    fn short_vlan_and_odd_gso_headers_do_not_underflow() {
        let mut b = pkt([0; 10], 14);
        b[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(Packet::new_checked(&b).unwrap().wire_l3_len(), 0);
        let b = pkt([0, 1, 16, 0, 0xa8, 5, 0, 0, 0, 0], 60);
        let _ = Packet::new_checked(&b).unwrap().wire_l3_len();
    }

    #[test]
    fn gso_segment_size() {
        // TCPv4 GSO, hdr_len 66, mss 1448 -> 52 + 1448 = 1500 on the wire
        let mut b = pkt([1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0], 65000);
        b[VNET_HDR_LEN + 12] = 0x08;
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.wire_l3_len(), 1500);
    }

    #[test]
    fn gso_headers_come_from_the_tcp_header_not_the_hdr_len_hint() {
        // A driver's hdr_len of 128 (its linear length) for a frame whose
        // headers end at 34 + 32 = 66: segments are 52 + 1448 = 1500 bytes.
        let mut b = pkt([1, 1, 128, 0, 0xa8, 0x05, 34, 0, 16, 0], 65000);
        b[VNET_HDR_LEN + 12] = 0x08;
        b[VNET_HDR_LEN + 34 + 12] = 8 << 4;
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.gso_header_len(), Some(66));
        assert_eq!(p.wire_l3_len(), 1500);
        // UDP segmentation: 8-byte header after csum_start.
        let mut u = pkt([1, 5, 200, 0, 0xc8, 0x05, 34, 0, 6, 0], 30000);
        u[VNET_HDR_LEN + 12] = 0x08;
        let p = Packet::new_checked(&u).unwrap();
        assert_eq!(p.wire_l3_len(), 20 + 8 + 1480);
    }
}
