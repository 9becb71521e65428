//! The filter on a switch NI (no router): rules on the VIF's IP traffic,
//! replies with their flow, unsolicited inbound refused, ARP always.

use super::*;
use crate::config::{Acl as AclConfig, AclAction, AclMatch, Mac};
use crate::frame::VNET_HDR_LEN;
use crate::ports::memory::{MemoryPort, Shared};
use crate::switch::{Domain, PortEntry, PortRole, PortSpec, Switch};

fn rules(acl: Acl) -> FilterRules {
    FilterRules {
        ident: VifIdent {
            app: "web".into(),
            app_uuid: "u".into(),
            ni: "flat".into(),
            vif: "nbu1x1".into(),
        },
        acl,
        enforce: true,
        gateway: None,
        router6: Vec::new(),
        mapped: Vec::new(),
    }
}

fn allow_udp_53() -> Acl {
    Acl::compile(&[AclConfig {
        matches: AclMatch {
            ip: Some("192.0.2.0/24".parse().unwrap()),
            protocol: Some(17),
            fport: Some(53),
            ..Default::default()
        },
        action: AclAction::Allow,
        limit: None,
    }])
}

const APP: [u8; 4] = [192, 0, 2, 10];
const DNS: [u8; 4] = [192, 0, 2, 53];

fn udp(src: Mac, dst: Mac, from: ([u8; 4], u16), to: ([u8; 4], u16), proto: u8) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    v.extend(dst.0);
    v.extend(src.0);
    v.extend([0x08, 0x00, 0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, proto, 0, 0]);
    v.extend(from.0);
    v.extend(to.0);
    v.extend(from.1.to_be_bytes());
    v.extend(to.1.to_be_bytes());
    v.resize(VNET_HDR_LEN + 14 + 48, 0);
    v
}

fn port(
    sw: &Switch,
    d: &Arc<Domain>,
    n: u8,
    filter: Option<Arc<VifFilter>>,
) -> (Arc<PortEntry>, Arc<MemoryPort>) {
    let m = MemoryPort::capturing();
    let e = sw
        .add_port(
            d,
            PortSpec::new(
                format!("p{n}"),
                PortRole::Other,
                Box::new(Shared(m.clone())),
                1500,
            )
            .own_mac(Mac([2, 0, 0, 0, 0, n])),
        )
        .unwrap();
    e.set_hook(filter.map(|f| Box::new(f) as Box<dyn PortHook>));
    (e, m)
}

/// A VIF whose filter allows UDP to port 53 of 192.0.2.0/24, and a LAN port.
struct Lab {
    f: Arc<VifFilter>,
    sw: Arc<Switch>,
    vif: Arc<PortEntry>,
    vif_io: Arc<MemoryPort>,
    lan: Arc<PortEntry>,
    lan_io: Arc<MemoryPort>,
}

fn lab() -> Lab {
    let f = Arc::new(VifFilter::new(rules(allow_udp_53()), None));
    let sw = Switch::new();
    let d = Domain::new("flat");
    let (vif, vif_io) = port(&sw, &d, 1, Some(f.clone()));
    let (lan, lan_io) = port(&sw, &d, 2, None);
    Lab {
        f,
        sw,
        vif,
        vif_io,
        lan,
        lan_io,
    }
}

