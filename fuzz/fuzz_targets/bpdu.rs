//! Any bytes as a whole frame and as the BPDU in a frame to the
//! spanning-tree group address: the parser, a parsed BPDU written out and
//! read back unchanged, and a two-port RSTP bridge fed the BPDU on either
//! port while its clock runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use niswitch::switch::rstp::bpdu::{Bpdu, llc_payload};
use niswitch::switch::rstp::{Bridge, Settings};

/// `body` after the group address, a source, its length and the LLC header.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 7];
    f.extend(((body.len() + 3) as u16).to_be_bytes());
    f.extend([0x42, 0x42, 0x03]);
    f.extend(body);
    f
}

fuzz_target!(|data: &[u8]| {
    let _ = llc_payload(data).and_then(Bpdu::parse);
    let frame = framed(data);
    let Some(bpdu) = llc_payload(&frame).and_then(Bpdu::parse) else {
        return;
    };
    let again = llc_payload(&bpdu.frame([2, 0, 0, 0, 0, 1])).and_then(Bpdu::parse);
    assert_eq!(again, Some(bpdu), "a BPDU read back differs");
    let ports = [([2, 0, 0, 0, 0, 1], 20000), ([2, 0, 0, 0, 0, 2], 20000)];
    let mut b = Bridge::new([2, 0, 0, 0, 0, 9], Settings::default(), &ports);
    b.link(0, true, 0);
    b.link(1, true, 0);
    let port = data.len() % 2;
    for t in 0..40u64 {
        if t % 10 == 0 {
            b.receive(port, bpdu, t * 250);
        }
        b.tick(t * 250);
        b.take_frames();
        b.take_flushes();
    }
    let forwarding = (b.ports.iter())
        .filter(|p| p.state == niswitch::switch::rstp::State::Forwarding)
        .count();
    assert!(forwarding <= 2);
});
