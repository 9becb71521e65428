//! The router's uplinks as one set: polled together, ticked once a second,
//! the cheapest healthy one active, and their view handed to the NAT and
//! published for status. The `host` uplink, when the NI has one, comes
//! after the NIC uplinks (its index is their count).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::super::host_uplink::HostUplink;
use super::super::napt::{Nat, UplinkView};
use super::super::uplink::{Uplink, UplinkInfo, choose_active};
use crate::switch::Switch;

pub(super) struct UplinkSet {
    list: Vec<Uplink>,
    host: Option<HostUplink>,
    active: Option<usize>,
    /// Published for status after every tick.
    shared: Arc<Mutex<Vec<UplinkInfo>>>,
    ni: String,
}

impl UplinkSet {
    pub fn new(
        list: Vec<Uplink>,
        host: Option<HostUplink>,
        shared: Arc<Mutex<Vec<UplinkInfo>>>,
        ni: String,
    ) -> Self {
        let set = UplinkSet {
            list,
            host,
            active: None,
            shared,
            ni,
        };
        set.publish();
        set
    }

    /// The active uplink, when it is the `host` one.
    fn host_active(&mut self) -> Option<&mut HostUplink> {
        self.host
            .as_mut()
            .filter(|_| self.active == Some(self.list.len()))
    }

    fn publish(&self) {
        let host = self
            .host
            .iter()
            .map(|h| h.info(self.active == Some(self.list.len())));
        let all = (self.list.iter().enumerate())
            .map(|(i, u)| u.info(Some(i) == self.active))
            .chain(host)
            .collect();
        if let Ok(mut st) = self.shared.lock() {
            *st = all;
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
        let host = self.host.iter().flat_map(|h| h.wake_fds());
        self.list.iter().map(|u| u.wake_fd()).chain(host).collect()
    }

    /// The resolvers the active uplink learned.
    pub fn active_dns(&self) -> Vec<Ipv4Addr> {
        let i = self.active.unwrap_or(usize::MAX);
        match (self.list.get(i), &self.host) {
            (Some(u), _) => u.dns_servers.clone(),
            (None, Some(h)) if i == self.list.len() => h.dns_servers.clone(),
            _ => Vec::new(),
        }
    }

    /// The active uplink's address.
    pub fn active_address(&self) -> Option<Ipv4Addr> {
        let i = self.active?;
        match self.list.get(i) {
            Some(u) => Some(u.address?.address()),
            None => self.host.as_ref()?.address,
        }
    }

    /// A fresh relay port on the active uplink for one query.
    pub fn relay_port(&mut self) -> Option<u16> {
        if let Some(h) = self.host_active() {
            return h.relay_port();
        }
        self.active
            .and_then(|i| self.list.get_mut(i))
            .and_then(|u| u.relay_port())
    }

    /// A TCP connection to `server` on the active uplink for one query.
    pub fn relay_tcp(&mut self, server: Ipv4Addr) -> Option<u16> {
        if let Some(h) = self.host_active() {
            return h.relay_tcp(server);
        }
        self.active
            .and_then(|i| self.list.get_mut(i))
            .and_then(|u| u.relay_tcp(server))
    }

    /// Sends a DNS query through the active uplink from relay port `port`.
    pub fn send_dns(&mut self, query: &[u8], server: Ipv4Addr, port: u16) {
        if let Some(h) = self.host_active() {
            return h.send_dns(query, server, port);
        }
        if let Some(u) = self.active.and_then(|i| self.list.get_mut(i)) {
            u.send_dns(query, server, port);
        }
    }

    /// DNS answers that came back on any uplink: answer, source, relay port.
    pub fn dns_answers(&mut self) -> Vec<(Vec<u8>, Ipv4Addr, u16)> {
        let host = self.host.iter_mut().flat_map(|h| h.dns_answers());
        let host: Vec<_> = host.collect();
        (self.list.iter_mut().flat_map(|u| u.dns_answers()))
            .chain(host)
            .collect()
    }

    /// Closes a relay port, on whichever uplink has it.
    pub fn release_port(&mut self, port: u16) {
        for u in &mut self.list {
            u.release_port(port);
        }
        if let Some(h) = &mut self.host {
            h.release_port(port);
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
        if let Some(h) = &mut self.host {
            h.tick(now_s);
        }
        let nics = self.list.iter().map(|u| (u.setup.cost, u.health.healthy));
        let host = self.host.iter().map(|h| (h.cost, h.health.healthy));
        let active = choose_active(nics.chain(host));
        if active != self.active {
            let name = |i: Option<usize>| match i.map(|i| (i, self.list.get(i))) {
                Some((_, Some(u))) => u.setup.port.clone(),
                Some((_, None)) => crate::config::HOST_UPLINK.to_string(),
                None => "none".to_string(),
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
                healthy: u.health.healthy,
            })
            .collect();
        nat.tick(&views, self.active);
        self.publish();
    }
}