#[test]
fn a_switch_ni_vif_passes_only_its_rules_and_the_replies() {
    let Lab {
        f,
        sw,
        vif,
        vif_io,
        lan,
        lan_io,
    } = lab();
    let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));

    sw.process(&vif, &udp(a, b, (APP, 5000), (DNS, 53), 17), 1);
    assert_eq!(lan_io.take().len(), 1, "allowed out");
    sw.process(&lan, &udp(b, a, (DNS, 53), (APP, 5000), 17), 1);
    assert_eq!(vif_io.take().len(), 1, "the reply comes back");
    sw.process(&lan, &udp(b, a, (DNS, 9999), (APP, 5001), 17), 1);
    assert!(vif_io.take().is_empty(), "unsolicited inbound refused");
    sw.process(&vif, &udp(a, b, (APP, 5000), (DNS, 80), 6), 1);
    assert!(lan_io.take().is_empty(), "TCP is not allowed");
    let mut arp = udp(a, Mac::BROADCAST, (APP, 0), (DNS, 0), 0);
    arp[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&[0x08, 0x06]);
    sw.process(&vif, &arp, 1);
    assert_eq!(lan_io.take().len(), 1, "ARP passes");
    assert_eq!(vif.stats.drops(DropReason::AclDenied), 2, "both ways");
    assert_eq!(f.hits(), vec![1], "one flow, judged once");

    let recs = f.flush();
    let ok = recs.iter().find(|r| r.action == "allow").unwrap();
    assert_eq!((ok.tx_pkts, ok.rx_pkts, ok.acl), (1, 1, Some(0)));
    assert_eq!(
        (ok.dst.as_str(), ok.dport, ok.inbound),
        ("192.0.2.53", 53, false)
    );
    let inbound = recs.iter().find(|r| r.inbound).unwrap();
    assert_eq!(
        (inbound.action.as_str(), inbound.src.as_str()),
        ("drop", "192.0.2.53")
    );
    assert_eq!(recs.len(), 3);
}

#[test]
fn new_rules_judge_running_flows_again_and_keep_their_direction() {
    let Lab {
        f,
        sw,
        vif,
        vif_io,
        lan,
        lan_io,
    } = lab();
    let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
    let out = udp(a, b, (APP, 5000), (DNS, 53), 17);
    let back = udp(b, a, (DNS, 53), (APP, 5000), 17);
    sw.process(&vif, &out, 1);
    sw.process(&lan, &back, 1);
    assert_eq!((lan_io.take().len(), vif_io.take().len()), (1, 1));

    // Everything dropped now: the running flow stops both ways.
    f.set_rules(rules(Acl::compile(&[])));
    sw.process(&lan, &back, 1);
    sw.process(&vif, &out, 1);
    assert_eq!((lan_io.take().len(), vif_io.take().len()), (0, 0));

    // Allowed again: a reply arriving first still belongs to the flow the
    // app began, so it passes without an inbound rule.
    f.set_rules(rules(allow_udp_53()));
    sw.process(&lan, &back, 1);
    assert_eq!(vif_io.take().len(), 1, "the reply of an app-started flow");
    assert_eq!(f.hits(), vec![1], "judged once under the new rules");
    let recs = f.flush();
    assert_eq!(recs.len(), 1, "one flow across the rule changes");
    assert_eq!(
        (recs[0].tx_pkts, recs[0].rx_pkts, recs[0].inbound),
        (2, 3, false)
    );

    // Without a hook the port passes everything.
    vif.set_hook(None);
    sw.process(&lan, &udp(b, a, (DNS, 9999), (APP, 5001), 17), 1);
    assert_eq!(vif_io.take().len(), 1);
}

#[test]
fn without_acls_everything_passes_and_every_flow_is_recorded() {
    let f = Arc::new(VifFilter::new(
        FilterRules {
            enforce: false,
            ..rules(Acl::compile(&[]))
        },
        None,
    ));
    let sw = Switch::new();
    let d = Domain::new("lan");
    let (vif, _vif_io) = port(&sw, &d, 1, Some(f.clone()));
    let (lan, lan_io) = port(&sw, &d, 2, None);
    let (a, b) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
    sw.process(&vif, &udp(a, b, (APP, 5000), (DNS, 53), 17), 1);
    sw.process(&vif, &udp(a, b, (APP, 5000), (DNS, 80), 6), 1);
    sw.process(&lan, &udp(b, a, (DNS, 9999), (APP, 5001), 17), 1);
    // IPv6 (not judged by IPv4 rules) passes too.
    let mut v6 = udp(a, b, (APP, 1), (DNS, 2), 17);
    v6[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14].copy_from_slice(&[0x86, 0xdd]);
    sw.process(&vif, &v6, 1);
    assert_eq!(lan_io.take().len(), 3, "all out");
    assert_eq!(vif.stats.drops(DropReason::AclDenied), 0);
    let recs = f.flush();
    assert_eq!(recs.len(), 3, "three flows recorded: {recs:?}");
    assert!(recs.iter().all(|r| r.action == "allow" && r.acl.is_none()));
    assert!(recs.iter().any(|r| r.inbound && r.src == "192.0.2.53"));
}
