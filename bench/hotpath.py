"""
CPU of the forwarding hot path alone, in-process: one IncomingTrack, N
subscriptions on a transport that accepts every packet without sending it
(no SRTP, no socket), H.264 packets of ~1.2 kB. Prints microseconds per
incoming packet, the best of several rounds. Run against another checkout
with --root (to compare, say, main without the metrics counters):

    .venv/bin/python bench/hotpath.py [--root DIR] [--players 10] [--packets 50000]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path


class NullTransport:
    connected = True
    rtcpSsrc = 1

    def __init__(self):
        self.senders = {}

    def sendRtp(self, data: bytes) -> bool:
        return True

    def sendRtpParts(self, header: bytes, payload: bytes) -> bool:
        return True

    def sendRtcp(self, data: bytes) -> None:
        pass

    def readingChanged(self) -> None:
        pass


def packets(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        seq, ts = i & 0xFFFF, (i // 4) * 3000
        header = struct.pack("!BBHII", 0x80, (0x80 if i % 4 == 3 else 0) | 102, seq, ts, 1234)
        nal = b"\x65" if i % 120 == 0 else b"\x41"  # an IDR now and then
        out.append(header + nal + bytes(1200))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--players", type=int, default=10)
    parser.add_argument("--packets", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    from twisted.internet.task import Clock
    from wcs.media.track import IncomingTrack, Subscription

    data = packets(args.packets)
    best = float("inf")
    for _ in range(args.rounds):
        transport = NullTransport()
        track = IncomingTrack(transport, "video", "H264", 90000, 102, 1234, Clock())
        for n in range(args.players):
            Subscription(track, transport, 5000 + n, 102).attach()
        began = time.process_time()
        receive = track.rtpReceived
        for packet in data:
            receive(packet)
        best = min(best, (time.process_time() - began) / len(data))
    print(f"{best * 1e6:.2f} us per incoming packet, {args.players} players "
          f"({sys.modules['wcs'].__file__})")


if __name__ == "__main__":
    main()
