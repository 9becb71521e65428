#!/usr/bin/env python3
"""One TCP connection whose sender moves from CPU to CPU. `serve PORT`
accepts one connection, reads it to the end and prints "received N".
`send DST PORT MB CPU...` connects, then for each CPU pins itself there and
sends MB megabytes."""
import os
import socket
import sys


def serve(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept()
    n = 0
    while True:
        data = c.recv(1 << 16)
        if not data:
            break
        n += len(data)
    print("received", n, flush=True)


def send(dst, port, mb, cpus):
    s = socket.create_connection((dst, port), timeout=20)
    chunk = b"x" * (1 << 16)
    for cpu in cpus:
        os.sched_setaffinity(0, {cpu})
        for _ in range(mb * 16):
            s.sendall(chunk)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(c) for c in sys.argv[5:]])
