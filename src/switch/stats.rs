//! Per-port counters: packets and bytes each way, and one named counter for
//! every reason a frame is dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Every reason the switch drops a frame, each with its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Inconsistent virtio-net header.
    BadVnetHeader,
    /// Source MAC is multicast or all-zero.
    InvalidSrcMac,
    /// A VIF sent with a source MAC that is not its own.
    SpoofedSrcMac,
    /// Larger than the destination's MTU (never truncated).
    TooBig,
    /// The destination's queue was full.
    TxFull,
    /// The destination refused the frame.
    TxError,
    /// The destination's link is down.
    LinkDown,
    /// The destination is the port the frame came from.
    Hairpin,
    /// Handling the frame failed inside niswitch (a bug; logged).
    Internal,
    /// The app interface's ACL refused the flow.
    AclDenied,
    /// The flow's ACL rule is over its rate limit.
    AclRateLimited,
    /// An app's ARP named a sender MAC that is not its own.
    ArpSpoofedMac,
    /// An app's ARP named a sender IP it does not hold.
    ArpSpoofedIp,
    /// An app's ARP was too short to inspect.
    ArpMalformed,
    /// An app on a local NI sent from an address it does not hold.
    IpSpoofed,
    /// An app answered as a DHCP (or DHCPv6) server.
    DhcpServer,
    /// An app sent an IPv6 router advertisement or redirect.
    RaGuard,
    /// The port flooded more than its NI's flood_limit frames a second.
    Storm,
}

impl DropReason {
    pub const ALL: [DropReason; 19] = [
        DropReason::Runt,
        DropReason::BadVnetHeader,
        DropReason::InvalidSrcMac,
        DropReason::SpoofedSrcMac,
        DropReason::TooBig,
        DropReason::TxFull,
        DropReason::TxError,
        DropReason::LinkDown,
        DropReason::Hairpin,
        DropReason::Internal,
        DropReason::AclDenied,
        DropReason::AclRateLimited,
        DropReason::ArpSpoofedMac,
        DropReason::ArpSpoofedIp,
        DropReason::ArpMalformed,
        DropReason::IpSpoofed,
        DropReason::DhcpServer,
        DropReason::RaGuard,
        DropReason::Storm,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadVnetHeader => "bad_vnet_header",
            DropReason::InvalidSrcMac => "invalid_src_mac",
            DropReason::SpoofedSrcMac => "spoofed_src_mac",
            DropReason::TooBig => "too_big",
            DropReason::TxFull => "tx_full",
            DropReason::TxError => "tx_error",
            DropReason::LinkDown => "link_down",
            DropReason::Hairpin => "hairpin",
            DropReason::Internal => "internal_error",
            DropReason::AclDenied => "acl_denied",
            DropReason::AclRateLimited => "acl_rate_limited",
            DropReason::ArpSpoofedMac => "arp_spoofed_mac",
            DropReason::ArpSpoofedIp => "arp_spoofed_ip",
            DropReason::ArpMalformed => "arp_malformed",
            DropReason::IpSpoofed => "ip_spoofed",
            DropReason::DhcpServer => "dhcp_server",
            DropReason::RaGuard => "ra_guard",
            DropReason::Storm => "storm",
        }
    }
}

#[derive(Default)]
pub struct PortStats {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl PortStats {
    pub fn rx(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    pub fn tx(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    pub fn drop(&self, why: DropReason) {
        self.drops[why as usize].fetch_add(1, Relaxed);
    }
    pub fn drops(&self, why: DropReason) -> u64 {
        self.drops[why as usize].load(Relaxed)
    }
    /// All drop counters by name (zeros included, so dashboards see every reason).
    pub fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops(*r)))
            .collect()
    }
}
