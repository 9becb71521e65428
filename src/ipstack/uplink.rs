//! The router's interface on one uplink: its own MAC on the uplink port's
//! domain, an address by DHCP (smoltcp's client, honouring lease times) or
//! static, a probe of the gateway or a configured target, and the health
//! that decides which uplink is active.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use smoltcp::iface::{Config as IfConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{dhcpv4, icmp, tcp};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Cidr};

use super::device::QueueDevice;
use super::health::Health;
use super::port::RouterPort;
use super::relay::Relay;
use super::route6::Route6;
use super::wire;
use crate::clock::mono_ms as now_ms;
use crate::config::{Mac, Probe, ProbeTarget, UplinkAddress};
use crate::switch::{PortEntry, Switch, now_secs};

const PROBE_PAYLOAD: &[u8] = b"niswitch uplink probe";

/// An uplink as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkInfo {
    pub port: String,
    pub address: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub healthy: bool,
    pub active: bool,
    /// With `uplink_prefix6`: the uplink's link-local address and the
    /// upstream IPv6 router in use.
    pub link_local6: Option<Ipv6Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// The `host` uplink's flows.
    pub sessions: Option<usize>,
}

/// What an uplink is made of.
pub struct UplinkSetup {
    pub port: String,
    pub cost: u8,
    pub mac: Mac,
    pub address: UplinkAddress,
    pub gateway: Option<Ipv4Addr>,
    pub probe: Probe,
    /// The NIC's entry: its link state counts as a failed probe.
    pub nic: Arc<PortEntry>,
    /// The router's port on the uplink's domain, and its queue.
    pub entry: Arc<PortEntry>,
    pub queue: Arc<RouterPort>,
    /// IPv6 routed through this uplink (`uplink_prefix6`).
    pub route6: Option<Route6>,
}

pub struct Uplink {
    pub setup: UplinkSetup,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    icmp: SocketHandle,
    tcp: SocketHandle,
    /// The DNS relay's sockets, one per query waiting upstream.
    relay: Relay,
    pub address: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    ident: u16,
    seq: u16,
    waiting: Option<u16>,
    pub health: Health,
    last_probe: u64,
}

/// The uplink's DHCP client. A lost DISCOVER is sent again after 4 s, the
/// first retransmission RFC 2131 §4.1 gives (smoltcp waits 10 s), so an
/// uplink whose server starts just after us comes up without a long gap.
fn dhcp_client() -> dhcpv4::Socket<'static> {
    let mut retry = dhcpv4::RetryConfig::default();
    retry.discover_timeout = smoltcp::time::Duration::from_secs(4);
    let mut s = dhcpv4::Socket::new();
    s.set_retry_config(retry);
    s
}

