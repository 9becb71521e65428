//! A fixed-size, lock-free MAC table. Each slot packs the MAC and the port in
//! one atomic word and keeps "last seen" in another: a lookup is a few atomic
//! loads, refreshing an entry is one store of the time (as the Linux bridge
//! does). Learning never evicts a live entry: when the probe window is full
//! of live entries, or a port already holds its share, the new MAC is not
//! learned (and is flooded), so a flood of random source MACs neither grows
//! memory nor pushes out stations in active use.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::config::Mac;

/// How many consecutive slots a MAC may live in.
const PROBE: usize = 8;
/// "Last seen" of a pinned entry: it never ages and never moves.
const PINNED: u32 = u32::MAX;

pub type PortId = u16;

struct Slot {
    /// `mac << 16 | (port + 1)`; 0 is an empty slot.
    key: AtomicU64,
    /// Seconds (of the caller's clock) when the MAC was last seen.
    seen: AtomicU32,
}

/// What `learn` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Learn {
    /// Already known on this port; refreshed.
    Refreshed,
    /// Newly learned, or moved from another port.
    Learned,
    /// The port already has its quota of MACs.
    PortFull,
    /// The MAC is pinned to another port (a VIF's or the host's own).
    Pinned,
    /// No free slot in the MAC's probe window.
    TableFull,
}

pub struct MacTable {
    slots: Box<[Slot]>,
    mask: usize,
    /// Per-table random key: slot positions cannot be predicted from outside.
    seed: u64,
    aging: u32,
    /// Live entries per port (index = port id); bounded by each port's quota.
    per_port: Box<[AtomicU32]>,
}

fn pack(mac: Mac, port: PortId) -> u64 {
    (mac.to_u64() << 16) | (port as u64 + 1)
}

fn unpack_port(key: u64) -> PortId {
    ((key & 0xffff) as PortId).wrapping_sub(1)
}

fn key_mac(key: u64) -> u64 {
    key >> 16
}

