//! Spanning-tree BPDUs (IEEE 802.1D-2004 §9): configuration and TCN BPDUs of
//! 802.1D, RST BPDUs of 802.1w, read from and written to the LLC payload of
//! a frame to 01:80:c2:00:00:00. Times are in 1/256 s on the wire and in
//! whole seconds here.

/// The group address BPDUs are sent to.
pub const STP_GROUP: [u8; 6] = [0x01, 0x80, 0xc2, 0, 0, 0];
const LLC: [u8; 3] = [0x42, 0x42, 0x03];

pub const FLAG_TC: u8 = 0x01;
pub const FLAG_PROPOSAL: u8 = 0x02;
pub const FLAG_LEARNING: u8 = 0x10;
pub const FLAG_FORWARDING: u8 = 0x20;
pub const FLAG_AGREEMENT: u8 = 0x40;
pub const FLAG_TCA: u8 = 0x80;
const ROLE_SHIFT: u8 = 2;

/// A port role as an RST BPDU carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireRole {
    Unknown,
    AlternateOrBackup,
    Root,
    Designated,
}

/// A spanning-tree priority vector: what bridges compare (smaller is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Vector {
    pub root: u64,
    pub cost: u32,
    pub bridge: u64,
    pub port: u16,
}

/// The timers a root gives the tree, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub message_age: u16,
    pub max_age: u16,
    pub hello: u16,
    pub forward_delay: u16,
}

/// One BPDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bpdu {
    /// A configuration BPDU (802.1D, `rstp` false) or an RST BPDU.
    Config {
        rstp: bool,
        flags: u8,
        vector: Vector,
        times: Times,
    },
    /// A topology change notification (802.1D).
    Tcn,
}

impl Bpdu {
    /// Reads the LLC payload of a frame (from its LLC header on). None: not
    /// a BPDU this bridge understands (it is ignored, as 802.1D says).
    pub fn parse(llc: &[u8]) -> Option<Bpdu> {
        let b = llc.strip_prefix(&LLC[..])?;
        if b.len() < 4 || b[0] != 0 || b[1] != 0 {
            return None;
        }
        match b[3] {
            0x80 => Some(Bpdu::Tcn),
            0x00 | 0x02 if b.len() >= 35 => {
                let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                let be64 = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
                let secs = |i: usize| be16(i) / 256;
                Some(Bpdu::Config {
                    rstp: b[3] == 0x02 && b[2] >= 2,
                    flags: b[4],
                    vector: Vector {
                        root: be64(5),
                        cost: u32::from_be_bytes([b[13], b[14], b[15], b[16]]),
                        bridge: be64(17),
                        port: be16(25),
                    },
                    times: Times {
                        message_age: secs(27),
                        max_age: secs(29),
                        hello: secs(31),
                        forward_delay: secs(33),
                    },
                })
            }
            _ => None,
        }
    }

    /// The frame (no virtio-net header) that carries this BPDU from `src`.
    pub fn frame(&self, src: [u8; 6]) -> Vec<u8> {
        let mut body = Vec::with_capacity(36);
        body.extend(LLC);
        match self {
            Bpdu::Tcn => body.extend([0, 0, 0, 0x80]),
            Bpdu::Config {
                rstp,
                flags,
                vector,
                times,
            } => {
                let (version, kind) = if *rstp { (2, 0x02) } else { (0, 0x00) };
                body.extend([0, 0, version, kind, *flags]);
                body.extend(vector.root.to_be_bytes());
                body.extend(vector.cost.to_be_bytes());
                body.extend(vector.bridge.to_be_bytes());
                body.extend(vector.port.to_be_bytes());
                for t in [
                    times.message_age,
                    times.max_age,
                    times.hello,
                    times.forward_delay,
                ] {
                    body.extend((t.saturating_mul(256)).to_be_bytes());
                }
                if *rstp {
                    body.push(0);
                }
            }
        }
        let mut f = Vec::with_capacity(60);
        f.extend(STP_GROUP);
        f.extend(src);
        f.extend((body.len() as u16).to_be_bytes());
        f.extend(body);
        f.resize(f.len().max(60), 0);
        f
    }
}

/// The role bits of an RST BPDU's flags.
pub fn role_flags(role: WireRole) -> u8 {
    let r = match role {
        WireRole::Unknown => 0,
        WireRole::AlternateOrBackup => 1,
        WireRole::Root => 2,
        WireRole::Designated => 3,
    };
    r << ROLE_SHIFT
}

/// The role an RST BPDU's flags name.
pub fn role_of(flags: u8) -> WireRole {
    match (flags >> ROLE_SHIFT) & 3 {
        1 => WireRole::AlternateOrBackup,
        2 => WireRole::Root,
        3 => WireRole::Designated,
        _ => WireRole::Unknown,
    }
}

/// The LLC payload of a frame (after the MAC addresses and the length), if
/// it is an 802.3 frame to the spanning-tree group address.
pub fn llc_payload(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 17 || frame[..6] != STP_GROUP {
        return None;
    }
    let len = u16::from_be_bytes([frame[12], frame[13]]) as usize;
    if len > 1500 {
        return None;
    }
    frame.get(14..14 + len.min(frame.len() - 14))
}
