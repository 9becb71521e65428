//! ACLs of an app interface, EVE's semantics: the first rule whose fields
//! all hold decides (`ip` the remote side's network, `host` a DNS name and
//! its subdomains, `protocol`, `lport` the app's port, `fport` the remote
//! port); each rule may carry one token bucket. `host` rules match the
//! addresses the NI's DNS server answered for that name, for as long as
//! the answer's TTL (plus a grace period) runs. A verdict is taken once per
//! flow by the caller, which caches it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ipnet::IpNet;

use crate::config::{Acl as AclConfig, AclAction};

/// Seconds a `host` address stays allowed after its DNS TTL ran out.
pub const HOST_GRACE_SECS: u64 = 60;
/// Most addresses the host cache holds per NI.
const HOST_CACHE_MAX: usize = 65536;

/// A flow as seen from the app: its own address and port, the remote's.
/// ICMP echo carries its identifier as `lport`; other protocols without
/// ports have 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    pub proto: u8,
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
}

/// Hashed as few words as the key holds: two for an IPv4 flow (hashing is
/// most of a known flow's cost on the packet path), five for IPv6.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let ports =
            u64::from(self.proto) << 32 | u64::from(self.lport) << 16 | u64::from(self.rport);
        match (self.local, self.remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                h.write_u64(u64::from(l.to_bits()) << 32 | u64::from(r.to_bits()));
                h.write_u64(ports);
            }
            (l, r) => {
                h.write_u128(ip_bits(l));
                h.write_u128(ip_bits(r));
                h.write_u64(ports | 1 << 40);
            }
        }
    }
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// None: any address; a network matches flows of its own family only.
    net: Option<IpNet>,
    host: Option<String>,
    proto: Option<u8>,
    lport: Option<u16>,
    fport: Option<u16>,
    allow: bool,
    /// Tokens per second and bucket size.
    limit: Option<(f64, f64)>,
}

/// The rules of one app interface, ready to match.
#[derive(Debug, Clone)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// The first matching rule: its index, whether it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub rule: Option<usize>,
    pub allow: bool,
}

