//! Values derived from the config: app VIF MACs (SPEC §4, EVE's scheme),
//! default TAP names, UUIDs for NIs that have none.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::addr::Mac;

/// Fixed namespace for UUIDv5 of network-instance names without a `uuid`.
pub const NI_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6e69_7377_6974_4368_8e4e_6e69_0000_0001);

/// `02:16:3e:` + the first three bytes of SHA-256(app ‖ ni ‖ ifnum ‖ appnum).
pub fn vif_mac(app: &Uuid, ni: &Uuid, ifnum: u8, app_num: u8) -> Mac {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update(ni.as_bytes());
    h.update([ifnum, app_num]);
    let d = h.finalize();
    Mac([0x02, 0x16, 0x3e, d[0], d[1], d[2]])
}

/// A pod interface's MAC: `02:16:3e:` + SHA-256(NI ‖ container ID ‖ ifname),
/// stable for the same attachment.
pub fn pod_mac(ni: &Uuid, container_id: &str, ifname: &str) -> Mac {
    let mut h = Sha256::new();
    h.update(b"niswitch pod");
    h.update(ni.as_bytes());
    h.update(container_id.as_bytes());
    h.update([0]);
    h.update(ifname.as_bytes());
    let d = h.finalize();
    Mac([0x02, 0x16, 0x3e, d[0], d[1], d[2]])
}

/// UUID of a network instance that the config names without one.
pub fn ni_uuid(name: &str) -> Uuid {
    Uuid::new_v5(&NI_UUID_NAMESPACE, name.as_bytes())
}

/// Default TAP name of a VIF: `nbu` + 6 hex digits of the app UUID's hash +
/// `x` + interface number (at most 13 bytes, stable when apps are reordered).
pub fn tap_name(app: &Uuid, ifnum: u8) -> String {
    let d = Sha256::digest(app.as_bytes());
    format!("nbu{:02x}{:02x}{:02x}x{ifnum}", d[0], d[1], d[2])
}

/// The name a management NIC is renamed to when its host TAP takes its name.
pub fn kernel_name(device: &str) -> String {
    format!("k{device}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Uuid {
        s.parse().unwrap()
    }

    #[test]
    fn spec_golden_vector() {
        let m = vif_mac(
            &u("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            &u("2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b"),
            0,
            0,
        );
        assert_eq!(m.to_string(), "02:16:3e:87:5f:dc");
    }

    #[test]
    fn inputs_change_the_mac_and_bits_are_right() {
        let a = u("6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        let n = u("2d7b0f4e-5a3c-4b8e-9f61-0c1d2e3f4a5b");
        let base = vif_mac(&a, &n, 0, 0);
        assert_ne!(base, vif_mac(&a, &n, 1, 0));
        assert_ne!(base, vif_mac(&a, &n, 0, 1));
        assert_ne!(base, vif_mac(&n, &a, 0, 0));
        assert!(!base.is_multicast());
        assert_eq!(base.0[0] & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn derived_names() {
        let a = u("6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        let t = tap_name(&a, 255);
        assert!(t.len() <= 15 && t.starts_with("nbu"), "{t}");
        assert_eq!(tap_name(&a, 1), tap_name(&a, 1));
        assert_eq!(ni_uuid("lan"), ni_uuid("lan"));
        assert_ne!(ni_uuid("lan"), ni_uuid("lan2"));
        assert_eq!(ni_uuid("lan").get_version_num(), 5);
    }
}
