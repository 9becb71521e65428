//! Port-security verdicts on hand-built frames.

use super::*;
use crate::frame::VNET_HDR_LEN;

const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; VNET_HDR_LEN];
    v.extend([0xff; 6]);
    v.extend(OWN.0);
    v.extend(ethertype.to_be_bytes());
    v.extend(l3);
    v
}

fn arp(sha: Mac, spa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend(sha.0);
    a.extend(spa);
    a.extend([0; 6]);
    a.extend([10, 0, 0, 9]);
    frame(ETHERTYPE_ARP, &a)
}

fn udp4(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend(src);
    ip.extend([255, 255, 255, 255]);
    ip.extend(sport.to_be_bytes());
    ip.extend(dport.to_be_bytes());
    ip.extend([0, 8, 0, 0]);
    frame(ETHERTYPE_IPV4, &ip)
}

fn icmp6(ext: &[u8], first_next: u8, icmp_type: u8) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, first_next, 255];
    ip.extend([0u8; 32]);
    ip.extend(ext);
    ip.extend([icmp_type, 0, 0, 0]);
    frame(ETHERTYPE_IPV6, &ip)
}

fn verdict(g: &Guard, f: &[u8]) -> Option<DropReason> {
    g.egress(&Packet::new_checked(f).unwrap(), OWN)
}

#[test]
fn arp_must_name_the_vifs_mac_and_an_address_it_holds() {
    let g = Guard::default();
    g.enable(true, true);
    g.set(&[Ipv4Addr::new(10, 0, 0, 5)]);
    assert_eq!(verdict(&g, &arp(OWN, [10, 0, 0, 5])), None);
    assert_eq!(verdict(&g, &arp(OWN, [0, 0, 0, 0])), None, "a probe");
    let other = Mac([2, 0, 0, 0, 0, 2]);
    assert_eq!(
        verdict(&g, &arp(other, [10, 0, 0, 5])),
        Some(DropReason::ArpSpoofedMac)
    );
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 0, 0, 6])),
        Some(DropReason::ArpSpoofedIp)
    );
    assert_eq!(
        verdict(&g, &frame(ETHERTYPE_ARP, &[0, 1])),
        Some(DropReason::ArpMalformed)
    );
}

#[test]
fn a_switch_ni_vif_learns_its_address_from_dhcp_or_its_first_arp() {
    let g = Guard::default();
    g.enable(true, false);
    assert_eq!(verdict(&g, &arp(OWN, [10, 0, 0, 7])), None, "first ARP");
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 0, 0, 8])),
        Some(DropReason::ArpSpoofedIp)
    );
    g.learn_from_server(0, Ipv4Addr::new(10, 0, 0, 8));
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 0, 0, 8])),
        None,
        "the ACK's address"
    );
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 0, 0, 7])),
        Some(DropReason::ArpSpoofedIp)
    );
    // No source guard on a switch NI: the LAN decides.
    assert_eq!(verdict(&g, &udp4([10, 0, 0, 99], 5000, 53)), None);
}

#[test]
fn a_local_ni_vif_sends_only_from_its_address_and_dhcp_from_zero() {
    let g = Guard::default();
    g.enable(true, true);
    g.set(&[Ipv4Addr::new(10, 0, 0, 5)]);
    assert_eq!(verdict(&g, &udp4([10, 0, 0, 5], 5000, 53)), None);
    assert_eq!(
        verdict(&g, &udp4([10, 0, 0, 6], 5000, 53)),
        Some(DropReason::IpSpoofed)
    );
    assert_eq!(
        verdict(&g, &udp4([0, 0, 0, 0], 68, 67)),
        None,
        "DHCP client"
    );
    assert_eq!(
        verdict(&g, &udp4([0, 0, 0, 0], 5000, 53)),
        Some(DropReason::IpSpoofed)
    );
    // Before a lease: only DHCP.
    g.set(&[]);
    assert_eq!(verdict(&g, &udp4([0, 0, 0, 0], 68, 67)), None);
    assert_eq!(
        verdict(&g, &udp4([10, 0, 0, 5], 5000, 53)),
        Some(DropReason::IpSpoofed)
    );
}

