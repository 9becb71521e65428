//! The L3 side of local network instances: a router port on the NI's domain,
//! an embedded smoltcp interface for ARP and ICMP on the gateway address and
//! the DNS socket, and the DHCP server fed straight from frames (its clients
//! have no address yet, which an IP stack's sockets cannot talk to).

mod device;
mod health;
mod host_uplink;
pub mod hostlink;
mod napt;
pub mod port;
mod relay;
mod route6;
mod router;
pub mod translate;
mod uplink;
pub mod wire;

pub use napt::MapRule;
pub use router::{
    Router, RouterCounters, RouterSetup, RouterUpdate, UplinkPlan, router_mac, uplink_mac,
};
pub use uplink::UplinkInfo;
