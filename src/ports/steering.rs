//! Steering by CPU: a small eBPF program that picks, for each frame, a
//! queue, that is a worker pinned to a CPU. On a multiqueue TAP
//! (TUNSETSTEERINGEBPF) it puts the frames an app sends on the queue of the
//! worker pinned to the CPU the app sends from; on a NIC's group of
//! AF_PACKET sockets (PACKET_FANOUT_EBPF) it gives each received frame to
//! the socket of the worker on the CPU that received it. A flow keeps its
//! first queue while it is busy (`program`), so it stays in order. Served
//! on the sender's own CPU, as the kernel bridge serves it in the sender's
//! context, a frame needs no other CPU woken, and a reply the receiving
//! stack makes at once goes back before the app sleeps.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

mod program;

use program::{Insn, VALUE_SIZE};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
/// Flows remembered (least recently used first out), for all ports.
const FLOWS: u32 = 16_384;

/// The first fields of `union bpf_attr` for BPF_MAP_CREATE.
#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
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
    /// The flows' queues (the program holds it too).
    _flows: OwnedFd,
    queues: usize,
}

/// bpf(2) with `attr`; the descriptor it returns.
fn bpf<T>(cmd: libc::c_long, attr: &T, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) reads `attr` (and what it points to, alive for the
    // call), of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    let fd =
        cvt(fd as libc::c_int).map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
        let flows = bpf(
            BPF_MAP_CREATE,
            &MapCreate {
                map_type: BPF_MAP_TYPE_LRU_HASH,
                key_size: 4,
                value_size: VALUE_SIZE,
                max_entries: FLOWS,
                map_flags: 0,
            },
            "creating the steering program's flow map",
        )?;
        let insns: Vec<Insn> = program::program(cpus, flows.as_raw_fd());
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
        let prog = bpf(BPF_PROG_LOAD, &attr, "loading the steering program")?;
        Ok(CpuSteering {
            prog,
            _flows: flows,
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
        set_tap_program(tap_fd, self.prog.as_raw_fd())
    }
}

/// Takes any steering program off a TAP (one a persistent TAP kept from an
/// earlier run with pinned workers), so the kernel spreads flows by hash.
pub fn detach(tap_fd: &impl AsRawFd) -> io::Result<()> {
    set_tap_program(tap_fd, -1)
}

fn set_tap_program(tap_fd: &impl AsRawFd, prog: libc::c_int) -> io::Result<()> {
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
