//! Address types read from the config: IP text (v4, v6, CIDR; IPv4-mapped
//! normalized to IPv4, IPv4-compatible refused) and Ethernet MACs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Folds an IPv4-mapped IPv6 address into IPv4 and refuses the deprecated
/// IPv4-compatible form.
pub fn normalize_ip(ip: IpAddr) -> Result<IpAddr, String> {
    match ip {
        IpAddr::V4(_) => Ok(ip),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Ok(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let compatible = seg[..6].iter().all(|s| *s == 0)
                && v6 != Ipv6Addr::UNSPECIFIED
                && v6 != Ipv6Addr::LOCALHOST;
            if compatible {
                let v4 = Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32);
                return Err(format!(
                    "`{v6}` is the deprecated IPv4-compatible IPv6 form; write `{v4}` (or `::ffff:{v4}`)"
                ));
            }
            Ok(ip)
        }
    }
}

/// Parses an address, accepting an optional `/prefix` (which is dropped).
pub fn parse_ip_text(text: &str) -> Result<IpAddr, String> {
    let t = text.trim();
    let addr_part = t.split_once('/').map_or(t, |(a, _)| a);
    let ip = IpAddr::from_str(addr_part).map_err(|_| {
        format!("`{text}` is not an IP address (expected IPv4 such as 192.0.2.1 or IPv6 such as 2001:db8::1)")
    })?;
    if let Some((_, p)) = t.split_once('/') {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("`{text}` has an invalid prefix length (0..={max})")),
        }
    }
    normalize_ip(ip)
}

/// Parses a network in CIDR text; a bare address is a host route (/32, /128).
/// Host bits must be zero.
pub fn parse_net_text(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let orig = IpAddr::from_str(addr).map_err(|_| {
        format!(
            "`{text}` is not an IP network (expected CIDR such as 10.50.0.0/24 or 2001:db8::/64)"
        )
    })?;
    let ip = normalize_ip(orig)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let mut len = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= if orig.is_ipv4() { 32 } else { 128 } => n,
            _ => return Err(format!("`{text}` has an invalid prefix length")),
        },
    };
    if orig.is_ipv6() && ip.is_ipv4() {
        // ::ffff:a.b.c.d/120 becomes a.b.c.d/24
        len = len.saturating_sub(96);
    }
    let net = IpNet::new(ip, len).map_err(|e| format!("`{text}`: {e}"))?;
    if net.network() != ip {
        return Err(format!(
            "`{text}` has host bits set; did you mean `{}`?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An IP address field of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpText(pub IpAddr);

impl<'de> Deserialize<'de> for IpText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_ip_text(&s)
            .map(IpText)
            .map_err(serde::de::Error::custom)
    }
}

/// A network (CIDR) field of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetText(pub IpNet);

impl<'de> Deserialize<'de> for NetText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_net_text(&s)
            .map(NetText)
            .map_err(serde::de::Error::custom)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
    /// The MAC as the low 48 bits of a u64.
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || {
            format!("`{s}` is not a MAC address (expected six hex bytes such as 02:00:00:00:00:01)")
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.is_empty() || p.len() > 2 {
                return Err(err());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_is_folded_and_compatible_refused() {
        assert_eq!(
            parse_ip_text("::ffff:192.0.2.1").unwrap(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let e = parse_ip_text("::192.0.2.1").unwrap_err();
        assert!(e.contains("IPv4-compatible"), "{e}");
        assert!(parse_ip_text("::1").is_ok());
        assert!(parse_ip_text("2001:db8::1").is_ok());
        assert_eq!(
            parse_ip_text("10.50.0.20/24").unwrap(),
            "10.50.0.20".parse::<IpAddr>().unwrap()
        );
        assert!(parse_ip_text("10.50.0.300").is_err());
    }

    #[test]
    fn nets() {
        assert_eq!(
            parse_net_text("10.50.0.0/24").unwrap().to_string(),
            "10.50.0.0/24"
        );
        assert_eq!(
            parse_net_text("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_net_text("::ffff:10.50.0.0/120").unwrap().to_string(),
            "10.50.0.0/24"
        );
        assert!(
            parse_net_text("10.50.0.1/24")
                .unwrap_err()
                .contains("10.50.0.0/24")
        );
        assert!(parse_net_text("10.50.0.0/33").is_err());
    }

    #[test]
    fn macs() {
        let m: Mac = "02:16:3E:87:5f:dc".parse().unwrap();
        assert_eq!(m.to_string(), "02:16:3e:87:5f:dc");
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:0g".parse::<Mac>().is_err());
        assert!("002:00:00:00:00:01".parse::<Mac>().is_err());
    }
}
