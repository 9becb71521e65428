#!/usr/bin/env python3
"""An IP-only link between two namespaces, as a VPN tunnel or an LTE modem
gives: two TUN devices (no Ethernet, no MAC) whose packets this relays to
each other. Run in the first namespace; the second TUN is moved to the
namespace named on the command line. Prints "ready" once both exist.

usage: tun_link.py NEAR_TUN FAR_TUN FAR_NETNS
"""
import fcntl
import os
import select
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    near, far, far_ns = sys.argv[1:4]
    a = tun(near)
    b = tun(far)
    subprocess.check_call(["ip", "link", "set", far, "netns", far_ns])
    print("ready", flush=True)
    peer = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for fd in ready:
            try:
                pkt = os.read(fd, 65536)
                os.write(peer[fd], pkt)
            except OSError:
                # A device without an address or down drops what it gets.
                pass


if __name__ == "__main__":
    main()
