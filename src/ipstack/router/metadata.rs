//! The metadata server on 169.254.169.254:80 (SPEC §5.1): TCP connections
//! from the NI's apps, each answered with that app's own documents. The
//! app is the one whose address (leased or fixed) the connection comes
//! from; the router has already refused frames whose source MAC does not
//! hold that address, so no app reads another's data.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use smoltcp::iface::SocketSet;
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use super::RouterCounters;
use super::streams::{Conn, Limits, Pool};
use crate::config::Mac;
use crate::services::metadata::{self, AppMeta, METADATA_IP, NiFacts, Request};

const LIMITS: Limits = Limits {
    max: 64,
    ready: 4,
    per_client: 4,
    lifetime_ms: 10_000,
    idle_ms: 5_000,
    max_input: metadata::MAX_REQUEST,
    rx_buffer: 4096,
    tx_buffer: 16384,
};

pub(super) struct MetadataServer {
    pool: Pool,
    apps: Vec<AppMeta>,
    counters: Arc<RouterCounters>,
}

impl MetadataServer {
    pub fn new(apps: Vec<AppMeta>, counters: Arc<RouterCounters>) -> Self {
        let ep = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(METADATA_IP)),
            port: 80,
        };
        MetadataServer {
            pool: Pool::new(ep, LIMITS),
            apps,
            counters,
        }
    }

    /// The NI's apps changed (a live apply).
    pub fn set_apps(&mut self, apps: Vec<AppMeta>) {
        self.apps = apps;
    }

    /// Answers every request that has arrived; `addresses` are the apps'
    /// addresses with their MACs.
    pub fn serve(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
        ni: NiFacts,
        addresses: impl Fn() -> Vec<(Ipv4Addr, Mac)>,
    ) {
        let (apps, c) = (&self.apps, &self.counters);
        self.pool.service(sockets, now_ms, &c.tcp_refused, |conn| {
            answer(conn, apps, &ni, &addresses, c)
        });
    }
}

fn answer(
    conn: &mut Conn,
    apps: &[AppMeta],
    ni: &NiFacts,
    addresses: &impl Fn() -> Vec<(Ipv4Addr, Mac)>,
    c: &RouterCounters,
) {
    let req = metadata::parse(&conn.input);
    if req == Request::Incomplete {
        return;
    }
    conn.input.clear();
    conn.finish();
    let Some(peer) = conn.peer else { return };
    // The metadata address is IPv4: so are its clients.
    let IpAddress::Ipv4(ip) = peer.addr else {
        return;
    };
    let mac = addresses()
        .into_iter()
        .find(|(a, _)| *a == ip)
        .map(|(_, m)| m);
    let app = mac.and_then(|m| apps.iter().find(|a| a.macs.contains(&m)));
    let Some(app) = app else {
        // Not an app of this NI: nothing to say to it.
        c.metadata_refused.fetch_add(1, Relaxed);
        return;
    };
    let bytes = match req {
        Request::Get { path, head } => {
            let caller = SocketAddr::new(IpAddr::V4(ip), peer.port);
            metadata::respond(app, caller, ni, &path, head)
        }
        Request::Bad(status) => metadata::error(status),
        Request::Incomplete => return,
    };
    c.metadata_answered.fetch_add(1, Relaxed);
    conn.reply(&bytes);
}
