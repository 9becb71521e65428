//! Per-port counters: packets and bytes each way, and one named counter for
//! every reason a frame is dropped. Each port keeps one copy of its counters
//! per worker (a cache line apart) and sums them on read, so that threads
//! switching frames never write to the same line.

use std::cell::Cell;
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
    /// Receiving failed (an oversized frame, a device error).
    RxError,
    /// A BPDU came from an app interface (or the interface BPDU guard
    /// disabled): dropped, as is everything else it sends or is sent.
    BpduGuard,
    /// A link-local control frame (STP, LACP, pause; LLDP unless the NI
    /// forwards it) that a bridge never forwards.
    LinkLocal,
    /// A tagged frame on an access port or VIF (its VLAN is untagged there).
    VlanTagged,
    /// A frame tagged with a VLAN that no access member of the NI carries.
    VlanUnknown,
    /// The port is discarding or learning (spanning tree).
    StpDiscarding,
    /// More BPDUs than a bridge sends came in on the port.
    BpduFlood,
}

impl DropReason {
    pub const ALL: [DropReason; 26] = [
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
        DropReason::RxError,
        DropReason::BpduGuard,
        DropReason::LinkLocal,
        DropReason::VlanTagged,
        DropReason::VlanUnknown,
        DropReason::StpDiscarding,
        DropReason::BpduFlood,
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
            DropReason::RxError => "rx_error",
            DropReason::BpduGuard => "bpdu_guard",
            DropReason::LinkLocal => "link_local",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::VlanUnknown => "vlan_unknown",
            DropReason::StpDiscarding => "stp_discarding",
            DropReason::BpduFlood => "bpdu_flood",
        }
    }
}

/// Copies of each port's counters: one for threads that are not workers,
/// and one per worker (workers beyond that share copies, still atomically).
pub const SHARDS: usize = 8;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread (worker `index`) count into its own copy.
pub fn use_shard_of_worker(index: usize) {
    SHARD.with(|s| s.set(1 + index % (SHARDS - 1)));
}

#[derive(Default)]
#[repr(align(64))]
struct Shard {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

#[derive(Default)]
pub struct PortStats {
    shards: [Shard; SHARDS],
}

impl PortStats {
    #[inline]
    fn mine(&self) -> &Shard {
        &self.shards[SHARD.with(|s| s.get())]
    }
    fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
    }
    #[inline]
    pub fn rx(&self, bytes: usize) {
        let s = self.mine();
        s.rx_packets.fetch_add(1, Relaxed);
        s.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    #[inline]
    pub fn tx(&self, bytes: usize) {
        let s = self.mine();
        s.tx_packets.fetch_add(1, Relaxed);
        s.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    #[inline]
    pub fn drop(&self, why: DropReason) {
        self.mine().drops[why as usize].fetch_add(1, Relaxed);
    }
    pub fn rx_packets(&self) -> u64 {
        self.sum(|s| &s.rx_packets)
    }
    pub fn rx_bytes(&self) -> u64 {
        self.sum(|s| &s.rx_bytes)
    }
    pub fn tx_packets(&self) -> u64 {
        self.sum(|s| &s.tx_packets)
    }
    pub fn tx_bytes(&self) -> u64 {
        self.sum(|s| &s.tx_bytes)
    }
    pub fn drops(&self, why: DropReason) -> u64 {
        self.sum(|s| &s.drops[why as usize])
    }
    /// All drop counters by name (zeros included, so dashboards see every reason).
    pub fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops(*r)))
            .collect()
    }
}

/// `N` counters with a copy per worker, summed on read (as `PortStats`).
pub struct Tally<const N: usize> {
    shards: [TallyShard<N>; SHARDS],
}

#[repr(align(64))]
struct TallyShard<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Tally {
            shards: std::array::from_fn(|_| TallyShard(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

impl<const N: usize> Tally<N> {
    #[inline]
    pub fn add(&self, i: usize) {
        let s = &self.shards[SHARD.with(|s| s.get())];
        s.0[i].fetch_add(1, Relaxed);
    }
    pub fn get(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s.0[i].load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_every_thread_add_up() {
        let st = std::sync::Arc::new(PortStats::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let st = st.clone();
                std::thread::spawn(move || {
                    if i > 0 {
                        use_shard_of_worker(i);
                    }
                    for _ in 0..1000 {
                        st.rx(100);
                        st.tx(60);
                        PortStats::drop(&st, DropReason::Storm);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(st.rx_packets(), 4000);
        assert_eq!(st.rx_bytes(), 400_000);
        assert_eq!(st.tx_packets(), 4000);
        assert_eq!(st.tx_bytes(), 240_000);
        assert_eq!(st.drops(DropReason::Storm), 4000);
        assert_eq!(st.drops(DropReason::Runt), 0);
    }
}
