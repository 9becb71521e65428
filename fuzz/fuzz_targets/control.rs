//! Any text as a line on the control socket (`control::Request`, JSON) and
//! as what a runtime hands the CNI plugin: the network config on stdin
//! (`cni::spec::NetConf::parse`, then `cni::run` with a verb that needs no
//! daemon) and CNI_ARGS (`cni::spec::parse_args`, `pod_name`). Checked: a
//! request that parses serializes and parses back to the same JSON, every
//! plugin error is a CNI error object, and a pod name is a DNS label.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::cni::{self, spec};
use niswitch::control::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(req) = serde_json::from_str::<Request>(text) {
        let json = serde_json::to_string(&req).expect("a request serializes");
        let again: Request = serde_json::from_str(&json).expect("a serialized request parses");
        assert_eq!(serde_json::to_string(&again).expect("serializes"), json);
    }

    match spec::NetConf::parse(text) {
        Ok(conf) => {
            assert!(spec::SUPPORTED.contains(&conf.cni_version.as_str()));
            let _ = conf.ni();
        }
        Err(e) => {
            let v = e.to_json(spec::LATEST);
            assert_eq!(v["code"].as_u64(), Some(e.code as u64));
        }
    }
    for verb in ["VERSION", "NOT-A-VERB"] {
        let env = cni::Env {
            command: verb.into(),
            container_id: None,
            netns: None,
            ifname: None,
            args: String::new(),
        };
        let (out, code) = cni::run(&env, text);
        let v: serde_json::Value = serde_json::from_str(&out).expect("the plugin prints JSON");
        assert!(v["cniVersion"].is_string());
        assert_eq!(code == 0, verb == "VERSION");
    }

    if let Ok(args) = spec::parse_args(text) {
        let name = spec::pod_name(&args, text);
        assert!(
            name.len() <= 63,
            "pod name longer than a DNS label: {name:?}"
        );
        assert!(
            name.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
            "pod name is not a DNS label: {name:?}"
        );
        assert!(
            !name.starts_with('-') && !name.ends_with('-'),
            "pod name {name:?}"
        );
    }
});
