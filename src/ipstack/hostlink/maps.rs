//! The `host` uplink's port maps: a listening socket on the host for each
//! map (on `listen`, or every address, at the map's uplink port). A live
//! apply keeps the listeners of unchanged maps, opens new ones and closes
//! those of removed maps.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use super::sock::{self, Epoll, Sock};
use crate::config::L4Proto;
use crate::ipstack::MapRule;

/// Tokens of listeners in the epoll set, above those of flows.
pub const MAP_TOKENS: u64 = 1 << 62;

pub struct Listener {
    pub rule: MapRule,
    pub sock: Arc<Sock>,
}

#[derive(Default)]
pub struct Listeners {
    by_token: HashMap<u64, Listener>,
    next: u64,
}

fn open(rule: &MapRule) -> io::Result<Sock> {
    let at = SocketAddrV4::new(
        rule.listen.unwrap_or(Ipv4Addr::UNSPECIFIED),
        rule.uplink_port,
    );
    match rule.proto {
        L4Proto::Tcp => Sock::tcp_listen(at),
        L4Proto::Udp => Sock::udp_bound(at),
    }
}

impl Listeners {
    /// Listeners for exactly `maps`; a map whose port cannot be had is
    /// logged and left out.
    pub fn set(&mut self, maps: &[MapRule], epoll: &Epoll) {
        self.by_token.retain(|_, l| maps.contains(&l.rule));
        for rule in maps {
            if self.by_token.values().any(|l| l.rule == *rule) {
                continue;
            }
            let token = MAP_TOKENS + self.next;
            self.next += 1;
            let opened = open(rule).and_then(|s| {
                epoll.add(s.fd(), token, sock::IN)?;
                Ok(s)
            });
            match opened {
                Ok(s) => {
                    let l = Listener {
                        rule: rule.clone(),
                        sock: Arc::new(s),
                    };
                    self.by_token.insert(token, l);
                }
                Err(e) => tracing::warn!(
                    port = rule.uplink_port,
                    error = %e,
                    "host uplink: cannot listen for a port map"
                ),
            }
        }
    }

    pub fn get(&self, token: u64) -> Option<&Listener> {
        self.by_token.get(&token)
    }
}
