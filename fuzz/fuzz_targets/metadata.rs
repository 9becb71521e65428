//! Any bytes as what a client sent the metadata server: the request is
//! read or refused with a status, never a panic, and whatever path it
//! names gets a whole HTTP response for the app that asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::config::Mac;
use niswitch::services::metadata::{self, AppMeta, NiFacts, Request};

fuzz_target!(|data: &[u8]| {
    let app = AppMeta {
        name: "web".into(),
        uuid: None,
        user_data: Some("#cloud-config\n".into()),
        macs: vec![Mac([2, 0, 0, 0, 0, 1])],
    };
    let ni = NiFacts {
        gateway: "10.50.0.1".parse().expect("ip"),
        mtu: 1500,
        external: None,
    };
    let caller = "10.50.0.100:40000".parse().expect("addr");
    let answer = match metadata::parse(data) {
        Request::Incomplete => {
            assert!(data.len() < metadata::MAX_REQUEST);
            return;
        }
        Request::Bad(status) => metadata::error(status),
        Request::Get { path, head } => {
            assert!(path.starts_with('/'));
            metadata::respond(&app, caller, &ni, &path, head)
        }
    };
    assert!(answer.starts_with(b"HTTP/1.1 "));
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a length");
    assert!(body.is_empty() || body.len() == len);
});
