//! Two devices on one LAN (a kernel bridge in its own namespace plays the
//! LAN switch), each running niswitch with the same app layout: the apps'
//! MACs differ, they talk directly (no NAT), and a VRRP virtual IP held by
//! keepalived moves from one device's app to the other's when its holder
//! stops — multicast and gratuitous ARP pass as on a real switch.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const P: &str = "nsw2d";
const VIP: &str = "10.20.0.100";

fn config(p: &str, dev: &str, app_uuid: &str) -> String {
    format!(
        "version: 1
ports:
  - {{ name: lan, device: {p}{dev}n, management: true, host_interface: {p}{dev}h }}
network_instances:
  - {{ name: flat, uuid: 2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b, type: switch, port: lan }}
apps:
  - {{ name: k3s, uuid: {app_uuid}, interfaces: [{{ ni: flat, tap: {p}{dev}x, netns: {p}-{dev}x, allowed_ips: [{VIP}] }}] }}
"
    )
}

fn keepalived_conf(ifname: &str, prio: u32) -> String {
    format!(
        "vrrp_instance VI_1 {{\n  state BACKUP\n  interface {ifname}\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    )
}

#[test]
fn apps_on_two_devices_share_the_lan_and_a_vrrp_address() {
    if !root_or_skip("apps_on_two_devices_share_the_lan_and_a_vrrp_address") {
        return;
    }
    need(&["keepalived", "ping"]);
    let p = P;
    let mut sb = Sandbox::new(p).unwrap();
    let lan = sb.ns("lan").unwrap();
    assert!(sb.ok(
        &lan,
        "ip link add br0 type bridge && ip link set br0 up && ip addr add 10.20.0.1/24 dev br0"
    ));
    let mut daemons = Vec::new();
    let mut apps = Vec::new();
    let uuids = [
        "6ba7b810-9dad-11d1-80b4-00c04fd43001",
        "6ba7b810-9dad-11d1-80b4-00c04fd43002",
    ];
    for (i, dev) in ["d1", "d2"].iter().enumerate() {
        let ns = sb.ns(dev).unwrap();
        let app = sb.ns(&format!("{dev}x")).unwrap();
        sb.veth(&ns, &format!("{p}{dev}n"), &lan, &format!("{p}{dev}l"))
            .unwrap();
        assert!(sb.ok(&lan, &format!("ip link set {p}{dev}l master br0")));
        let d = start(&mut sb, &ns, &config(p, dev, uuids[i]), dev);
        assert!(sb.ok(
            &app,
            &format!("ip addr add 10.20.0.1{}/24 dev {p}{dev}x", i + 1)
        ));
        daemons.push(d);
        apps.push(app);
    }
    let mac =
        |i: usize, dev: &str| sb.out(&apps[i], &format!("cat /sys/class/net/{p}{dev}x/address"));
    let (m1, m2) = (mac(0, "d1"), mac(1, "d2"));
    assert_ne!(m1, m2, "same layout, different app UUIDs: different MACs");
    assert!(m1.starts_with("02:16:3e:") && m2.starts_with("02:16:3e:"));

    assert!(
        ping(&sb, &apps[0], "10.20.0.12"),
        "app on d1 -> app on d2, no NAT"
    );
    assert!(ping(&sb, &apps[1], "10.20.0.11"));
    // The peer's address as seen by the other side: its own, not translated.
    let neigh = sb.out(&apps[1], "ip neigh show 10.20.0.11");
    assert!(neigh.contains(&m1), "{neigh}");

    // keepalived in both apps; the higher priority holds the VIP.
    let mut ka = Vec::new();
    for (i, (dev, prio)) in [("d1", 150), ("d2", 100)].iter().enumerate() {
        let conf = sb.path(&format!("ka-{dev}.conf"));
        std::fs::write(&conf, keepalived_conf(&format!("{p}{dev}x"), *prio)).unwrap();
        let pid = sb
            .spawn(
                &apps[i],
                Path::new("/usr/sbin/keepalived"),
                &[
                    "--dont-fork",
                    "--log-console",
                    "--vrrp",
                    "-f",
                    &conf.to_string_lossy(),
                    "-p",
                    &sb.path(&format!("ka-{dev}.pid")).to_string_lossy(),
                    "-r",
                    &sb.path(&format!("ka-{dev}-vrrp.pid")).to_string_lossy(),
                ],
                &format!("ka-{dev}.log"),
            )
            .unwrap();
        ka.push(pid);
    }
    let holds = |sb: &Sandbox, i: usize, dev: &str| {
        sb.out(&apps[i], &format!("ip -o addr show dev {p}{dev}x"))
            .contains(VIP)
    };
    assert!(
        wait_until(Duration::from_secs(15), || holds(&sb, 0, "d1")),
        "d1's app takes the VIP:\n{}",
        sb.log("ka-d1.log")
    );
    assert!(!holds(&sb, 1, "d2"), "only one holder");
    assert!(
        wait_until(Duration::from_secs(5), || sb
            .ok(&lan, &format!("ping -c 1 -W 1 {VIP}"))),
        "the LAN reaches the VIP"
    );

    // The holder stops: the VIP moves to the other device's app.
    sb.signal(ka[0], libc::SIGTERM);
    sb.wait(ka[0], Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(10), || holds(&sb, 1, "d2")),
        "VIP moved to d2's app:\n{}",
        sb.log("ka-d2.log")
    );
    assert!(
        wait_until(Duration::from_secs(5), || sb
            .ok(&lan, &format!("ping -c 1 -W 1 {VIP}"))),
        "the LAN reaches the VIP on its new holder"
    );
    let neigh = sb.out(&lan, &format!("ip neigh show {VIP}"));
    assert!(
        neigh.contains(&m2),
        "gratuitous ARP moved the VIP's MAC: {neigh}"
    );
    assert!(
        ping(&sb, &apps[0], VIP),
        "and so does the former holder's app"
    );
}
