"""
When a node may call another gone (docs/cluster.md, "Failure behaviour").

A node is gone when its heartbeat key has been missing at two checks at
least a heartbeat apart, or came back under another incarnation (a
restart). A missing key proves nothing while Redis itself lost the keys:
restarted empty, paused (C{kill -STOP}, a slow disk) past the TTL, or out
of reach of every node for a while. So the checks are held for a grace
after this node's own heartbeat failed or found its own key gone: the
others need that long to beat again. Redis away for any length of time is
survived this way; only a node that stays silent for the grace after
Redis is back is given up.
"""

from __future__ import annotations

GRACE_TTLS = 2  # the grace, in node TTLs: a TTL for every node to beat again, and as much margin


class Liveness:
    def __init__(self, clock, ttl: float, interval: float):
        """
        @param ttl: seconds a node's key lives after its heartbeat.
        @param interval: seconds between heartbeats.
        """
        self.clock = clock
        self.ttl = ttl
        self.interval = interval
        self.live = False  # the last heartbeat reached Redis and found this node's key
        self.since = 0.0  # when peers' keys became evidence again
        # node -> when its key was first seen missing (in a row).
        self.missing: dict[str, float] = {}

    def beaten(self, kept: bool) -> bool:
        """
        A heartbeat reached Redis; C{kept}: this node's key was still there.

        @return: True when this node was not live before (say so once).
        """
        wasLive = self.live
        if not (wasLive and kept):
            # Back from an outage, or Redis lost this node's key (and so,
            # maybe, everyone's): what was seen missing before proves nothing.
            self.since = self.clock.seconds()
            self.missing.clear()
        self.live = True
        return not wasLive

    def failed(self) -> bool:
        """A heartbeat failed. @return: True when this node was live before."""
        wasLive, self.live = self.live, False
        return wasLive

    def judging(self) -> bool:
        """Whether the other nodes' keys say anything now."""
        return self.live and self.clock.seconds() - self.since >= GRACE_TTLS * self.ttl

    def judge(self, incarnations: dict[str, str | None], known: dict[str, str]) -> list[str]:
        """
        @param incarnations: {node: the incarnation in its key, None: no key}.
        @param known: {node: the incarnation first heard from it}.
        @return: the nodes gone.
        """
        now = self.clock.seconds()
        gone = []
        for node, incarnation in incarnations.items():
            expected = known.get(node)
            if incarnation is not None and (expected is None or incarnation == expected):
                self.missing.pop(node, None)
                continue
            if incarnation is None:
                first = self.missing.setdefault(node, now)
                # Two checks a heartbeat apart (by the clock: checks held up
                # by a slow Redis or a late loop may come close together).
                if now - first < self.interval * 0.9:
                    continue
            self.missing.pop(node, None)
            gone.append(node)
        return gone