impl Uplink {
    pub fn new(setup: UplinkSetup, ident: u16) -> Uplink {
        let mut dev = QueueDevice::default();
        let iface = Interface::new(
            IfConfig::new(EthernetAddress(setup.mac.0).into()),
            &mut dev,
            SInstant::now(),
        );
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match setup.address {
            UplinkAddress::Dhcp => Some(sockets.add(dhcp_client())),
            UplinkAddress::Static(_) => None,
        };
        let ibuf =
            || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 1024]);
        let mut icmp_sock = icmp::Socket::new(ibuf(), ibuf());
        let _ = icmp_sock.bind(icmp::Endpoint::Ident(ident));
        let icmp = sockets.add(icmp_sock);
        let tcp = sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; 1024]),
            tcp::SocketBuffer::new(vec![0u8; 1024]),
        ));
        let mut up = Uplink {
            setup,
            iface,
            dev,
            sockets,
            dhcp,
            icmp,
            tcp,
            relay: Relay::default(),
            address: None,
            gateway: None,
            dns_servers: Vec::new(),
            ident,
            seq: 0,
            waiting: None,
            health: Health::default(),
            last_probe: 0,
        };
        if let UplinkAddress::Static(net) = up.setup.address {
            up.configure(
                Some(Ipv4Cidr::new(net.addr(), net.prefix_len())),
                up.setup.gateway,
                Vec::new(),
            );
        }
        up
    }

    fn configure(&mut self, addr: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>, dns: Vec<Ipv4Addr>) {
        self.iface.update_ip_addrs(|a| {
            a.clear();
            if let Some(c) = addr {
                let _ = a.push(IpCidr::Ipv4(c));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(g) = gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(g);
        }
        if self.address != addr {
            tracing::info!(uplink = %self.setup.port, address = ?addr.map(|a| a.to_string()), gateway = ?gateway, "uplink address");
        }
        self.address = addr;
        self.gateway = gateway;
        self.dns_servers = dns;
    }

    /// Takes the frames queued for this interface and runs the stack;
    /// IPv6 goes to the uplink's IPv6 routing, if it has one.
    pub fn poll(&mut self, switch: &Switch) {
        let now = now_ms();
        for pkt in self.setup.queue.drain() {
            let Some(f) = wire::finish_frame(&pkt) else {
                continue;
            };
            if let Some(replies) = self.setup.route6.as_mut().and_then(|r| r.take(&f, now)) {
                self.send(switch, replies);
            } else if self.dev.rx.len() < 1024 {
                self.dev.rx.push_back(f);
            }
        }
        self.iface
            .poll(SInstant::now(), &mut self.dev, &mut self.sockets);
        if let Some(h) = self.dhcp {
            let ev = self
                .sockets
                .get_mut::<dhcpv4::Socket>(h)
                .poll()
                .map(|e| match e {
                    dhcpv4::Event::Configured(c) => Some((
                        c.address,
                        c.router,
                        c.dns_servers.iter().copied().collect::<Vec<_>>(),
                    )),
                    dhcpv4::Event::Deconfigured => None,
                });
            match ev {
                Some(Some((a, r, d))) => self.configure(Some(a), r, d),
                Some(None) => self.configure(None, None, Vec::new()),
                None => {}
            }
        }
        self.read_probe_replies();
        self.check_tcp_probe();
        self.iface
            .poll(SInstant::now(), &mut self.dev, &mut self.sockets);
        for p in std::mem::take(&mut self.dev.tx) {
            switch.process(&self.setup.entry, &p, now_secs());
        }
    }

    /// Milliseconds until the stack wants to be polled again.
    pub fn delay_ms(&mut self) -> u64 {
        self.iface
            .poll_delay(SInstant::now(), &self.sockets)
            .map_or(200, |d| d.total_millis())
    }

    pub fn wake_fd(&self) -> i32 {
        self.setup.queue.wake_fd()
    }

    fn target(&self) -> Option<Ipv4Addr> {
        match self.setup.probe.target {
            ProbeTarget::Gateway => self.gateway,
            ProbeTarget::Icmp(IpAddr::V4(ip)) | ProbeTarget::Tcp(IpAddr::V4(ip), _) => Some(ip),
            _ => None,
        }
    }

    fn read_probe_replies(&mut self) {
        let mut answered = false;
        let sock = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        while let Ok((data, _from)) = sock.recv() {
            let Ok(pkt) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
                Icmpv4Repr::parse(&pkt, &ChecksumCapabilities::default())
                && ident == self.ident
                && self.waiting == Some(seq_no)
            {
                answered = true;
            }
        }
        if answered {
            self.waiting = None;
            self.result(true);
        }
    }

    /// A TCP probe succeeds when the connection is established.
    fn check_tcp_probe(&mut self) {
        if self.waiting.is_none() || !matches!(self.setup.probe.target, ProbeTarget::Tcp(..)) {
            return;
        }
        let sock = self.sockets.get_mut::<tcp::Socket>(self.tcp);
        if sock.state() == tcp::State::Established {
            sock.abort();
            self.waiting = None;
            self.result(true);
        }
    }

    fn result(&mut self, ok: bool) {
        let p = &self.setup;
        self.health.result(ok, p.probe.failures, &p.port);
    }

    /// Once a second: a probe every `interval` seconds; an unanswered
    /// probe, a down link or no address counts as a failure.
    pub fn tick(&mut self, now_s: u64) {
        if now_s.saturating_sub(self.last_probe) < self.setup.probe.interval as u64 {
            return;
        }
        self.last_probe = now_s;
        if self.waiting.take().is_some() {
            self.sockets.get_mut::<tcp::Socket>(self.tcp).abort();
            self.result(false);
        }
        let link = self.setup.nic.link_up.load(Relaxed);
        let Some(target) = self.target().filter(|_| link && self.address.is_some()) else {
            let p = &self.setup;
            self.health.down(p.probe.failures, &p.port);
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        if let ProbeTarget::Tcp(_, port) = self.setup.probe.target {
            let sock = self.sockets.get_mut::<tcp::Socket>(self.tcp);
            sock.abort();
            let local = 49152 + self.seq % 16384;
            if sock
                .connect(self.iface.context(), (IpAddress::Ipv4(target), port), local)
                .is_ok()
            {
                self.waiting = Some(self.seq);
            }
            return;
        }
        let repr = Icmpv4Repr::EchoRequest {
            ident: self.ident,
            seq_no: self.seq,
            data: PROBE_PAYLOAD,
        };
        let sock = self.sockets.get_mut::<icmp::Socket>(self.icmp);
        if let Ok(buf) = sock.send(repr.buffer_len(), IpAddress::Ipv4(target)) {
            let mut pkt = Icmpv4Packet::new_unchecked(buf);
            repr.emit(&mut pkt, &ChecksumCapabilities::default());
            self.waiting = Some(self.seq);
        }
    }

    /// A fresh UDP relay port for one query; None when too many wait.
    pub fn relay_port(&mut self) -> Option<u16> {
        self.relay.udp_port(&mut self.sockets)
    }

    /// A TCP connection to `server` for one query; its relay port.
    pub fn relay_tcp(&mut self, server: Ipv4Addr) -> Option<u16> {
        self.relay
            .tcp_port(&mut self.sockets, &mut self.iface, server)
    }

    /// Sends a DNS query from the uplink address and relay port `port`.
    pub fn send_dns(&mut self, query: &[u8], server: Ipv4Addr, port: u16) {
        self.relay.send(&mut self.sockets, query, server, port);
    }

    /// DNS answers that came back: the answer, its source, the relay port.
    pub fn dns_answers(&mut self) -> Vec<(Vec<u8>, Ipv4Addr, u16)> {
        self.relay.answers(&mut self.sockets)
    }

    /// Closes the socket of a query that was answered or given up.
    pub fn release_port(&mut self, port: u16) {
        self.relay.release(&mut self.sockets, port);
    }

    pub fn info(&self, active: bool) -> UplinkInfo {
        let r6 = self.setup.route6.as_ref();
        UplinkInfo {
            port: self.setup.port.clone(),
            address: self.address,
            gateway: self.gateway,
            healthy: self.health.healthy,
            active,
            link_local6: r6.map(|r| r.link_local),
            gateway6: r6.and_then(|r| r.router(now_ms())),
            sessions: None,
        }
    }

    /// Frames the router built, switched into the uplink's domain.
    fn send(&self, switch: &Switch, frames: Vec<Vec<u8>>) {
        for p in frames {
            switch.process(&self.setup.entry, &p, now_secs());
        }
    }

    /// An app's IPv6 frame, routed on to the upstream router; false when it
    /// could not be (no IPv6 routing, no router, its MAC not known yet).
    pub fn send6(&mut self, switch: &Switch, f: &[u8]) -> bool {
        let Some(r) = self.setup.route6.as_mut() else {
            return false;
        };
        match r.outbound(f, now_ms()) {
            Ok(p) => {
                self.send(switch, vec![p]);
                true
            }
            Err(solicit) => {
                self.send(switch, solicit.into_iter().collect());
                false
            }
        }
    }

    /// Frames for the NI's IPv6 subnet that reached this uplink.
    pub fn take_inbound6(&mut self) -> Vec<Vec<u8>> {
        (self.setup.route6.as_mut()).map_or_else(Vec::new, |r| std::mem::take(&mut r.inbound))
    }

    /// Once a second: a configured IPv6 router's MAC is solicited.
    pub fn tick6(&mut self, switch: &Switch) {
        let solicit = self.setup.route6.as_mut().and_then(|r| r.tick(now_ms()));
        self.send(switch, solicit.into_iter().collect());
    }
}

/// The index of the active uplink among (cost, healthy) pairs: the
/// cheapest healthy one (order breaks ties), or None when none is healthy.
pub fn choose_active(uplinks: impl Iterator<Item = (u8, bool)>) -> Option<usize> {
    uplinks
        .enumerate()
        .filter(|(_, (_, healthy))| *healthy)
        .min_by_key(|(i, (cost, _))| (*cost, *i))
        .map(|(i, _)| i)
}
