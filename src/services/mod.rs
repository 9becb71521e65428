//! Network services as pure logic: request in, reply or verdict out. No
//! sockets and no threads here, so each is unit-tested, benched and fuzzed
//! alone; `ipstack` wires them to frames and ports. `vif_filter` plugs the
//! ACL engine into a switch port through the switch's `PortHook`.

pub mod acl;
pub mod dhcp;
pub mod dns;
pub mod flowlog;
pub mod ipv6;
pub mod metadata;
pub mod nat;
pub mod vif_filter;
