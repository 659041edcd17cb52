"""
Headless Chromium players of Janus's VideoRoom in the network lab: the
L{tests.netlab.chromium.ChromiumRoomRun} of wcs, with a page of its own
(janus-player.html: Janus's WebSocket API, since the wcs SDK cannot talk
to Janus) and the same measuring script, namespaces and figures.

Why Janus needs one more route. Janus's ICE sockets (libnice, confined to
the lab's veth `lab0` by C{ice_enforce_list}, where 127.0.0.1 lives) send
as if bound to `lab0`: the kernel's route lookup for them only takes routes
through `lab0`. The player's route (C{127.0.2.N/32 dev pcN}) is skipped and
the lab's C{local 127.0.0.0/8 dev lab0} matches, so Janus's answers to the
player's connectivity checks were delivered locally, on `lo`, to nobody:
Janus received every check and answered each (its libnice log), `pcN` sent
none of it out, and ICE failed both ways. aiortc players, in the lab's own
namespace, have their addresses on that same local route and are reached.
So each player's address also gets a route through `lab0` (a higher metric,
taken only by lookups bound to `lab0`) with the MAC of `lab0`'s peer
`lab0p` as a permanent neighbour; `lab0p` forwards what it receives to the
player's own route (forwarding on, and 127/8 with a local source accepted
there). The packet was queued once already, in OUTPUT, as the player's
downlink; forwarding passes no queued chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.netlab.chromium import ChromiumPlayer, ChromiumRoomRun, inLab
from tests.netlab.impairer import IFACE
from tests.netlab.janus import PORT

PAGE = (Path(__file__).parent / "janus-player.html").read_bytes()
# Playwright serves the page; its origin is Janus's own (nothing is fetched from it).
ORIGIN = f"http://127.0.0.1:{PORT}"
PEER = IFACE + "p"
METRIC = "10"  # above the player's own route (metric 0), which unbound lookups take


def routeThroughLab0(lab, address: str) -> None:
    """Make C{address} (a player behind its veth) reachable by sockets bound to C{lab0}."""
    inLab(lab, "sysctl", "-qw", "net.ipv4.ip_forward=1", f"net.ipv4.conf.{PEER}.forwarding=1",
          f"net.ipv4.conf.{PEER}.route_localnet=1", f"net.ipv4.conf.{PEER}.accept_local=1",
          f"net.ipv4.conf.{PEER}.rp_filter=0")
    mac = json.loads(inLab(lab, "ip", "-j", "link", "show", PEER))[0]["address"]
    inLab(lab, "ip", "route", "replace", f"{address}/32", "dev", IFACE, "table", "local",
          "metric", METRIC)
    inLab(lab, "ip", "neigh", "replace", address, "lladdr", mac, "dev", IFACE, "nud", "permanent")


class JanusChromiumPlayer(ChromiumPlayer):
    def __init__(self, lab, index: int):
        super().__init__(lab, index)
        try:
            routeThroughLab0(lab, self.net.address)
        except BaseException:
            self.net.close()
            raise


@dataclass
class JanusChromiumRoomRun(ChromiumRoomRun):
    """C{room} is a L{tests.netlab.janus.JanusRoom}; its publisher is the aiortc one."""

    def newPlayer(self, lab, index: int) -> ChromiumPlayer:
        return JanusChromiumPlayer(lab, index)

    def pageFor(self, room, index: int) -> tuple[str, bytes, str]:
        return ORIGIN, PAGE, f"server={room.server.wsURL}&room={room.ROOM}&feed={room.feed}"
