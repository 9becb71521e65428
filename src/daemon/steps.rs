//! The steps of a plan, each a small function on the running data plane:
//! add or remove a port, a network instance, a router, an app interface, or
//! change one in place.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::nic;
use super::plan::Step;
use super::records::Recorded;
use super::runtime::{NiRt, PortRt, Runtime, VifRt};
use super::state::FailedVif;
use super::vlans;
use crate::config::{App, Config, L4Proto, Vif};
use crate::ipstack::hostlink::HostAllow;
use crate::ipstack::{MapRule, Router, RouterSetup, RouterUpdate, UplinkPlan};
use crate::ports::tap::{Tap, TapOptions};
use crate::ports::{ifctl, netns};
use crate::services::acl::{Acl, HostCache};
use crate::services::dhcp::Client;
use crate::services::metadata::AppMeta;
use crate::services::vif_filter::{FilterRules, VifFilter, VifIdent};
use crate::switch::{Domain, PortEntry, PortHook, PortRole, PortSpec};

/// How long a removed port may stay referenced (a status reply being
/// written) before its TAP is closed anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

impl Runtime {
    pub(super) fn step(&mut self, step: &Step, new: &Config) -> Result<()> {
        match step {
            Step::AddPort(p) => self.add_port(p, new),
            Step::RemovePort(p) => self.remove_port(p),
            Step::UpdatePort(p) => self.update_port(p, new),
            Step::AddNi(n) => self.add_ni(n, new),
            Step::RemoveNi(n) => self.remove_ni(n),
            Step::StartRouter(n) => self.start_router(n, new),
            Step::StopRouter(n) => self.stop_router(n),
            Step::RefreshRouter(n) => self.refresh_router(n, new),
            Step::UpdateNi(n) => self.update_ni(n, new),
            Step::AddVif(t) => self.add_vif(t, new),
            Step::RemoveVif(t) => self.remove_vif(t),
            Step::DetachVif(t) => self.detach_vif(t),
            Step::AttachVif(t) => self.attach_vif(t),
            Step::UpdateVif(t) => self.update_vif(t, new),
            Step::UpdateDataplane => {
                self.update_dataplane(new);
                Ok(())
            }
        }
    }

    fn update_dataplane(&mut self, new: &Config) {
        let d = &new.dataplane;
        self.workers.set_busy_poll_us(d.busy_poll_us);
        let cpus: Vec<usize> = d.cpus.iter().map(|&c| c as usize).collect();
        if d.worker_count() != self.workers.count() || cpus != self.workers.cpus() {
            tracing::info!(
                running = self.workers.count(),
                configured = d.worker_count(),
                ?cpus,
                "the workers and their CPUs change at the next start"
            );
        }
    }

