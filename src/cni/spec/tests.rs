//! The plugin's reading of configs and CNI_ARGS, and the shape of its
//! results and errors per version.

use super::*;

fn info(address: Option<&str>) -> PodInfo {
    PodInfo {
        network: "lan".into(),
        ni: "lan".into(),
        container_id: "c0ffee".into(),
        ifname: "eth0".into(),
        netns: "/run/netns/x".into(),
        mac: "02:16:3e:00:00:01".into(),
        mtu: 1500,
        address: address.map(String::from),
        gateway: address.map(|_| "10.50.0.1".into()),
        routes: vec![("0.0.0.0/0".into(), "10.50.0.1".into())],
        dns_servers: vec!["10.50.0.1".into()],
        dns_domain: Some("lan".into()),
        name: Some("web".into()),
    }
}

#[test]
fn configs_of_each_version_parse_and_others_are_refused() {
    for v in SUPPORTED {
        let c = NetConf::parse(&format!(
            r#"{{"cniVersion":"{v}","name":"lan","type":"niswitch-cni","ni":"lan","ipam":{{}},"capabilities":{{"mac":true}}}}"#
        ))
        .unwrap();
        assert_eq!(c.ni().unwrap(), "lan");
    }
    let e =
        NetConf::parse(r#"{"cniVersion":"0.2.0","name":"x","type":"niswitch-cni"}"#).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    assert_eq!(NetConf::parse("{").unwrap_err().code, code::DECODE_FAILURE);
    let no_ni =
        NetConf::parse(r#"{"cniVersion":"1.1.0","name":"x","type":"niswitch-cni"}"#).unwrap();
    assert_eq!(no_ni.ni().unwrap_err().code, code::INVALID_CONFIG);
}

#[test]
fn gc_reads_the_valid_attachments() {
    let c = NetConf::parse(
        r#"{"cniVersion":"1.1.0","name":"lan","type":"niswitch-cni","ni":"lan",
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.valid_attachments.unwrap(),
        vec![Attachment {
            container_id: "a".into(),
            ifname: "eth0".into()
        }]
    );
}

#[test]
fn cni_args_known_keys_and_ignore_unknown() {
    let a = parse_args("IgnoreUnknown=1;K8S_POD_NAME=Web_1;FOO=bar").unwrap();
    assert_eq!(pod_name(&a, "0123456789abcdef"), "web-1");
    assert_eq!(parse_args("FOO=bar").unwrap_err().code, code::INVALID_ENV);
    assert_eq!(parse_args("MAC").unwrap_err().code, code::INVALID_ENV);
    let none = parse_args("").unwrap();
    assert_eq!(pod_name(&none, "0123456789abcdef"), "0123456789ab");
}

#[test]
fn results_have_the_shape_of_their_version() {
    let r = result("1.1.0", &info(Some("10.50.0.254/24")));
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0]["mtu"], 1500);
    assert_eq!(r["interfaces"][0]["sandbox"], "/run/netns/x");
    assert_eq!(r["ips"][0]["address"], "10.50.0.254/24");
    assert_eq!(r["ips"][0]["interface"], 0);
    assert!(r["ips"][0].get("version").is_none());
    assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(r["dns"]["nameservers"][0], "10.50.0.1");
    let old = result("0.4.0", &info(Some("10.50.0.254/24")));
    assert_eq!(old["ips"][0]["version"], "4");
    assert!(old["interfaces"][0].get("mtu").is_none());
    let l2 = result("1.0.0", &info(None));
    assert!(
        l2.get("ips").is_none(),
        "a switch NI gives the interface only"
    );
}

#[test]
fn interface_names_follow_the_kernel_rules() {
    for ok in ["eth0", "net1", "a", "fifteen-chars-x"] {
        assert!(check_ifname(ok).is_ok(), "{ok}");
    }
    for bad in ["", "sixteen-chars-xx", "a/b", "a b", "a:1", ".", ".."] {
        assert_eq!(
            check_ifname(bad).unwrap_err().code,
            code::INVALID_ENV,
            "{bad}"
        );
    }
}

#[test]
fn errors_carry_version_code_and_message() {
    let e = CniError::new(code::TRY_AGAIN_LATER, "later").details("why");
    let v = e.to_json("1.0.0");
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["code"], 11);
    assert_eq!(v["msg"], "later");
    assert_eq!(v["details"], "why");
}
