//! The steering program's bytecode. A TCP segment with a flow hash keeps
//! the queue its flow was first given, until the flow has been quiet for
//! `IDLE_NS`: a TCP sender sends both from the app and from the CPU that
//! processes its ACKs, and its segments must stay on one worker to stay in
//! order. A new or idle TCP flow, and every other frame (sent from its
//! app's own context only, so following the app from CPU to CPU), gets the
//! queue of the worker pinned to the CPU handling it (or that CPU's number,
//! which the kernel takes modulo the queues, when no worker is pinned
//! there).

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn op(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// The registers used: r0 result, r1-r4 arguments, r6-r9 kept across calls,
// r10 the frame pointer.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const FP: u8 = 10;

const fn mov(dst: u8, src: u8) -> Insn {
    op(0xbf, dst, src, 0, 0)
}
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    op(0xb7, dst, 0, 0, imm)
}
const fn add_imm(dst: u8, imm: i32) -> Insn {
    op(0x07, dst, 0, 0, imm)
}
const fn sub(dst: u8, src: u8) -> Insn {
    op(0x1f, dst, src, 0, 0)
}
const fn load32(dst: u8, src: u8, off: i16) -> Insn {
    op(0x61, dst, src, off, 0)
}
const fn load64(dst: u8, src: u8, off: i16) -> Insn {
    op(0x79, dst, src, off, 0)
}
const fn load8(dst: u8, src: u8, off: i16) -> Insn {
    op(0x71, dst, src, off, 0)
}
const fn store32(dst: u8, off: i16, src: u8) -> Insn {
    op(0x63, dst, src, off, 0)
}
const fn store64(dst: u8, off: i16, src: u8) -> Insn {
    op(0x7b, dst, src, off, 0)
}
/// `if dst == imm goto +off`.
const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    op(0x15, dst, 0, off, imm)
}
/// `if dst != imm goto +off`.
const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    op(0x55, dst, 0, off, imm)
}
/// `if dst > imm goto +off` (signed: a time a little in the future, from
/// another CPU, is not a long quiet).
const fn jsgt_imm(dst: u8, imm: i32, off: i16) -> Insn {
    op(0x65, dst, 0, off, imm)
}
const fn ja(off: i16) -> Insn {
    op(0x05, 0, 0, off, 0)
}
const fn call(helper: i32) -> Insn {
    op(0x85, 0, 0, 0, helper)
}
const EXIT: Insn = op(0x95, 0, 0, 0, 0);

/// `dst = the map behind fd` (a two-instruction load).
fn load_map(dst: u8, fd: i32) -> [Insn; 2] {
    const PSEUDO_MAP_FD: u8 = 1;
    [op(0x18, dst, PSEUDO_MAP_FD, 0, fd), op(0, 0, 0, 0, 0)]
}

const MAP_LOOKUP_ELEM: i32 = 1;
const MAP_UPDATE_ELEM: i32 = 2;
const KTIME_GET_NS: i32 = 5;
const GET_SMP_PROCESSOR_ID: i32 = 8;
const SKB_LOAD_BYTES_RELATIVE: i32 = 68;
/// Offsets counted from the network header.
const HDR_START_NET: i32 = 1;
/// `__sk_buff.protocol`: the ethertype, in network order.
const SKB_PROTOCOL: i16 = 16;
const IPV4: i32 = u16::to_be(0x0800) as i32;
const IPV6: i32 = u16::to_be(0x86dd) as i32;
const TCP: i32 = 6;
/// Where the protocol byte read from the network header goes.
const PROTO_BYTE: i16 = -8;
/// `__sk_buff.hash`.
const SKB_HASH: i16 = 68;
/// How long a flow keeps its queue without frames: far longer than any
/// frame waits in a queue, so a flow moved after it never passes itself.
const IDLE_NS: i32 = 100_000_000;

/// A map entry: the flow's queue and when it was last seen (stack offsets
/// of the key and value while the program runs).
const KEY: i16 = -4;
const VALUE: i16 = -24;
pub const VALUE_SIZE: u32 = 16;

/// r0 = this CPU's queue: the index of the worker pinned to it, or the
/// CPU's number; every branch ends at the instruction after the block.
fn cpu_queue(cpus: &[usize]) -> Vec<Insn> {
    let mut p = vec![call(GET_SMP_PROCESSOR_ID)];
    let n = cpus.len();
    for (queue, &cpu) in cpus.iter().enumerate() {
        let left = (n - queue - 1) as i16 * 3;
        p.push(jne_imm(R0, cpu as i32, 2));
        p.push(mov_imm(R0, queue as i32));
        p.push(ja(left));
    }
    p
}

