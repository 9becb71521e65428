//! The `host` uplink's port maps: a listening socket on the host for each
//! map (on `listen`, or every address, at the map's uplink port). A live
//! apply keeps the listeners of unchanged maps, opens new ones and closes
//! those of removed maps.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use super::sock::Sock;
use crate::config::L4Proto;
use crate::ipstack::MapRule;
use crate::ports::epoll::{self, Epoll};

/// Tokens of listeners in the epoll set, above those of flows.
pub const MAP_TOKENS: u64 = 1 << 62;

pub struct Listener {
    pub rule: MapRule,
    pub sock: Arc<Sock>,
    /// Waiting taken off the epoll set (out of descriptors) until the next
    /// second.
    paused: bool,
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
    /// logged and left out. Returns the sockets of removed maps (their UDP
    /// flows end with them).
    pub fn set(&mut self, maps: &[MapRule], epoll: &Epoll) -> Vec<Arc<Sock>> {
        let mut gone = Vec::new();
        self.by_token.retain(|_, l| {
            let keep = maps.contains(&l.rule);
            if !keep {
                epoll.delete(l.sock.fd());
                gone.push(l.sock.clone());
            }
            keep
        });
        for rule in maps {
            if self.by_token.values().any(|l| l.rule == *rule) {
                continue;
            }
            let token = MAP_TOKENS + self.next;
            self.next += 1;
            let opened = open(rule).and_then(|s| {
                epoll.add(s.fd(), token, epoll::IN)?;
                Ok(s)
            });
            match opened {
                Ok(s) => {
                    let l = Listener {
                        rule: rule.clone(),
                        sock: Arc::new(s),
                        paused: false,
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
        gone
    }

    pub fn get(&self, token: u64) -> Option<&Listener> {
        self.by_token.get(&token)
    }

    /// Stops waiting on a listener whose connections cannot be taken now
    /// (no descriptor left): level-triggered, it would wake at once again.
    pub fn pause(&mut self, token: u64, epoll: &Epoll) {
        if let Some(l) = self.by_token.get_mut(&token) {
            l.paused = epoll.modify(l.sock.fd(), token, 0).is_ok();
        }
    }

    /// Waits on paused listeners again.
    pub fn resume(&mut self, epoll: &Epoll) {
        for (token, l) in self.by_token.iter_mut().filter(|(_, l)| l.paused) {
            l.paused = epoll.modify(l.sock.fd(), *token, epoll::IN).is_err();
        }
    }

    /// Closes every listener.
    pub fn clear(&mut self, epoll: &Epoll) {
        self.set(&[], epoll);
    }
}
