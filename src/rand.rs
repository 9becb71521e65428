//! Unpredictable numbers from the kernel's random source (getrandom), for
//! what an off-path attacker must not guess: the DNS relay's query ids and
//! source ports.

/// Fills `buf` from getrandom(2); on the (theoretical) failure, falls back
/// to the clock mixed with the address of the buffer.
fn fill(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most buf.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = crate::clock::mono_ms() ^ (buf.as_ptr() as u64).rotate_left(17);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 8) * 8)) as u8;
        }
    }
}

pub fn u32() -> u32 {
    let mut b = [0u8; 4];
    fill(&mut b);
    u32::from_ne_bytes(b)
}

pub fn u16() -> u16 {
    let mut b = [0u8; 2];
    fill(&mut b);
    u16::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_differ() {
        let v: std::collections::HashSet<u32> = (0..64).map(|_| super::u32()).collect();
        assert!(v.len() > 60, "64 draws, {} distinct", v.len());
        let _ = super::u16();
    }
}