/// The whole program, using the flow map behind `map_fd`.
pub fn program(cpus: &[usize], map_fd: i32) -> Vec<Insn> {
    // A frame without a flow hash: this CPU's queue.
    let mut local = cpu_queue(cpus);
    local.push(EXIT);
    // A new or idle flow: this CPU's queue, remembered with the time.
    let mut new = cpu_queue(cpus);
    new.extend([
        mov(R9, R0),
        store64(FP, VALUE, R0),
        call(KTIME_GET_NS),
        store64(FP, VALUE + 8, R0),
    ]);
    new.extend(load_map(R1, map_fd));
    new.extend([
        mov(R2, FP),
        add_imm(R2, KEY as i32),
        mov(R3, FP),
        add_imm(R3, VALUE as i32),
        mov_imm(R4, 0),
        call(MAP_UPDATE_ELEM),
        mov(R0, R9),
        EXIT,
    ]);
    // A known flow: its queue, unless it has been quiet too long.
    let known = [
        mov(R8, R0),
        call(KTIME_GET_NS),
        load64(R1, R8, 8),
        mov(R2, R0),
        sub(R2, R1),
        jsgt_imm(R2, IDLE_NS, 3),
        store64(R8, 8, R0),
        load32(R0, R8, 0),
        EXIT,
    ];
    // A jump from the prologue at `at` to the frame that is not a hashed
    // TCP segment (past the prologue's `PROLOGUE` instructions, the known
    // flow and the new one).
    const PROLOGUE: usize = 24;
    let to_local = |at: usize| (PROLOGUE - at - 1 + known.len() + new.len()) as i16;
    let mut p = vec![
        mov(R6, R1),
        load32(R7, R6, SKB_HASH),
        jeq_imm(R7, 0, to_local(2)),
        load32(R8, R6, SKB_PROTOCOL),
        mov_imm(R2, 9),
        jeq_imm(R8, IPV4, 2),
        mov_imm(R2, 6),
        jne_imm(R8, IPV6, to_local(7)),
        mov(R1, R6),
        mov(R3, FP),
        add_imm(R3, PROTO_BYTE as i32),
        mov_imm(R4, 1),
        mov_imm(R5, HDR_START_NET),
        call(SKB_LOAD_BYTES_RELATIVE),
        jne_imm(R0, 0, to_local(14)),
        load8(R1, FP, PROTO_BYTE),
        jne_imm(R1, TCP, to_local(16)),
    ];
    p.push(store32(FP, KEY, R7));
    p.extend(load_map(R1, map_fd));
    p.extend([mov(R2, FP), add_imm(R2, KEY as i32), call(MAP_LOOKUP_ELEM)]);
    p.push(jeq_imm(R0, 0, known.len() as i16));
    debug_assert_eq!(p.len(), PROLOGUE);
    p.extend(known);
    p.extend(new);
    p.extend(local);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a jump at `at` lands.
    fn target(p: &[Insn], at: usize) -> usize {
        (at as isize + 1 + p[at].off as isize) as usize
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_every_path_exits() {
        let p = program(&[2, 5], 7);
        let jumps = [0x15u8, 0x55, 0x65, 0x05];
        for (at, i) in p.iter().enumerate() {
            if jumps.contains(&i.code) {
                assert!(target(&p, at) < p.len(), "jump at {at}");
            }
        }
        assert_eq!(p.last(), Some(&EXIT));
    }

    #[test]
    fn the_branches_land_where_they_should() {
        let p = program(&[2, 5], 7);
        // No hash, not IP, no protocol byte, not TCP: to the last block,
        // which starts by asking for the CPU.
        let local = target(&p, 2);
        assert_eq!(p[local], call(GET_SMP_PROCESSOR_ID));
        assert_eq!(p.len() - local, 1 + 2 * 3 + 1);
        for at in [7, 14, 16] {
            assert_eq!(target(&p, at), local, "jump at {at}");
        }
        assert_eq!(p[16], jne_imm(R1, TCP, p[16].off));
        // IPv4 past the IPv6 check, to the read of the protocol byte.
        assert_eq!(target(&p, 5), 8);
        assert_eq!(p[8], mov(R1, R6));
        // Not in the map: past the known flow, to the new one.
        let miss = p
            .iter()
            .position(|i| *i == jeq_imm(R0, 0, 9))
            .expect("lookup check");
        let new = target(&p, miss);
        assert_eq!(p[new], call(GET_SMP_PROCESSOR_ID));
        assert_eq!(p[miss + 1], mov(R8, R0));
        // Idle too long: also to the new flow.
        let idle = p.iter().position(|i| i.code == 0x65).expect("idle check");
        assert_eq!(target(&p, idle), new);
        // Each CPU's match jumps past the others to what follows.
        let after = new + 1 + 2 * 3;
        assert_eq!(p[after], mov(R9, R0));
        assert_eq!(target(&p, new + 3), after);
        assert_eq!(target(&p, new + 6), after);
        assert_eq!(p[new + 1], jne_imm(R0, 2, 2));
        assert_eq!(p[new + 2], mov_imm(R0, 0));
        assert_eq!(p[new + 5], mov_imm(R0, 1));
    }
}
