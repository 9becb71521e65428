//! The router's uplinks as one set: polled together, ticked once a second,
//! the cheapest healthy one active, and their view handed to the NAT and
//! published for status.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::super::napt::{Nat, UplinkView};
use super::super::uplink::{Uplink, UplinkInfo, choose_active};
use crate::switch::Switch;

pub(super) struct UplinkSet {
    list: Vec<Uplink>,
    active: Option<usize>,
    /// Published for status after every tick.
    shared: Arc<Mutex<Vec<UplinkInfo>>>,
    ni: String,
}

impl UplinkSet {
    pub fn new(list: Vec<Uplink>, shared: Arc<Mutex<Vec<UplinkInfo>>>, ni: String) -> Self {
        if let Ok(mut s) = shared.lock() {
            *s = list.iter().map(|u| u.info(false)).collect();
        }
        UplinkSet {
            list,
            active: None,
            shared,
            ni,
        }
    }

    /// Runs every uplink's stack; what they send is switched at once.
    pub fn poll(&mut self, switch: &Switch) {
        for u in &mut self.list {
            u.poll(switch);
        }
    }

    /// Milliseconds until one of the stacks wants to be polled.
    pub fn delay_ms(&mut self) -> u64 {
        self.list
            .iter_mut()
            .map(|u| u.delay_ms())
            .min()
            .unwrap_or(200)
    }

    pub fn wake_fds(&self) -> Vec<i32> {
        self.list.iter().map(|u| u.wake_fd()).collect()
    }

    /// The resolvers the active uplink learned.
    pub fn active_dns(&self) -> Vec<Ipv4Addr> {
        self.active
            .and_then(|i| self.list.get(i))
            .map(|u| u.dns_servers.clone())
            .unwrap_or_default()
    }

    /// The active uplink's address.
    pub fn active_address(&self) -> Option<Ipv4Addr> {
        let u = self.list.get(self.active?)?;
        Some(u.address?.address())
    }

    /// A fresh relay port on the active uplink for one query.
    pub fn relay_port(&mut self) -> Option<u16> {
        self.active
            .and_then(|i| self.list.get_mut(i))
            .and_then(|u| u.relay_port())
    }

    /// A TCP connection to `server` on the active uplink for one query.
    pub fn relay_tcp(&mut self, server: Ipv4Addr) -> Option<u16> {
        self.active
            .and_then(|i| self.list.get_mut(i))
            .and_then(|u| u.relay_tcp(server))
    }

    /// Sends a DNS query through the active uplink from relay port `port`.
    pub fn send_dns(&mut self, query: &[u8], server: Ipv4Addr, port: u16) {
        if let Some(u) = self.active.and_then(|i| self.list.get_mut(i)) {
            u.send_dns(query, server, port);
        }
    }

    /// DNS answers that came back on any uplink: answer, source, relay port.
    pub fn dns_answers(&mut self) -> Vec<(Vec<u8>, Ipv4Addr, u16)> {
        self.list.iter_mut().flat_map(|u| u.dns_answers()).collect()
    }

    /// Closes a relay port, on whichever uplink has it.
    pub fn release_port(&mut self, port: u16) {
        for u in &mut self.list {
            u.release_port(port);
        }
    }

    /// An app's IPv6 frame routed out of the active uplink; false when it
    /// could not be.
    pub fn send6(&mut self, switch: &Switch, f: &[u8]) -> bool {
        let u = self.active.and_then(|i| self.list.get_mut(i));
        u.is_some_and(|u| u.send6(switch, f))
    }

    /// Frames for the NI's IPv6 subnet that reached any uplink.
    pub fn take_inbound6(&mut self) -> Vec<Vec<u8>> {
        self.list
            .iter_mut()
            .flat_map(|u| u.take_inbound6())
            .collect()
    }

    /// Once a second: probes, the active uplink, the NAT's view, status.
    pub fn tick(&mut self, now_s: u64, nat: &Nat, switch: &Switch) {
        for u in &mut self.list {
            u.tick(now_s);
            u.tick6(switch);
        }
        let active = choose_active(&self.list);
        if active != self.active {
            let name = |i: Option<usize>| {
                i.and_then(|i| self.list.get(i))
                    .map_or("none".to_string(), |u| u.setup.port.clone())
            };
            tracing::info!(ni = %self.ni, from = %name(self.active), to = %name(active), "active uplink changed");
            self.active = active;
        }
        let views: Vec<UplinkView> = self
            .list
            .iter()
            .map(|u| UplinkView {
                address: u
                    .address
                    .and_then(|a| ipnet::Ipv4Net::new(a.address(), a.prefix_len()).ok()),
                gateway: u.gateway,
                healthy: u.healthy,
            })
            .collect();
        nat.tick(&views, self.active);
        if let Ok(mut st) = self.shared.lock() {
            *st = self
                .list
                .iter()
                .enumerate()
                .map(|(i, u)| u.info(Some(i) == self.active))
                .collect();
        }
    }
}
