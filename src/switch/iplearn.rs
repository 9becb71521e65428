//! Learns the IPv4 addresses of app VIFs from the frames that pass (ARP sent
//! by the VIF, DHCP ACKs sent to it), so `status` can show them for switch NIs
//! whose addresses come from the LAN.

use std::net::Ipv4Addr;

use crate::config::Mac;
use crate::frame::{ETH_HDR_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, Packet};

/// An address worth recording, and the MAC of the station it belongs to.
#[derive(Debug, PartialEq, Eq)]
pub struct Sighting {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// From a DHCP ACK (sent by a server to `mac`), not from `mac` itself.
    pub from_server: bool,
}

/// Cheap test run on every frame: only ARP and IPv4 UDP to port 68 qualify,
/// untagged or under one 802.1Q tag.
#[inline]
pub fn sighting(p: &Packet) -> Option<Sighting> {
    let f = p.frame();
    let (ethertype, l3) = match p.tci() {
        Some(_) => (u16::from_be_bytes([*f.get(16)?, *f.get(17)?]), f.get(18..)?),
        None => (p.ethertype(), &f[ETH_HDR_LEN..]),
    };
    match ethertype {
        ETHERTYPE_ARP => arp(l3),
        ETHERTYPE_IPV4 => dhcp_ack(l3),
        _ => None,
    }
}

fn arp(a: &[u8]) -> Option<Sighting> {
    if a.len() < 28 || a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 {
        return None;
    }
    let mac = Mac(a[8..14].try_into().ok()?);
    let ip = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    (!ip.is_unspecified()).then_some(Sighting {
        mac,
        ip,
        from_server: false,
    })
}

fn dhcp_ack(ip: &[u8]) -> Option<Sighting> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let udp = ip.get(ihl..)?;
    if udp.len() < 8 || udp[0..2] != [0, 67] || udp[2..4] != [0, 68] {
        return None;
    }
    let b = &udp[8..];
    if b.len() < 240 || b[0] != 2 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mac = Mac(b[28..34].try_into().ok()?);
    let mut opts = &b[240..];
    while let [code, rest @ ..] = opts {
        match code {
            0 => opts = rest,
            255 => break,
            _ => {
                let [len, data @ ..] = rest else { return None };
                let len = *len as usize;
                let val = data.get(..len)?;
                if *code == 53 {
                    return (val == [5] && !yiaddr.is_unspecified()).then_some(Sighting {
                        mac,
                        ip: yiaddr,
                        from_server: true,
                    });
                }
                opts = &data[len..];
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VNET_HDR_LEN;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; VNET_HDR_LEN];
        v.extend([0xff; 6]);
        v.extend([2, 0, 0, 0, 0, 1]);
        v.extend(ethertype.to_be_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn arp_request() {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 5];
        a.extend([0; 10]);
        let b = eth(ETHERTYPE_ARP, &a);
        let s = sighting(&Packet::new_checked(&b).unwrap()).unwrap();
        assert_eq!(s.ip, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(s.mac.to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn dhcp_ack_and_garbage() {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 255, 255, 255, 255,
        ];
        ip.extend([0, 67, 0, 68, 0, 0, 0, 0]);
        let mut bootp = vec![0u8; 240];
        bootp[0] = 2;
        bootp[16..20].copy_from_slice(&[10, 0, 0, 7]);
        bootp[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
        bootp.extend([53, 1, 5, 255]);
        ip.extend(&bootp);
        let b = eth(ETHERTYPE_IPV4, &ip);
        let s = sighting(&Packet::new_checked(&b).unwrap()).unwrap();
        assert_eq!(s.ip, Ipv4Addr::new(10, 0, 0, 7));
        // The same ACK under an 802.1Q tag (a trunk) counts too.
        let mut tagged = b.clone();
        let at = VNET_HDR_LEN + 12;
        tagged.splice(at..at, [0x81, 0x00, 0, 100]);
        let s = sighting(&Packet::new_checked(&tagged).unwrap()).unwrap();
        assert_eq!(s.ip, Ipv4Addr::new(10, 0, 0, 7));
        // An OFFER (2) is not recorded; a truncated option list is ignored.
        let n = ip.len();
        ip[n - 2] = 2;
        assert_eq!(
            sighting(&Packet::new_checked(&eth(ETHERTYPE_IPV4, &ip)).unwrap()),
            None
        );
        ip.truncate(n - 3);
        ip.extend([53, 9]);
        assert_eq!(
            sighting(&Packet::new_checked(&eth(ETHERTYPE_IPV4, &ip)).unwrap()),
            None
        );
    }
}
