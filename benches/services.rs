//! Request handling of the local-NI services: a DHCP DISCOVER/REQUEST pair
//! against a lease table, DNS queries answered locally or sent upstream, and
//! the per-packet NAT work (session lookup among 10,000, header rewrite), a
//! new NAT session in a table of 30,000, and
//! an ACL verdict for a new flow against 100 rules.

use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dhcproto::v4::{DhcpOption, Message, MessageType};
use hickory_proto::op::{Message as DnsMessage, MessageType as DnsType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use niswitch::config::Mac;
use niswitch::config::{Acl as AclConfig, AclAction, AclMatch};
use niswitch::ipstack::translate;
use niswitch::services::acl::{Acl, FlowKey};
use niswitch::services::dhcp::{self, Client, Leases, Pool};
use niswitch::services::dns::{self, Zone};
use niswitch::services::nat::{NatTable, Proto, Rewrite, Tuple};

fn dhcp_bench(c: &mut Criterion) {
    let pool = Pool {
        subnet: "10.50.0.0/16".parse().expect("net"),
        gateway: "10.50.0.1".parse().expect("ip"),
        start: "10.50.1.0".parse().expect("ip"),
        end: "10.50.255.254".parse().expect("ip"),
        lease_secs: 3600,
        domain: Some("lan".into()),
        mtu: 1500,
        air_gapped: false,
        ntp: Vec::new(),
        routes: Vec::new(),
    };
    let clients: Vec<Client> = (0..500u32)
        .map(|i| {
            let b = i.to_be_bytes();
            Client {
                mac: Mac([2, 0, b[0], b[1], b[2], b[3]]),
                app: format!("app{i}"),
                fixed: None,
            }
        })
        .collect();
    let mut leases = Leases::default();
    let msgs: Vec<(Mac, Vec<u8>)> = clients
        .iter()
        .map(|c| {
            let mut m = Message::new_with_id(
                1,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &c.mac.0,
            );
            m.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Discover));
            (c.mac, dhcp::encode(&m))
        })
        .collect();
    let mut g = c.benchmark_group("dhcp");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("decode_discover_offer_encode_500_clients", |b| {
        b.iter(|| {
            i = (i + 1) % msgs.len();
            let (mac, bytes) = &msgs[i];
            let m = dhcp::decode(bytes).expect("decodes");
            let r = leases
                .handle(&pool, &clients, *mac, &m, 1000)
                .expect("offer");
            dhcp::encode(&r.msg)
        })
    });
    g.finish();
}

fn dns_bench(c: &mut Criterion) {
    let mut zone = Zone {
        domain: Some("lan".into()),
        router: Some("10.50.0.1".parse().expect("ip")),
        ttl: 30,
        ..Default::default()
    };
    for i in 0..500u32 {
        zone.hosts.insert(
            format!("app{i}"),
            vec![Ipv4Addr::from(0x0a32_0100 + i).into()],
        );
    }
    let q = |name: &str| {
        let mut m = DnsMessage::new(7, DnsType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        m.to_vec().expect("encodes")
    };
    let local = q("app250.lan");
    let remote = q("www.example.com");
    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(1));
    g.bench_function("local_answer_500_apps", |b| {
        b.iter(|| dns::answer(&zone, &local))
    });
    g.bench_function("forward_decision", |b| {
        b.iter(|| dns::answer(&zone, &remote))
    });
    g.finish();
}

fn nat_bench(c: &mut Criterion) {
    let ext = Ipv4Addr::new(198, 51, 100, 7);
    let remote = Ipv4Addr::new(192, 0, 2, 80);
    let mut table = NatTable::new(10000..=49151, [], 65536);
    let rw = Rewrite {
        src: Some(ext),
        dst: None,
        via: 0,
    };
    for i in 0..10_000u32 {
        let t = Tuple {
            proto: Proto::Tcp,
            src: Ipv4Addr::from(0x0a32_0000 + i % 200),
            sport: 30000 + (i / 200) as u16,
            dst: remote,
            dport: 80,
        };
        table.create(t, rw, 0x02, 0).expect("room");
    }
    // A 1500-byte TCP segment of one of those flows, checksums complete.
    let mut pkt = vec![0u8; 10];
    pkt.extend([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
    pkt.extend([0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    pkt.extend(Ipv4Addr::from(0x0a32_0000 + 7).octets());
    pkt.extend(remote.octets());
    let mut tcp = vec![0u8; 1480];
    tcp[0..2].copy_from_slice(&30010u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x10;
    pkt.extend(tcp);
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_and_rewrite_10k_sessions", |b| {
        let mut buf = pkt.clone();
        b.iter(|| {
            buf.copy_from_slice(&pkt);
            let p = translate::parse(&buf).expect("tcp");
            let (to, _) = table.lookup(&p.tuple, p.tcp_flags, 1).expect("session");
            translate::rewrite(&mut buf, &p, &to)
        })
    });
    // New sessions into a table that already holds 30 000: the port comes
    // from the pool in O(1), however many are in use.
    g.bench_function("new_session_30k_sessions", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(5000);
                let mut t = NatTable::new(10000..=49151, [], 65536);
                t.app_quota = 65536;
                for i in 0..30_000u32 {
                    t.create(udp_flow(i), rw, 0, 0).expect("room");
                }
                let t0 = std::time::Instant::now();
                for i in 0..n as u32 {
                    t.create(udp_flow(30_000 + i), rw, 0, 0).expect("room");
                }
                spent += t0.elapsed();
                left -= n;
            }
            spent
        })
    });
    g.finish();
}

/// A UDP flow from one of 200 apps.
fn udp_flow(i: u32) -> Tuple {
    Tuple {
        proto: Proto::Udp,
        src: Ipv4Addr::from(0x0a32_0000 + i % 200),
        sport: 1024 + (i / 200) as u16,
        dst: Ipv4Addr::new(192, 0, 2, 80),
        dport: 53,
    }
}

fn acl_bench(c: &mut Criterion) {
    // 99 rules that do not match the flow, then the one that allows it.
    let mut list: Vec<AclConfig> = (0..99u16)
        .map(|i| AclConfig {
            matches: AclMatch {
                ip: Some(format!("198.18.{i}.0/24").parse().expect("net")),
                protocol: Some(6),
                fport: Some(1000 + i),
                ..Default::default()
            },
            action: AclAction::Allow,
            limit: None,
        })
        .collect();
    list.push(AclConfig {
        matches: AclMatch {
            ip: Some("192.0.2.0/24".parse().expect("net")),
            protocol: Some(6),
            fport: Some(80),
            ..Default::default()
        },
        action: AclAction::Allow,
        limit: None,
    });
    let acl = Acl::compile(&list);
    let key = FlowKey {
        proto: 6,
        local: Ipv4Addr::new(10, 50, 0, 20).into(),
        lport: 40000,
        remote: Ipv4Addr::new(192, 0, 2, 80).into(),
        rport: 80,
    };
    let no_hosts = |_: &str, _: std::net::IpAddr| false;
    let mut g = c.benchmark_group("acl");
    g.throughput(Throughput::Elements(1));
    g.bench_function("new_flow_100_rules_last_matches", |b| {
        b.iter(|| acl.evaluate(&key, &no_hosts))
    });
    g.finish();
}

criterion_group!(benches, dhcp_bench, dns_bench, nat_bench, acl_bench);
criterion_main!(benches);