impl MacTable {
    /// `capacity` is rounded up to a power of two; `max_ports` bounds port ids.
    pub fn new(capacity: usize, aging_secs: u32, max_ports: usize) -> Self {
        let cap = capacity.next_power_of_two().max(PROBE);
        MacTable {
            slots: (0..cap)
                .map(|_| Slot {
                    key: AtomicU64::new(0),
                    seen: AtomicU32::new(0),
                })
                .collect(),
            mask: cap - 1,
            seed: {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(0x6e69_7377u64)
            },
            aging: aging_secs,
            per_port: (0..max_ports).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, mac: u64) -> usize {
        ((mac ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & self.mask
    }

    fn live(&self, seen: u32, now: u32) -> bool {
        seen == PINNED || now.wrapping_sub(seen) <= self.aging
    }

    /// The port a MAC was learned on, if it is known and not aged out.
    #[inline]
    pub fn lookup(&self, mac: Mac, now: u32) -> Option<PortId> {
        let m = mac.to_u64();
        let h = self.home(m);
        for i in 0..PROBE {
            let s = &self.slots[(h + i) & self.mask];
            let k = s.key.load(Relaxed);
            if k != 0 && key_mac(k) == m {
                return self.live(s.seen.load(Relaxed), now).then(|| unpack_port(k));
            }
        }
        None
    }

    fn port_count(&self, port: PortId) -> Option<&AtomicU32> {
        self.per_port.get(port as usize)
    }

    /// Learns (or refreshes) `mac` on `port`, which may hold at most `quota` MACs.
    #[inline]
    pub fn learn(&self, mac: Mac, port: PortId, quota: u32, now: u32) -> Learn {
        // A free slot taken by another thread's MAC at the same moment is
        // looked for again (a few times: each loss means a slot filled).
        for _ in 0..PROBE {
            if let Some(l) = self.try_learn(mac, port, quota, now) {
                return l;
            }
        }
        Learn::TableFull
    }

    /// One attempt at `learn`; None when another thread took the free slot.
    fn try_learn(&self, mac: Mac, port: PortId, quota: u32, now: u32) -> Option<Learn> {
        let m = mac.to_u64();
        let h = self.home(m);
        let new = pack(mac, port);
        let mut free: Option<(usize, u64)> = None;
        for i in 0..PROBE {
            let idx = (h + i) & self.mask;
            let s = &self.slots[idx];
            let k = s.key.load(Relaxed);
            if k != 0 && key_mac(k) == m {
                let seen = s.seen.load(Relaxed);
                if seen == PINNED {
                    return Some(if k == new {
                        Learn::Refreshed
                    } else {
                        Learn::Pinned
                    });
                }
                if k == new {
                    if seen != now {
                        s.seen.store(now, Relaxed);
                    }
                    return Some(Learn::Refreshed);
                }
                // The station moved to another port.
                if !self.reserve(port, quota) {
                    return Some(Learn::PortFull);
                }
                if s.key.compare_exchange(k, new, Relaxed, Relaxed).is_ok() {
                    s.seen.store(now, Relaxed);
                    self.release(unpack_port(k));
                } else {
                    self.release(port);
                }
                return Some(Learn::Learned);
            }
            if free.is_none() && (k == 0 || !self.live(s.seen.load(Relaxed), now)) {
                free = Some((idx, k));
            }
        }
        let Some((idx, old)) = free else {
            return Some(Learn::TableFull);
        };
        if !self.reserve(port, quota) {
            return Some(Learn::PortFull);
        }
        let s = &self.slots[idx];
        // Stamp the time first so a concurrent reader never sees the new key
        // with a stale time.
        s.seen.store(now, Relaxed);
        if s.key.compare_exchange(old, new, Relaxed, Relaxed).is_ok() {
            if old != 0 {
                self.release(unpack_port(old));
            }
            Some(Learn::Learned)
        } else {
            self.release(port);
            None
        }
    }

    fn reserve(&self, port: PortId, quota: u32) -> bool {
        let Some(c) = self.port_count(port) else {
            return false;
        };
        c.fetch_update(Relaxed, Relaxed, |n| (n < quota).then_some(n + 1))
            .is_ok()
    }

    fn release(&self, port: PortId) {
        if let Some(c) = self.port_count(port) {
            let _ = c.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Installs `mac` on `port` for good (a port's own MAC, known from the
    /// config): lookups find it from the start, frames from other ports
    /// cannot move it, it never ages. Pinned entries do not count against
    /// the port's quota. Returns false when its probe window holds only
    /// other pinned MACs.
    pub fn pin(&self, mac: Mac, port: PortId) -> bool {
        let m = mac.to_u64();
        let h = self.home(m);
        let new = pack(mac, port);
        let mut free = None;
        for i in 0..PROBE {
            let s = &self.slots[(h + i) & self.mask];
            let k = s.key.load(Relaxed);
            let seen = s.seen.load(Relaxed);
            if k != 0 && key_mac(k) == m {
                free = Some((s, k, seen));
                break;
            }
            if free.is_none() && seen != PINNED {
                free = Some((s, k, seen));
            }
        }
        let Some((s, old, seen)) = free else {
            return false;
        };
        s.seen.store(PINNED, Relaxed);
        s.key.store(new, Relaxed);
        if old != 0 && seen != PINNED {
            self.release(unpack_port(old));
        }
        true
    }

    /// Clears aged-out entries (and every entry of `gone`, a removed port) so
    /// their ports' quotas are freed. Run periodically off the fast path.
    pub fn sweep(&self, now: u32, gone: Option<PortId>) {
        for s in self.slots.iter() {
            let k = s.key.load(Relaxed);
            if k == 0 {
                continue;
            }
            let seen = s.seen.load(Relaxed);
            let dead = !self.live(seen, now) || Some(unpack_port(k)) == gone;
            if dead && s.key.compare_exchange(k, 0, Relaxed, Relaxed).is_ok() {
                if seen == PINNED {
                    s.seen.store(0, Relaxed);
                } else {
                    self.release(unpack_port(k));
                }
            }
        }
    }

    /// Live entries: (mac, port, age in seconds).
    pub fn entries(&self, now: u32) -> Vec<(Mac, PortId, u32)> {
        let mut v = Vec::new();
        for s in self.slots.iter() {
            let k = s.key.load(Relaxed);
            let seen = s.seen.load(Relaxed);
            if k != 0 && self.live(seen, now) {
                let b = (k >> 16).to_be_bytes();
                v.push((
                    Mac([b[2], b[3], b[4], b[5], b[6], b[7]]),
                    unpack_port(k),
                    if seen == PINNED {
                        0
                    } else {
                        now.wrapping_sub(seen)
                    },
                ));
            }
        }
        v
    }

    /// Live MACs held by a port.
    pub fn port_entries(&self, port: PortId) -> u32 {
        self.port_count(port).map_or(0, |c| c.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u64) -> Mac {
        let b = (n | 0x0200_0000_0000).to_be_bytes();
        Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    #[test]
    fn learn_lookup_move_age() {
        let t = MacTable::new(1024, 300, 16);
        assert_eq!(t.lookup(mac(1), 0), None);
        assert_eq!(t.learn(mac(1), 3, 10, 0), Learn::Learned);
        assert_eq!(t.learn(mac(1), 3, 10, 5), Learn::Refreshed);
        assert_eq!(t.lookup(mac(1), 5), Some(3));
        assert_eq!(t.learn(mac(1), 4, 10, 6), Learn::Learned);
        assert_eq!(t.lookup(mac(1), 6), Some(4));
        assert_eq!(t.port_entries(3), 0);
        assert_eq!(t.port_entries(4), 1);
        assert_eq!(t.lookup(mac(1), 6 + 301), None, "aged out");
        t.sweep(6 + 301, None);
        assert_eq!(t.port_entries(4), 0);
        assert!(t.entries(400).is_empty());
    }

    #[test]
    fn pinned_entries_never_move_or_age() {
        let t = MacTable::new(1024, 300, 8);
        assert!(t.pin(mac(5), 2));
        assert_eq!(t.lookup(mac(5), 0), Some(2), "known before any frame");
        assert_eq!(
            t.learn(mac(5), 3, 10, 1),
            Learn::Pinned,
            "a frame from elsewhere cannot move it"
        );
        assert_eq!(t.lookup(mac(5), 1_000_000), Some(2), "never ages");
        assert_eq!(t.learn(mac(5), 2, 10, 1), Learn::Refreshed);
        assert_eq!(t.port_entries(2), 0, "pins do not use the quota");
        t.sweep(1_000_000, None);
        assert_eq!(t.lookup(mac(5), 1_000_000), Some(2));
        t.sweep(1_000_000, Some(2));
        assert_eq!(t.lookup(mac(5), 1_000_000), None, "removed with its port");
    }

    #[test]
    fn port_zero_and_removal() {
        let t = MacTable::new(64, 300, 4);
        t.learn(mac(7), 0, 10, 1);
        assert_eq!(t.lookup(mac(7), 1), Some(0));
        t.sweep(1, Some(0));
        assert_eq!(t.lookup(mac(7), 1), None);
    }

    #[test]
    fn random_flood_is_bounded_and_keeps_active_entries() {
        let t = MacTable::new(4096, 300, 4);
        // Active stations on port 0.
        for i in 0..100 {
            assert_eq!(t.learn(mac(i), 0, 1000, 0), Learn::Learned);
        }
        // A flood of random MACs on port 1, quota 256.
        let mut learned = 0;
        for i in 0..100_000u64 {
            if t.learn(mac(1_000_000 + i * 7919), 1, 256, 1) == Learn::Learned {
                learned += 1;
            }
        }
        assert_eq!(learned, 256);
        assert_eq!(t.port_entries(1), 256);
        for i in 0..100 {
            assert_eq!(t.lookup(mac(i), 2), Some(0), "active entry {i} survived");
        }
        // With no quota, the table fills but never evicts live entries.
        for i in 0..100_000u64 {
            t.learn(mac(5_000_000 + i), 2, u32::MAX, 2);
        }
        for i in 0..100 {
            assert_eq!(t.lookup(mac(i), 3), Some(0));
        }
        assert!(t.entries(3).len() <= t.capacity());
    }

    #[test]
    fn concurrent_learning_is_consistent() {
        let t = std::sync::Arc::new(MacTable::new(8192, 300, 8));
        let hs: Vec<_> = (0..4u16)
            .map(|p| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        t.learn(mac(i + p as u64 * 10_000), p, 5000, 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for p in 0..4u16 {
            assert_eq!(t.lookup(mac(5 + p as u64 * 10_000), 0), Some(p));
        }
    }
}
