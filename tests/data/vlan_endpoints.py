#!/usr/bin/env python3
"""VLAN endpoints in userspace, for kernels without 802.1Q.

    vlan_endpoints.py PARENT VID:TAPNAME [VID:TAPNAME ...]

Makes one TAP per VLAN in the calling namespace and relays between each TAP
and PARENT: frames that arrive on PARENT tagged with VID go to TAPNAME
untagged; frames the kernel sends out of TAPNAME go out of PARENT tagged
with VID. Each TAP takes PARENT's MAC, as a kernel VLAN device does. Untagged frames stay with PARENT's own IP stack (VLAN 1), which
ignores tagged ones. The kernel hands received tags over as auxdata, so
this reads them from there, as libpcap does. Prints "ready" when the TAPs
exist; stops on SIGTERM.
"""

import fcntl
import os
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TUNSETIFF = 0x400454CA
SIOCSIFHWADDR = 0x8924
ARPHRD_ETHER = 1
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
AUX = struct.Struct("=IIIHHHH")


def open_tap(name, mac):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFHWADDR, struct.pack("16sH14s", name.encode(), ARPHRD_ETHER, mac))
    return fd


def vlan_of(ancdata):
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUX.size:
            status, _, _, _, _, tci, _ = AUX.unpack(data[: AUX.size])
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0x0FFF
    return None


def main():
    parent = sys.argv[1]
    with open(f"/sys/class/net/{parent}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    taps = {}
    for spec in sys.argv[2:]:
        vid, name = spec.split(":", 1)
        taps[int(vid)] = (name, open_tap(name, mac))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((parent, 0))
    sock.setblocking(False)
    by_fd = {fd: vid for vid, (_, fd) in taps.items()}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sock] + list(by_fd), [], [])
        for r in ready:
            if r is sock:
                try:
                    frame, anc, _, addr = sock.recvmsg(65536, socket.CMSG_SPACE(AUX.size))
                except BlockingIOError:
                    continue
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                vid = vlan_of(anc)
                if vid is None and frame[12:14] == b"\x81\x00":
                    vid = int.from_bytes(frame[14:16], "big") & 0x0FFF
                    frame = frame[:12] + frame[16:]
                if vid in taps:
                    try:
                        os.write(taps[vid][1], frame)
                    except OSError:
                        pass
            else:
                try:
                    frame = os.read(r, 65536)
                except BlockingIOError:
                    continue
                tag = b"\x81\x00" + by_fd[r].to_bytes(2, "big")
                try:
                    sock.send(frame[:12] + tag + frame[12:])
                except OSError:
                    pass


if __name__ == "__main__":
    main()
