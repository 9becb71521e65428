//! Steering by CPU: a tiny eBPF program that picks, for each frame, the
//! worker pinned to the CPU it is handled on. On a multiqueue TAP
//! (TUNSETSTEERINGEBPF) it puts each frame an app sends on the queue of the
//! worker pinned to the CPU the app sends from; on a NIC's group of
//! AF_PACKET sockets (PACKET_FANOUT_EBPF) it gives each received frame to
//! the socket of the worker on the CPU that received it. The frame is then served
//! on that CPU by a worker that preempts the app at once, the way the kernel
//! bridge forwards in the sender's own context: no other CPU is woken, and a
//! reply the receiving stack makes at once goes back before the app sleeps.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: 0,
        off,
        imm,
    }
}

/// `call imm` (the result in r0).
const CALL: u8 = 0x85;
/// `if r0 != imm goto +off`.
const JNE_R0: u8 = 0x55;
/// `r0 = imm`.
const MOV_R0: u8 = 0xb7;
const EXIT: u8 = 0x95;

/// The program: r0 = this CPU; the queue of the worker pinned to it, or
/// the CPU itself (the TAP takes it modulo its queues) when no worker is.
fn program(cpus: &[usize]) -> Vec<Insn> {
    let mut p = vec![insn(CALL, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID)];
    for (queue, &cpu) in cpus.iter().enumerate() {
        p.push(insn(JNE_R0, 2, cpu as i32));
        p.push(insn(MOV_R0, 0, queue as i32));
        p.push(insn(EXIT, 0, 0));
    }
    p.push(insn(EXIT, 0, 0));
    p
}

/// The first fields of `union bpf_attr` for BPF_PROG_LOAD; the kernel takes
/// the rest as zero.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
}

/// A loaded steering program, attachable to any number of TAPs.
pub struct CpuSteering {
    prog: OwnedFd,
    queues: usize,
}

impl CpuSteering {
    /// Loads the program for workers pinned to `cpus` (worker i, queue i, on
    /// `cpus[i]`). Needs CAP_BPF or CAP_SYS_ADMIN.
    pub fn load(cpus: &[usize]) -> io::Result<CpuSteering> {
        if cpus.iter().any(|&c| c > i32::MAX as usize) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "CPU number too large",
            ));
        }
        let insns = program(cpus);
        let license = c"GPL";
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
        };
        // SAFETY: bpf(2) reads `attr` and the instructions and license it
        // points to, all alive for the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        };
        let fd = cvt(fd as libc::c_int)
            .map_err(|e| io::Error::new(e.kind(), format!("loading the steering program: {e}")))?;
        // SAFETY: the kernel just gave us this descriptor.
        Ok(CpuSteering {
            prog: unsafe { OwnedFd::from_raw_fd(fd) },
            queues: cpus.len(),
        })
    }

    /// How many queues (workers) it steers to.
    pub fn queues(&self) -> usize {
        self.queues
    }

    /// The loaded program, for a packet socket's fanout group.
    pub fn prog_fd(&self) -> RawFd {
        self.prog.as_raw_fd()
    }

    /// Steers the TAP behind `tap_fd` (any of its queues) with the program.
    pub fn attach(&self, tap_fd: &impl AsRawFd) -> io::Result<()> {
        let prog: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: TUNSETSTEERINGEBPF takes a pointer to the program's fd.
        cvt(unsafe {
            libc::ioctl(
                tap_fd.as_raw_fd(),
                TUNSETSTEERINGEBPF as _,
                &prog as *const libc::c_int,
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_with_a_worker_maps_to_its_queue_and_any_other_cpu_falls_through() {
        let p = program(&[2, 5]);
        assert_eq!(p.len(), 1 + 2 * 3 + 1);
        assert_eq!(p[0], insn(CALL, 0, BPF_FUNC_GET_SMP_PROCESSOR_ID));
        assert_eq!(
            p[1..4],
            [insn(JNE_R0, 2, 2), insn(MOV_R0, 0, 0), insn(EXIT, 0, 0)]
        );
        assert_eq!(
            p[4..7],
            [insn(JNE_R0, 2, 5), insn(MOV_R0, 0, 1), insn(EXIT, 0, 0)]
        );
        assert_eq!(p[7], insn(EXIT, 0, 0));
    }
}
