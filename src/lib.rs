//! niswitch: a pure-userspace software switch for the network instances of an
//! edge OS. See docs/ARCHITECTURE.md for how the modules fit together.

pub mod config;
pub mod ports;
pub mod switch;
