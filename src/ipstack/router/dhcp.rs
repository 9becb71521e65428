//! The router's DHCP server: the lease table checked against the NI's
//! clients, kept on disk (new bindings at once, renewals in batches), and
//! published for status, DNS names and the NAT's list of app addresses.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::Mac;
use crate::services::dhcp::{self, Client, Dest, Ignored, Lease, Leases, Pool};

/// Renewals wait this long before they are written.
const SAVE_BATCH_SECS: u64 = 30;

pub(super) struct DhcpServer {
    pub pool: Pool,
    clients: Vec<Client>,
    leases: Leases,
    file: PathBuf,
    /// The bound leases as last written, for status.
    shared: Arc<Mutex<Vec<Lease>>>,
    /// Leases renewed since they were last saved.
    dirty: bool,
    saved_at: u64,
    /// Bumped whenever the apps' addresses or names may have changed.
    pub generation: u64,
}

/// What became of one DHCP message.
pub(super) enum Outcome {
    Reply { to: Dest, bytes: Vec<u8> },
    Ignored(Ignored),
    Malformed,
}

impl DhcpServer {
    pub fn new(
        pool: Pool,
        clients: Vec<Client>,
        file: PathBuf,
        shared: Arc<Mutex<Vec<Lease>>>,
        now: u64,
    ) -> Self {
        let mut leases = Leases::from_list(load(&file), now);
        leases.retain_valid(&pool, &clients);
        let mut s = DhcpServer {
            pool,
            clients,
            leases,
            file,
            shared,
            dirty: false,
            saved_at: 0,
            generation: 0,
        };
        s.persist(now);
        s
    }

    /// A new list of clients (a live apply added, removed or changed app
    /// interfaces): leases of clients that are gone, or that now have a
    /// fixed address, end.
    pub fn set_clients(&mut self, clients: Vec<Client>, now: u64) {
        self.clients = clients;
        self.leases.retain_valid(&self.pool, &self.clients);
        self.persist(now);
    }

    pub fn handle(&mut self, src: Mac, payload: &[u8], now: u64) -> Outcome {
        let Some(msg) = dhcp::decode(payload) else {
            return Outcome::Malformed;
        };
        let before = self.leases.bindings();
        let out = match self
            .leases
            .handle(&self.pool, &self.clients, src, &msg, now)
        {
            Ok(reply) => Outcome::Reply {
                to: reply.dest,
                bytes: dhcp::encode(&reply.msg),
            },
            Err(Ignored::Malformed) => Outcome::Malformed,
            Err(why) => Outcome::Ignored(why),
        };
        // A new or moved binding is saved at once; renewals (new expiry
        // only) are saved in batches by `tick`.
        if self.leases.bindings() != before {
            self.persist(now);
        } else {
            self.dirty = true;
        }
        out
    }

    /// Once a second: ends expired leases, saves batched renewals.
    pub fn tick(&mut self, now: u64) {
        if self.leases.expire(now)
            || (self.dirty && now.saturating_sub(self.saved_at) >= SAVE_BATCH_SECS)
        {
            self.persist(now);
        }
    }

    /// Every app address: fixed ones and bound leases, with their MACs.
    pub fn addresses(&self) -> Vec<(Ipv4Addr, Mac)> {
        let fixed = self.clients.iter().filter_map(|c| Some((c.fixed?, c.mac)));
        let leased = self.leases.list().into_iter().map(|l| (l.ip, l.mac));
        fixed.chain(leased).collect()
    }

    /// Whether the MAC (as bytes) is one of the NI's app interfaces.
    pub fn has_client(&self, mac: &[u8]) -> bool {
        self.clients.iter().any(|c| c.mac.0 == mac)
    }

    /// The app name of an interface of the NI.
    pub fn client_name(&self, mac: Mac) -> Option<&str> {
        self.clients
            .iter()
            .find(|c| c.mac == mac)
            .map(|c| c.app.as_str())
    }

    /// Each app's name with its address (fixed, else leased).
    pub fn names(&self) -> Vec<(String, Ipv4Addr)> {
        let bound = self.leases.bindings();
        self.clients
            .iter()
            .filter_map(|c| {
                let ip = c
                    .fixed
                    .or_else(|| bound.iter().find(|(m, _)| *m == c.mac).map(|(_, ip)| *ip))?;
                Some((c.app.to_ascii_lowercase(), ip))
            })
            .collect()
    }

    fn persist(&mut self, now: u64) {
        let list = self.leases.list();
        self.generation += 1;
        self.dirty = false;
        self.saved_at = now;
        save(&self.file, &list);
        if let Ok(mut s) = self.shared.lock() {
            *s = list;
        }
    }
}

fn load(path: &Path) -> Vec<Lease> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable lease file");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

fn save(path: &Path, leases: &[Lease]) {
    let Ok(text) = serde_json::to_string_pretty(leases) else {
        return;
    };
    if let Err(e) = crate::durable::write(path, text.as_bytes()) {
        tracing::warn!(file = %path.display(), error = %e, "could not save leases");
    }
}
