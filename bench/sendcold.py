"""
What a loopback C{sendto} costs the sender when it is the first of a burst
after a sleep (cold caches, as for a server's first send per frame) and when
it follows another, with the receiving socket's reader asleep in C{recv}
(each burst wakes it: C{--mode sleeper}) or with nobody waiting (C{--mode
queue}, drained between bursts). CPU time of the sending thread.

    .venv/bin/python bench/sendcold.py --mode sleeper --bursts 200 --packets 4
"""

from __future__ import annotations

import argparse
import os
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("sleeper", "queue"), default="sleeper")
    ap.add_argument("--bursts", type=int, default=200)
    ap.add_argument("--packets", type=int, default=4, help="datagrams per burst (≥ 2)")
    ap.add_argument("--gap", type=float, default=0.033, help="s between bursts (a frame)")
    args = ap.parse_args()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    child = os.fork() if args.mode == "sleeper" else None
    if child == 0:
        while rx.recv(2048) != b"x":
            pass
        os._exit(0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address, data = rx.getsockname(), bytes(1100)
    first = rest = 0.0
    time.sleep(0.2)
    for _ in range(args.bursts):
        t0 = time.thread_time()
        tx.sendto(data, address)
        t1 = time.thread_time()
        for _ in range(args.packets - 1):
            tx.sendto(data, address)
        t2 = time.thread_time()
        first, rest = first + t1 - t0, rest + t2 - t1
        if child is None:
            try:
                for _ in range(args.packets):
                    rx.recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        time.sleep(args.gap)
    if child:
        tx.sendto(b"x", address)
        os.waitpid(child, 0)
    print(f"{args.mode}: first sendto of a burst {1e6 * first / args.bursts:.1f} µs, "
          f"the others {1e6 * rest / args.bursts / (args.packets - 1):.1f} µs "
          f"(load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