impl Acl {
    pub fn compile(list: &[AclConfig]) -> Acl {
        let rules = list
            .iter()
            .map(|a| {
                let m = &a.matches;
                Rule {
                    net: m.ip,
                    host: m.host.as_ref().map(|h| h.trim_end_matches('.').to_string()),
                    proto: m.protocol,
                    lport: m.lport,
                    fport: m.fport,
                    allow: a.action == AclAction::Allow,
                    limit: a.limit.as_ref().map(|l| {
                        let per = l.per_secs.max(1) as f64;
                        (l.rate as f64 / per, l.burst.max(1) as f64)
                    }),
                }
            })
            .collect();
        Acl { rules }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The verdict for a new flow; unmatched flows are dropped.
    /// `host(pattern, ip)` says whether DNS answered `ip` for the name.
    pub fn evaluate(&self, k: &FlowKey, host: &dyn Fn(&str, IpAddr) -> bool) -> Verdict {
        for (i, r) in self.rules.iter().enumerate() {
            let ok = r.proto.is_none_or(|p| p == k.proto)
                && r.lport.is_none_or(|p| p == k.lport)
                && r.fport.is_none_or(|p| p == k.rport)
                && r.net.is_none_or(|n| n.contains(&k.remote))
                && r.host.as_deref().is_none_or(|h| host(h, k.remote));
            if ok {
                return Verdict {
                    rule: Some(i),
                    allow: r.allow,
                };
            }
        }
        Verdict {
            rule: None,
            allow: false,
        }
    }

    /// Token buckets for the rules that have a limit (None for the others).
    pub fn buckets(&self, now: f64) -> Vec<Option<Bucket>> {
        self.rules
            .iter()
            .map(|r| {
                r.limit.map(|(rate, burst)| Bucket {
                    rate,
                    burst,
                    tokens: burst,
                    last: now,
                })
            })
            .collect()
    }
}

/// One rule's token bucket: `rate` tokens a second, at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    /// Takes a token at time `now` (seconds); false when there is none.
    pub fn take(&mut self, now: f64) -> bool {
        let dt = (now - self.last).max(0.0);
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Whether `name` is `pattern` or one of its subdomains.
pub fn name_matches(name: &str, pattern: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case(pattern)
        || (name.len() > pattern.len()
            && name.as_bytes()[name.len() - pattern.len() - 1] == b'.'
            && name[name.len() - pattern.len()..].eq_ignore_ascii_case(pattern))
}

/// The addresses the NI's DNS server answered, by address: which names and
/// until when. Shared by the router (which learns) and the app interfaces'
/// filters (which ask).
#[derive(Default)]
pub struct HostCache {
    names: Mutex<HashMap<IpAddr, Vec<(String, u64)>>>,
    /// Bumped on every new answer, so that cached drops are reconsidered.
    pub generation: AtomicU64,
}

impl HostCache {
    /// Records that `name` resolved to `ip` with `ttl` seconds at `now`.
    pub fn learn(&self, name: &str, ip: IpAddr, ttl: u32, now: u64) {
        let until = now + ttl as u64 + HOST_GRACE_SECS;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Ok(mut m) = self.names.lock() else { return };
        if m.len() >= HOST_CACHE_MAX && !m.contains_key(&ip) {
            m.retain(|_, v| {
                v.retain(|(_, t)| *t > now);
                !v.is_empty()
            });
            if m.len() >= HOST_CACHE_MAX {
                return;
            }
        }
        let v = m.entry(ip).or_default();
        match v.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = e.1.max(until),
            None => v.push((name, until)),
        }
        self.generation.fetch_add(1, Relaxed);
    }

    /// Whether DNS answered `ip` for `pattern` or a subdomain, still valid at `now`.
    pub fn allows(&self, pattern: &str, ip: IpAddr, now: u64) -> bool {
        let Ok(m) = self.names.lock() else {
            return false;
        };
        m.get(&ip).is_some_and(|v| {
            v.iter()
                .any(|(n, until)| *until > now && name_matches(n, pattern))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclMatch, Limit};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rule(m: AclMatch, allow: bool) -> AclConfig {
        AclConfig {
            matches: m,
            action: if allow {
                AclAction::Allow
            } else {
                AclAction::Drop
            },
            limit: None,
        }
    }

    fn key(proto: u8, remote: [u8; 4], rport: u16) -> FlowKey {
        FlowKey {
            proto,
            local: Ipv4Addr::new(10, 50, 0, 20).into(),
            lport: 40000,
            remote: Ipv4Addr::from(remote).into(),
            rport,
        }
    }

    #[test]
    fn first_match_wins_and_fields_are_anded() {
        let acl = Acl::compile(&[
            rule(
                AclMatch {
                    ip: Some("192.0.2.0/24".parse().unwrap()),
                    protocol: Some(6),
                    fport: Some(22),
                    ..Default::default()
                },
                false,
            ),
            rule(
                AclMatch {
                    ip: Some("192.0.2.0/24".parse().unwrap()),
                    protocol: Some(6),
                    ..Default::default()
                },
                true,
            ),
            rule(
                AclMatch {
                    ip: Some("2001:db8::/32".parse().unwrap()),
                    ..Default::default()
                },
                true,
            ),
        ]);
        let none = |_: &str, _: IpAddr| false;
        let v = acl.evaluate(&key(6, [192, 0, 2, 9], 22), &none);
        assert_eq!((v.rule, v.allow), (Some(0), false));
        let v = acl.evaluate(&key(6, [192, 0, 2, 9], 443), &none);
        assert_eq!((v.rule, v.allow), (Some(1), true));
        let v = acl.evaluate(&key(17, [192, 0, 2, 9], 53), &none);
        assert_eq!((v.rule, v.allow), (None, false), "unmatched: dropped");
        let v = acl.evaluate(&key(6, [198, 51, 100, 1], 443), &none);
        assert_eq!(v.rule, None, "an IPv6 rule matches no IPv4 flow");
        let v6 = |remote: &str| FlowKey {
            proto: 6,
            local: "fd00:50::20".parse::<Ipv6Addr>().unwrap().into(),
            lport: 40000,
            remote: remote.parse::<Ipv6Addr>().unwrap().into(),
            rport: 443,
        };
        let v = acl.evaluate(&v6("2001:db8::1"), &none);
        assert_eq!(
            (v.rule, v.allow),
            (Some(2), true),
            "an IPv6 flow in the IPv6 rule"
        );
        let v = acl.evaluate(&v6("2001:db9::1"), &none);
        assert_eq!(v.rule, None, "outside it: dropped");
    }

    #[test]
    fn host_rules_follow_dns_answers_and_their_ttl() {
        let hosts = HostCache::default();
        let acl = Acl::compile(&[rule(
            AclMatch {
                host: Some("example.com".into()),
                ..Default::default()
            },
            true,
        )]);
        let ip = Ipv4Addr::new(192, 0, 2, 80);
        let hosts = &hosts;
        let at = |now: u64| move |h: &str, a: IpAddr| hosts.allows(h, a, now);
        assert!(!acl.evaluate(&key(6, ip.octets(), 443), &at(100)).allow);
        let g0 = hosts.generation.load(Relaxed);
        hosts.learn("WWW.Example.com.", IpAddr::V4(ip), 300, 100);
        assert!(hosts.generation.load(Relaxed) > g0);
        assert!(acl.evaluate(&key(6, ip.octets(), 443), &at(101)).allow);
        assert!(
            acl.evaluate(
                &key(6, ip.octets(), 443),
                &at(100 + 300 + HOST_GRACE_SECS - 1)
            )
            .allow
        );
        assert!(
            !acl.evaluate(&key(6, ip.octets(), 443), &at(100 + 300 + HOST_GRACE_SECS))
                .allow
        );
        assert!(name_matches("a.b.example.com", "example.com"));
        assert!(!name_matches("badexample.com", "example.com"));
        assert!(!name_matches("com", "example.com"));
    }

    #[test]
    fn a_bucket_lets_rate_and_burst_through() {
        let mut r = rule(AclMatch::default(), true);
        r.limit = Some(Limit {
            rate: 10,
            burst: 5,
            per_secs: 1,
        });
        let acl = Acl::compile(&[r]);
        let mut b = acl.buckets(0.0).remove(0).unwrap();
        let passed = (0..100).filter(|_| b.take(0.0)).count();
        assert_eq!(passed, 5, "the burst");
        assert!(b.take(0.1), "one more token after 0.1 s at 10/s");
        assert!(!b.take(0.1));
    }
}
