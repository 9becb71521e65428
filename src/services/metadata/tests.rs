use super::*;

fn app() -> AppMeta {
    AppMeta {
        name: "web".into(),
        uuid: Some(uuid::Uuid::from_u128(
            0x6ba7b810_9dad_11d1_80b4_00c04fd43101,
        )),
        user_data: Some("#cloud-config\nhostname: web\n".into()),
        macs: vec![Mac([2, 0, 0, 0, 0, 1])],
    }
}

fn ni() -> NiFacts {
    NiFacts {
        gateway: Ipv4Addr::new(10, 50, 0, 1),
        mtu: 1400,
        external: Some(Ipv4Addr::new(192, 0, 2, 50)),
    }
}

fn caller() -> SocketAddr {
    "10.50.0.100:40000".parse().unwrap()
}

fn get(path: &str) -> (String, String) {
    let r = String::from_utf8(respond(&app(), caller(), &ni(), path, false)).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn a_request_is_read_once_its_headers_end() {
    assert_eq!(
        parse(b"GET /eve/v1/hostname HTTP/1.1\r\nHost: x\r\n"),
        Request::Incomplete
    );
    assert_eq!(
        parse(b"GET /eve/v1/hostname?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        Request::Get {
            path: "/eve/v1/hostname".into(),
            head: false
        }
    );
    assert_eq!(
        parse(b"HEAD / HTTP/1.0\n\n"),
        Request::Get {
            path: "/".into(),
            head: true
        }
    );
}

#[test]
fn bad_requests_get_their_status() {
    assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Request::Bad(405));
    assert_eq!(parse(b"GET / SPDY/3\r\n\r\n"), Request::Bad(400));
    assert_eq!(parse(b"GET relative HTTP/1.1\r\n\r\n"), Request::Bad(400));
    assert_eq!(parse(b"GET / HTTP/1.1 extra\r\n\r\n"), Request::Bad(400));
    assert_eq!(parse(b"\xff\xfe / HTTP/1.1\r\n\r\n"), Request::Bad(400));
    let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_REQUEST]].concat();
    assert_eq!(parse(&huge), Request::Bad(431));
    assert!(
        String::from_utf8(error(431))
            .unwrap()
            .starts_with("HTTP/1.1 431 ")
    );
}

#[test]
fn eve_documents_name_the_app_and_its_caller() {
    let (status, body) = get("/eve/v1/network.json");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["caller-ip"], "10.50.0.100:40000");
    assert_eq!(v["external-ipv4"], "192.0.2.50");
    assert_eq!(v["hostname"], "web");
    assert_eq!(v["app-name"], "web");
    assert_eq!(v["app-uuid"], "6ba7b810-9dad-11d1-80b4-00c04fd43101");
    assert_eq!(get("/eve/v1/external_ipv4").1, "192.0.2.50");
    assert_eq!(get("/eve/v1/hostname/").1, "web");
}

#[test]
fn openstack_layout_for_cloud_init() {
    let v: serde_json::Value =
        serde_json::from_str(&get("/openstack/latest/meta_data.json").1).unwrap();
    assert_eq!(v["uuid"], "6ba7b810-9dad-11d1-80b4-00c04fd43101");
    assert_eq!(v["hostname"], "web");
    assert_eq!(
        get("/openstack/latest/user_data").1,
        "#cloud-config\nhostname: web\n"
    );
    let n: serde_json::Value =
        serde_json::from_str(&get("/openstack/latest/network_data.json").1).unwrap();
    assert_eq!(n["links"][0]["ethernet_mac_address"], "02:00:00:00:00:01");
    assert_eq!(n["links"][0]["mtu"], 1400);
    assert_eq!(n["networks"][0]["type"], "ipv4_dhcp");
    assert_eq!(n["services"][0]["address"], "10.50.0.1");
    assert!(get("/openstack").1.contains("latest"));
}

#[test]
fn missing_documents_are_404() {
    let mut a = app();
    a.user_data = None;
    let r = String::from_utf8(respond(
        &a,
        caller(),
        &ni(),
        "/openstack/latest/user_data",
        false,
    ))
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 404 "));
    assert_eq!(get("/etc/passwd").0, "HTTP/1.1 404 Not Found");
    let no_uplink = NiFacts {
        external: None,
        ..ni()
    };
    let r = String::from_utf8(respond(
        &app(),
        caller(),
        &no_uplink,
        "/eve/v1/external_ipv4",
        false,
    ))
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 404 "));
}

#[test]
fn head_has_no_body_but_its_length() {
    let r = String::from_utf8(respond(&app(), caller(), &ni(), "/eve/v1/hostname", true)).unwrap();
    assert!(r.ends_with("\r\n\r\n"));
    assert!(r.contains("Content-Length: 3\r\n"));
}