#[test]
fn no_app_answers_as_a_dhcp_server_or_a_router() {
    let g = Guard::default();
    g.enable(true, false);
    for (sport, dport) in [(67, 68), (4242, 68), (67, 4242)] {
        let f = udp4([10, 0, 0, 5], sport, dport);
        assert_eq!(
            verdict(&g, &f),
            Some(DropReason::DhcpServer),
            "{sport}->{dport}"
        );
    }
    assert_eq!(verdict(&g, &udp4([0, 0, 0, 0], 68, 67)), None, "a client");
    assert_eq!(verdict(&g, &icmp6(&[], 58, 134)), Some(DropReason::RaGuard));
    assert_eq!(
        verdict(&g, &icmp6(&[], 58, 137)),
        Some(DropReason::RaGuard),
        "redirect"
    );
    assert_eq!(
        verdict(&g, &icmp6(&[], 58, 135)),
        None,
        "neighbour solicitation"
    );
    assert_eq!(verdict(&g, &icmp6(&[], 58, 128)), None, "echo");
    // Behind a hop-by-hop header and a first fragment it is still an RA.
    let hbh = [44, 0, 0, 0, 0, 0, 0, 0];
    let frag_first = [58, 0, 0, 0, 0, 0, 0, 1];
    let mut ext = hbh.to_vec();
    ext.extend(frag_first);
    assert_eq!(verdict(&g, &icmp6(&ext, 0, 134)), Some(DropReason::RaGuard));
    // DHCPv6 server port.
    let mut dhcp6 = vec![0x60, 0, 0, 0, 0, 8, 17, 255];
    dhcp6.extend([0u8; 32]);
    dhcp6.extend([2, 35, 2, 34, 0, 8, 0, 0]);
    assert_eq!(
        verdict(&g, &frame(ETHERTYPE_IPV6, &dhcp6)),
        Some(DropReason::DhcpServer)
    );
    let n = dhcp6.len();
    dhcp6[n - 8..n - 6].copy_from_slice(&[0x10, 0x92]);
    let to_client = verdict(&g, &frame(ETHERTYPE_IPV6, &dhcp6));
    assert_eq!(to_client, Some(DropReason::DhcpServer), "any port to 546");
    dhcp6[n - 6..n - 4].copy_from_slice(&[2, 35]);
    assert_eq!(
        verdict(&g, &frame(ETHERTYPE_IPV6, &dhcp6)),
        None,
        "a client"
    );
    // Tagged frames are judged by what they carry.
    let mut tagged = udp4([10, 0, 0, 5], 67, 68);
    tagged.splice(
        VNET_HDR_LEN + 12..VNET_HDR_LEN + 12,
        [0x81, 0x00, 0x00, 0x64],
    );
    assert_eq!(verdict(&g, &tagged), Some(DropReason::DhcpServer));
    tagged.splice(
        VNET_HDR_LEN + 12..VNET_HDR_LEN + 12,
        [0x88, 0xa8, 0x00, 0x0a],
    );
    let qinq = verdict(&g, &tagged);
    assert_eq!(qinq, Some(DropReason::DhcpServer), "under two tags");
}

#[test]
fn allowed_ips_pass_besides_the_own_address() {
    let g = Guard::default();
    g.enable(true, false);
    g.set_extra(vec!["10.20.0.100/32".parse().unwrap()]);
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 0, 0, 7])),
        None,
        "first ARP learns"
    );
    assert_eq!(verdict(&g, &arp(OWN, [10, 20, 0, 100])), None, "the VIP");
    assert_eq!(
        verdict(&g, &arp(OWN, [10, 20, 0, 101])),
        Some(DropReason::ArpSpoofedIp)
    );
    let strict = Guard::default();
    strict.enable(true, true);
    strict.set_extra(vec!["10.20.0.96/28".parse().unwrap()]);
    assert_eq!(verdict(&strict, &udp4([10, 20, 0, 100], 5000, 53)), None);
}

#[test]
fn a_port_that_is_not_guarded_passes_everything() {
    let g = Guard::default();
    assert_eq!(verdict(&g, &udp4([10, 0, 0, 5], 67, 68)), None);
    assert_eq!(
        verdict(&g, &arp(Mac([2, 0, 0, 0, 0, 9]), [1, 2, 3, 4])),
        None
    );
}

#[test]
fn storm_control_allows_the_limit_each_second() {
    let b = FloodBudget::new(3);
    let pass = |now| (0..5).filter(|_| b.take(now)).count();
    assert_eq!(pass(10), 3);
    assert_eq!(pass(11), 3, "a new second, a new budget");
    b.set_limit(0);
    assert_eq!(pass(11), 5, "0 is no limit");
}

/// `f` with an 802.1Q tag of `vlan` after the MAC addresses.
fn tag(f: &[u8], vlan: u16) -> Vec<u8> {
    let at = VNET_HDR_LEN + 12;
    let mut v = f.to_vec();
    v.splice(at..at, [0x81, 0x00, (vlan >> 8) as u8, vlan as u8]);
    v
}

#[test]
fn a_trunk_interface_is_known_by_one_address_per_vlan() {
    let g = Guard::default();
    g.enable(true, false);
    // The first address in each VLAN is learned, untagged and tagged.
    assert_eq!(verdict(&g, &arp(OWN, [10, 1, 0, 3])), None);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 100, 0, 3]), 100)), None);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 200, 0, 3]), 200)), None);
    // A second address in a VLAN, or one VLAN's address in another, is refused.
    let spoofed = Some(DropReason::ArpSpoofedIp);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 100, 0, 4]), 100)), spoofed);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 100, 0, 3]), 200)), spoofed);
    assert_eq!(verdict(&g, &arp(OWN, [10, 100, 0, 3])), spoofed);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 200, 0, 3]), 200)), None);
    // At most four VLANs are learned.
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 3, 0, 3]), 3)), None);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 4, 0, 3]), 4)), spoofed);
    assert_eq!(g.ips().len(), 4);
    // A DHCP ACK names the untagged address and keeps the VLANs' ones.
    g.learn_from_server(0, Ipv4Addr::new(10, 1, 0, 9));
    assert_eq!(verdict(&g, &arp(OWN, [10, 1, 0, 9])), None);
    assert_eq!(verdict(&g, &arp(OWN, [10, 1, 0, 3])), spoofed);
    assert_eq!(verdict(&g, &tag(&arp(OWN, [10, 100, 0, 3]), 100)), None);
}
