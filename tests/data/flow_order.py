#!/usr/bin/env python3
"""UDP flows with sequence numbers, to check that a switch keeps each flow's
order. `send DST PORT FLOWS COUNT` sends COUNT datagrams on each of FLOWS
source ports, round robin, as fast as it can. `recv PORT SECONDS` counts what
arrives for SECONDS after the first datagram (or until quiet for a second) and
prints "flows F received N reordered R"."""
import socket
import sys
import time


def send(dst, port, flows, count):
    socks = []
    for _ in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        socks.append(s)
    for seq in range(count):
        for i, s in enumerate(socks):
            msg = b"%d:%d:" % (i, seq) + b"x" * 32
            # A blocking socket waits while its buffer is full; a datagram
            # the kernel refuses outright is lost, as on a wire.
            try:
                s.sendto(msg, (dst, port))
            except OSError:
                pass


def recv(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # SO_RCVBUFFORCE, as root: room for a whole run (a datagram takes
        # about 1 KiB of buffer) while a busy machine delays this reader.
        s.setsockopt(socket.SOL_SOCKET, 33, 96 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    last = {}
    received = reordered = 0
    s.settimeout(30)
    end = None
    while end is None or time.monotonic() < end:
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            break
        if end is None:
            end = time.monotonic() + seconds
            s.settimeout(1)
        parts = data.split(b":")
        if len(parts) < 3:
            continue
        flow, seq = int(parts[0]), int(parts[1])
        received += 1
        if seq <= last.get(flow, -1):
            reordered += 1
        last[flow] = max(seq, last.get(flow, -1))
    print("flows %d received %d reordered %d" % (len(last), received, reordered), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        recv(int(sys.argv[2]), float(sys.argv[3]))
