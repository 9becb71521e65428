//! niswitch: a pure-userspace software switch for the network instances of an
//! edge OS. See docs/ARCHITECTURE.md for how the modules fit together.

pub mod clock;
pub mod cni;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod durable;
pub mod frame;
pub mod ipstack;
pub mod logging;
pub mod nodeip;
pub mod notify;
pub mod ports;
pub mod privileges;
pub mod rand;
pub mod sandbox;
pub mod services;
pub mod switch;
pub mod sync;