    /// Takes ports out of the switch, ends their receive threads and waits
    /// until nothing else holds them, so their descriptors close.
    pub(super) fn release(&mut self, entries: Vec<Arc<PortEntry>>) {
        for e in &entries {
            self.switch.remove_port(e);
        }
        self.join_rx(&entries);
        self.publish();
        let deadline = Instant::now() + RELEASE_WAIT;
        while entries.iter().any(|e| Arc::strong_count(e) > 1) {
            if Instant::now() >= deadline {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                tracing::warn!(ports = ?names, "a removed port is still referenced; its interface closes later");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn add_port(&mut self, name: &str, new: &Config) -> Result<()> {
        let p = new.port(name).context("port missing from the config")?;
        let host = p.host_interface.as_ref().map(|h| Recorded {
            name: h.clone(),
            netns: None,
        });
        let reattach = host.as_ref().is_some_and(|h| self.ledger.has_tap(h));
        if let Some(h) = &host {
            self.ledger.add_tap(h.clone())?;
        }
        let prior = self.ledger.nic(&p.device).cloned();
        let ledger = &mut self.ledger;
        let mut record = |o: &nic::Original| ledger.add_nic(o.clone());
        let steering = self.workers.steering();
        let opened = match nic::open(p, reattach, prior.as_ref(), steering, &mut record) {
            Ok(o) => o,
            Err(e) => {
                if let Some(h) = host.filter(|_| !reattach) {
                    self.ledger.remove_tap(&h);
                }
                // The NIC's record stays: the next start or apply puts back
                // whatever the failed open had changed already.
                return Err(anyhow!(
                    "opening port `{}` (device {}): {e}",
                    p.name,
                    p.device
                ));
            }
        };
        let domain = self.port_domain(&p.name, new);
        let mut made = Vec::new();
        match self.attach_port(p, &opened, &domain, &mut made, new) {
            Ok((nic, host)) => {
                let rt = PortRt {
                    opened,
                    domain,
                    nic,
                    host,
                };
                self.ports.insert(name.to_string(), rt);
                Ok(())
            }
            Err(e) => {
                // Undo: a half-made port gives its NIC back.
                self.release(made);
                self.close_port(opened);
                Err(e)
            }
        }
    }

    /// A port's own domain, or the one it shares with the other ports of
    /// its switch NI.
    fn port_domain(&mut self, port: &str, new: &Config) -> Arc<Domain> {
        let group = new
            .network_instances
            .iter()
            .find(|n| n.ports.iter().any(|p| p == port));
        let domain = match group {
            Some(n) => self
                .shared
                .entry(n.name.clone())
                .or_insert_with(|| Domain::new(format!("ni:{}", n.name)))
                .clone(),
            None => Domain::new(format!("port:{port}")),
        };
        vlans::new_domain(new, &domain, Some(port), None);
        domain
    }

    /// The NIC's entry and the host TAP's on the port's domain, served.
    fn attach_port(
        &mut self,
        p: &crate::config::Port,
        opened: &nic::OpenedNic,
        domain: &Arc<Domain>,
        made: &mut Vec<Arc<PortEntry>>,
        new: &Config,
    ) -> Result<(Arc<PortEntry>, Option<Arc<PortEntry>>)> {
        let role = PortRole::Nic {
            port: p.name.clone(),
        };
        let vlan = vlans::port_access(new, &p.name, &role, &opened.nic_name);
        let spec = PortSpec::new(
            opened.nic_name.clone(),
            role,
            Box::new(opened.sock.clone()),
            opened.mtu,
        )
        .vlan(vlan)
        .link_up(ifctl::is_running(&opened.nic_name))
        // A port of a tree forwards only when its tree says so.
        .in_tree(self.shared.values().any(|d| Arc::ptr_eq(d, domain)));
        let nic = self.switch.add_port(domain, spec)?;
        made.push(nic.clone());
        self.serve(&nic)?;
        let Some(tap) = &opened.host else {
            return Ok((nic, None));
        };
        let role = PortRole::Host {
            port: p.name.clone(),
        };
        let vlan = vlans::port_access(new, &p.name, &role, tap.name());
        let spec = PortSpec::new(tap.name(), role, Box::new(tap.clone()), opened.mtu)
            .vlan(vlan)
            // The host's MAC lives behind its TAP, never on the LAN side.
            .pinned(opened.mac);
        let host = self.switch.add_port(domain, spec)?;
        made.push(host.clone());
        self.serve(&host)?;
        Ok((nic, Some(host)))
    }

    fn remove_port(&mut self, name: &str) -> Result<()> {
        let Some(p) = self.ports.remove(name) else {
            return Ok(());
        };
        let PortRt {
            opened, nic, host, ..
        } = p;
        self.release([nic].into_iter().chain(host).collect());
        self.close_port(opened);
        Ok(())
    }

    /// Gives a NIC back its name and settings and forgets what was recorded.
    fn close_port(&mut self, opened: nic::OpenedNic) {
        let cfg = opened.cfg.clone();
        let named = opened.restore();
        if let Some(h) = &cfg.host_interface {
            self.ledger.remove_tap(&Recorded {
                name: h.clone(),
                netns: None,
            });
        }
        if named {
            self.ledger.remove_nic(&cfg.device);
        }
    }

    /// Cost: the plan restarts the routers that use the port as an uplink.
    fn update_port(&mut self, name: &str, new: &Config) -> Result<()> {
        let cfg = new.port(name).context("port missing from the config")?;
        let p = self.ports.get_mut(name).context("port not running")?;
        p.opened.cfg = cfg.clone();
        Ok(())
    }

    fn add_ni(&mut self, name: &str, new: &Config) -> Result<()> {
        let ni = new
            .ni(name)
            .context("network instance missing from the config")?;
        let domain = match &ni.port {
            Some(p) => self
                .ports
                .get(p)
                .map(|p| p.domain.clone())
                .with_context(|| format!("its port `{p}` is not running"))?,
            None => {
                let d = Domain::new(format!("ni:{name}"));
                vlans::new_domain(new, &d, None, Some(ni));
                d
            }
        };
        self.nis.insert(
            name.to_string(),
            NiRt {
                cfg: ni.clone(),
                domain,
                router: None,
                hosts: Arc::new(HostCache::default()),
                stp: None,
            },
        );
        self.start_stp(name)?;
        self.attach_pods(name);
        if let Some(n) = self.nis.get(name) {
            set_flood_limits(self, n);
        }
        if ni.local.is_some() {
            self.start_router(name, new)?;
        }
        Ok(())
    }

    /// The spanning tree of a switch NI with several ports, on their NICs.
    fn start_stp(&mut self, name: &str) -> Result<()> {
        let Some(ni) = self.nis.get(name) else {
            return Ok(());
        };
        let Some(cfg) = ni.cfg.stp.clone() else {
            return Ok(());
        };
        let ports = (ni.cfg.ports.iter())
            .filter_map(|p| self.ports.get(p).map(|rt| (p, rt)))
            .map(|(p, rt)| (rt.nic.clone(), rt.opened.mac, cfg.bpdu_guard.contains(p)))
            .collect();
        let settings = crate::switch::rstp::Settings {
            priority: cfg.priority,
            ..Default::default()
        };
        let stp = crate::switch::stp::Stp::start(&ni.domain, ports, settings)?;
        if let Some(ni) = self.nis.get_mut(name) {
            ni.stp = Some(stp);
        }
        Ok(())
    }

    fn remove_ni(&mut self, name: &str) -> Result<()> {
        self.detach_pods(name);
        if let Some(ni) = self.nis.remove(name)
            && let Some(r) = ni.router
        {
            r.stop();
        }
        Ok(())
    }

    fn start_router(&mut self, name: &str, new: &Config) -> Result<()> {
        let ni_cfg = new
            .ni(name)
            .context("network instance missing from the config")?;
        let local = ni_cfg
            .local
            .clone()
            .context("not a local network instance")?;
        let ni = self.nis.get(name).context("network instance not running")?;
        let uplinks = local
            .uplinks
            .iter()
            .filter_map(|u| {
                let port = self.ports.get(u)?;
                Some(UplinkPlan {
                    port: u.clone(),
                    cost: new.port(u).map_or(0, |p| p.cost),
                    domain: port.domain.clone(),
                    nic: port.nic.clone(),
                })
            })
            .collect();
        let RouterView {
            clients,
            maps,
            apps,
            host_allow,
        } = self.router_view(new, name);
        let setup = RouterSetup {
            ni_name: name.to_string(),
            ni_uuid: ni_cfg.uuid,
            local,
            clients,
            apps,
            state_dir: self.state_dir.clone(),
            mtu: 1500,
            uplinks,
            maps,
            hosts: ni.hosts.clone(),
            host_allow,
        };
        let router = Router::start(&self.switch, &ni.domain, setup)
            .with_context(|| format!("starting the router of `{name}`"))?;
        if let Some(ni) = self.nis.get_mut(name) {
            ni.cfg = ni_cfg.clone();
            ni.router = Some(Arc::new(router));
        }
        if let Some(n) = self.nis.get(name) {
            set_flood_limits(self, n);
        }
        self.refresh_filters(name);
        Ok(())
    }

    fn stop_router(&mut self, name: &str) -> Result<()> {
        if let Some(r) = self.nis.get_mut(name).and_then(|n| n.router.take()) {
            r.stop();
        }
        Ok(())
    }

    /// The NI's flood limit and a local NI's DNS settings, in place.
    fn update_ni(&mut self, name: &str, new: &Config) -> Result<()> {
        let cfg = new
            .ni(name)
            .context("network instance missing from the config")?;
        let ni = self
            .nis
            .get_mut(name)
            .context("network instance not running")?;
        ni.cfg = cfg.clone();
        let view = self.router_view(new, name);
        let Some(n) = self.nis.get(name) else {
            return Ok(());
        };
        set_flood_limits(self, n);
        if let (Some(stp), Some(c)) = (&n.stp, &cfg.stp) {
            stp.set_guarded(|e| match &e.role {
                PortRole::Nic { port } => c.bpdu_guard.contains(port),
                _ => false,
            });
        }
        if let (Some(r), Some(l)) = (&n.router, &cfg.local) {
            r.update(view.update(Some(l.dns.clone())));
        }
        Ok(())
    }

    fn refresh_router(&mut self, name: &str, new: &Config) -> Result<()> {
        let ni = self.nis.get(name).context("network instance not running")?;
        // Without a router (its start failed) the next apply starts one.
        let Some(r) = ni.router.as_ref() else {
            return Ok(());
        };
        r.update(self.router_view(new, name).update(None));
        Ok(())
    }

    fn add_vif(&mut self, tap: &str, new: &Config) -> Result<()> {
        self.failed.remove(tap);
        let (app, vif) = find_vif(new, tap).context("interface missing from the config")?;
        let rec = Recorded {
            name: vif.tap.clone(),
            netns: vif.netns.clone(),
        };
        let reattach = self.ledger.has_tap(&rec);
        self.ledger.add_tap(rec.clone())?;
        let topts = TapOptions {
            name: vif.tap.clone(),
            mac: Some(vif.mac),
            mtu: Some(self.ni_mtu(&vif.ni)),
            persist: true,
            exclusive: !reattach,
            queues: self.workers.count(),
            txqueuelen: Some(self.workers.tap_txqueuelen()),
        };
        let tap_dev = match netns::run_in(vif.netns.as_deref(), || Tap::open(&topts)) {
            Ok(t) => {
                self.steer(&t);
                Arc::new(t)
            }
            Err(e) => {
                if !reattach {
                    self.ledger.remove_tap(&rec);
                }
                // One app's problem (say, its namespace is missing) must
                // not take the ports and the other apps down.
                let where_ = vif
                    .netns
                    .as_ref()
                    .map(|n| format!(" in namespace `{n}`"))
                    .unwrap_or_default();
                let error = format!("creating TAP `{}`{where_}: {e}", vif.tap);
                tracing::error!(app = %app.name, "{error}; this interface stays down");
                let failed = FailedVif {
                    app: app.name.clone(),
                    app_uuid: app.uuid,
                    cfg: vif.clone(),
                    error,
                };
                self.failed.insert(tap.to_string(), failed);
                return Ok(());
            }
        };
        self.vifs.insert(
            tap.to_string(),
            VifRt {
                app: app.name.clone(),
                app_uuid: app.uuid,
                cfg: vif.clone(),
                tap: tap_dev,
                entry: None,
                filter: None,
            },
        );
        self.attach_vif(tap)?;
        self.update_filter(tap);
        Ok(())
    }

    /// The MTU of NI `ni`'s interfaces: its port's, else 1500.
    pub(super) fn ni_mtu(&self, ni: &str) -> u32 {
        self.nis
            .get(ni)
            .and_then(|n| n.cfg.port.as_ref())
            .and_then(|p| self.ports.get(p))
            .map_or(1500, |p| p.nic.mtu.load(Relaxed))
    }

    fn remove_vif(&mut self, tap: &str) -> Result<()> {
        if self.failed.remove(tap).is_some() {
            return Ok(());
        }
        self.detach_vif(tap)?;
        let Some(v) = self.vifs.remove(tap) else {
            return Ok(());
        };
        if let Some(f) = v.filter {
            self.retire(f);
        }
        if let Err(e) = v.tap.unpersist() {
            tracing::warn!(tap, error = %e, "could not delete the TAP");
        }
        self.ledger.remove_tap(&Recorded {
            name: v.cfg.tap.clone(),
            netns: v.cfg.netns.clone(),
        });
        Ok(())
    }

    fn detach_vif(&mut self, tap: &str) -> Result<()> {
        let entry = self.vifs.get_mut(tap).and_then(|v| v.entry.take());
        if let Some(e) = entry {
            self.release(vec![e]);
        }
        Ok(())
    }

    /// Attaches a VIF's TAP to its NI's domain and starts serving it.
    fn attach_vif(&mut self, tap: &str) -> Result<()> {
        let v = self.vifs.get(tap).context("interface not running")?;
        let ni = self
            .nis
            .get(&v.cfg.ni)
            .context("its network instance is not running")?;
        let spec = PortSpec::new(
            tap,
            PortRole::Vif {
                app: v.app.clone(),
                ni: v.cfg.ni.clone(),
                ifnum: v.cfg.ifnum,
            },
            Box::new(v.tap.clone()),
            self.ni_mtu(&v.cfg.ni),
        )
        .own_mac(v.cfg.mac)
        .vlan(v.cfg.vlan.unwrap_or(0));
        let entry = self.switch.add_port(&ni.domain, spec)?;
        if let Some(f) = &v.filter {
            entry.set_hook(Some(Box::new(f.clone()) as Box<dyn PortHook>));
        }
        guard_port(&entry, ni, v.cfg.ip, v.cfg.port_security);
        entry.guard.set_extra(v.cfg.allowed_ips.clone());
        if let Err(e) = self.serve(&entry) {
            self.switch.remove_port(&entry);
            return Err(e.into());
        }
        if let Some(v) = self.vifs.get_mut(tap) {
            v.entry = Some(entry);
        }
        Ok(())
    }

    /// ACLs, port maps, fixed IP and app name, in place.
    fn update_vif(&mut self, tap: &str, new: &Config) -> Result<()> {
        let (app, vif) = find_vif(new, tap).context("interface missing from the config")?;
        let local = self.nis.get(&vif.ni).is_some_and(|n| n.cfg.local.is_some());
        let v = self.vifs.get_mut(tap).context("interface not running")?;
        v.app = app.name.clone();
        v.app_uuid = app.uuid;
        v.cfg = vif.clone();
        if let Some(e) = &v.entry {
            e.guard.set_extra(vif.allowed_ips.clone());
            e.guard.enable(vif.port_security, local);
        }
        self.update_filter(tap);
        Ok(())
    }

    /// Gives a VIF the filter its config asks for: new rules in place,
    /// a new filter, or none.
    fn update_filter(&mut self, tap: &str) {
        let Some(v) = self.vifs.get(tap) else { return };
        let ni = self.nis.get(&v.cfg.ni);
        let rules = filter_rules(v, ni);
        let hosts = ni.map(|n| n.hosts.clone());
        let old = v.filter.clone();
        let filter = match (rules, old) {
            (Some(r), Some(f)) => {
                f.set_rules(r);
                return;
            }
            (None, None) => return,
            (Some(r), None) => Some(Arc::new(VifFilter::new(r, hosts))),
            (None, Some(f)) => {
                self.retire(f);
                None
            }
        };
        let Some(v) = self.vifs.get_mut(tap) else {
            return;
        };
        if let Some(e) = &v.entry {
            e.set_hook(filter.clone().map(|f| Box::new(f) as Box<dyn PortHook>));
        }
        v.filter = filter;
    }

    /// A router came (back): the gateway its VIFs' filters let DNS through to.
    fn refresh_filters(&mut self, ni: &str) {
        let taps: Vec<String> = self
            .vifs
            .iter()
            .filter(|(_, v)| v.cfg.ni == ni)
            .map(|(t, _)| t.clone())
            .collect();
        for t in taps {
            self.update_filter(&t);
        }
    }

    fn retire(&self, f: Arc<VifFilter>) {
        if let Ok(mut r) = self.retired.lock() {
            r.push(f);
        }
    }
}

/// Port security and storm control of an app (or pod) interface on `ni`:
/// on a local NI only its fixed or leased address, else learned.
pub(super) fn guard_port(
    entry: &PortEntry,
    ni: &NiRt,
    fixed: Option<std::net::Ipv4Addr>,
    on: bool,
) {
    entry.floods.set_limit(ni.cfg.flood_limit);
    entry.guard.enable(on, ni.cfg.local.is_some());
    if ni.cfg.local.is_none() {
        return;
    }
    let leased = ni.router.as_ref().map(|r| r.leases()).unwrap_or_default();
    let mine = leased
        .iter()
        .filter(|l| Some(l.mac) == entry.own_mac)
        .map(|l| l.ip);
    entry
        .guard
        .set(&fixed.into_iter().chain(mine).collect::<Vec<_>>());
}

/// The flood limit of a switch NI's port (its NIC and host TAP) and of
/// every interface on the NI, and whether the NI forwards LLDP.
fn set_flood_limits(rt: &Runtime, ni: &NiRt) {
    (ni.domain.forward_lldp).store(ni.cfg.forward_lldp, Relaxed);
    let port = ni.cfg.port.as_ref().and_then(|p| rt.ports.get(p));
    let ports = port
        .into_iter()
        .flat_map(|p| [Some(&p.nic), p.host.as_ref()])
        .flatten();
    let vifs = rt
        .vifs
        .values()
        .filter(|v| v.cfg.ni == ni.cfg.name)
        .filter_map(|v| v.entry.as_ref());
    let pods = rt
        .pods
        .values()
        .filter(|p| p.rec.ni == ni.cfg.name)
        .filter_map(|p| p.entry.as_ref());
    for e in ports.chain(vifs).chain(pods) {
        e.floods.set_limit(ni.cfg.flood_limit);
    }
}

fn find_vif<'a>(cfg: &'a Config, tap: &str) -> Option<(&'a App, &'a Vif)> {
    cfg.apps
        .iter()
        .find_map(|a| Some((a, a.interfaces.iter().find(|v| v.tap == tap)?)))
}

/// What a router is told of its NI's apps.
struct RouterView {
    clients: Vec<Client>,
    maps: Vec<MapRule>,
    apps: Vec<AppMeta>,
    host_allow: Vec<HostAllow>,
}

impl RouterView {
    fn update(self, dns: Option<crate::config::Dns>) -> RouterUpdate {
        RouterUpdate {
            clients: self.clients,
            maps: self.maps,
            apps: self.apps,
            dns,
            host_allow: self.host_allow,
        }
    }
}

impl Runtime {
    /// The clients (DHCP, DNS names, metadata) and port maps of NI `ni`:
    /// the app interfaces of `cfg` and the recorded pods on it (with their
    /// addresses fixed; recorded ones count before they are attached again,
    /// so DHCP never hands out a pod's address).
    fn router_view(&self, cfg: &Config, ni: &str) -> RouterView {
        let mut view = config_view(cfg, ni);
        for p in self.ledger.pods().iter().filter(|p| p.ni == ni) {
            view.clients.push(Client {
                mac: p.mac,
                app: p.name.clone(),
                fixed: p.ip,
            });
            view.apps.push(AppMeta {
                name: p.name.clone(),
                uuid: None,
                user_data: None,
                macs: vec![p.mac],
            });
        }
        view
    }
}

/// The clients, port maps and metadata of NI `ni` in `cfg`.
fn config_view(cfg: &Config, ni: &str) -> RouterView {
    let vifs = || {
        cfg.apps.iter().flat_map(|a| {
            a.interfaces
                .iter()
                .filter(|v| v.ni == ni)
                .map(move |v| (a, v))
        })
    };
    let clients = vifs()
        .map(|(a, v)| Client {
            mac: v.mac,
            app: a.name.clone(),
            fixed: v.ip,
        })
        .collect();
    let maps = vifs()
        .flat_map(|(_, v)| {
            v.port_maps.iter().map(|m| MapRule {
                proto: m.protocol,
                uplink_port: m.uplink_port,
                app_mac: v.mac,
                app_port: m.app_port,
                listen: m.listen,
            })
        })
        .collect();
    let apps = (cfg.apps.iter())
        .map(|a| AppMeta {
            name: a.name.clone(),
            uuid: Some(a.uuid),
            user_data: a.user_data.clone(),
            macs: (a.interfaces.iter())
                .filter(|v| v.ni == ni)
                .map(|v| v.mac)
                .collect(),
        })
        .filter(|a| !a.macs.is_empty())
        .collect();
    let host_allow = vifs().flat_map(|(_, v)| host_allows(v)).collect();
    RouterView {
        clients,
        maps,
        apps,
        host_allow,
    }
}

/// The allow rules of an app interface that name an IPv4 network: those
/// inside the host's own addresses let the app reach the host over the
/// `host` uplink.
fn host_allows(v: &crate::config::Vif) -> Vec<HostAllow> {
    let rules = v.acls.iter().flatten();
    rules
        .filter(|r| r.action == crate::config::AclAction::Allow)
        .filter_map(|r| match r.matches.ip {
            Some(ipnet::IpNet::V4(net)) => Some(HostAllow {
                app_mac: v.mac,
                net,
                protocol: r.matches.protocol,
                lport: r.matches.lport,
                fport: r.matches.fport,
            }),
            _ => None,
        })
        .collect()
}

/// The rules of an app interface that has `acls`.
/// A VIF's filter: its ACLs, or on a local NI without ACLs one that only
/// records flows (unless the NI says `flow_log: false`).
fn filter_rules(v: &VifRt, ni: Option<&NiRt>) -> Option<FilterRules> {
    let local = ni.and_then(|n| n.cfg.local.as_ref());
    let (acl, enforce) = match (&v.cfg.acls, local) {
        (Some(list), _) => (Acl::compile(list), true),
        (None, Some(l)) if l.flow_log => (Acl::compile(&[]), false),
        (None, _) => return None,
    };
    let ident = VifIdent {
        app: v.app.clone(),
        app_uuid: v.app_uuid.to_string(),
        ni: v.cfg.ni.clone(),
        vif: v.cfg.tap.clone(),
    };
    let mapped = v
        .cfg
        .port_maps
        .iter()
        .map(|m| match m.protocol {
            L4Proto::Tcp => (6, m.app_port),
            L4Proto::Udp => (17, m.app_port),
        })
        .collect();
    Some(FilterRules {
        ident,
        acl,
        enforce,
        gateway: local.map(|l| l.gateway),
        router6: ni.map(router6).unwrap_or_default(),
        mapped,
    })
}

/// The IPv6 addresses of a local NI's router: link-local and `subnet6`'s
/// first (none without `subnet6`).
pub(super) fn router6(ni: &NiRt) -> Vec<std::net::Ipv6Addr> {
    let Some(g) = ni.cfg.local.as_ref().and_then(|l| l.gateway6()) else {
        return Vec::new();
    };
    let mac = crate::ipstack::router_mac(&ni.cfg.uuid);
    vec![crate::services::ipv6::link_local(mac), g]
}
