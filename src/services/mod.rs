//! Network services as pure logic: request in, reply or verdict out. No
//! sockets and no threads here, so each is unit-tested, benched and fuzzed
//! alone; `ipstack` wires them to frames and ports.

pub mod acl;
pub mod dhcp;
pub mod dns;
pub mod flowlog;
pub mod nat;
