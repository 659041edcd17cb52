"""
Rate limits: token buckets by key (an address, a login, a participant).

A bucket holds up to C{burst} tokens and refills at C{rate} per second; an
action takes one. Buckets live in a bounded map: the least recently used is
dropped first, so a flood of distinct keys costs bounded memory (a dropped
bucket starts full again, which errs on the side of the client).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

from wcs.config import Key, declare

declare(
    Key("rate_connections_per_address", "int", 20,
        "connection messages per second from one address (burst: twice that), with auth_required or rest_hook_url; 0: no limit"),
    Key("rate_joins_per_login", "int", 5,
        "room joins per second by one login (burst: twice that); 0: no limit"),
    Key("rate_chat_per_participant", "int", 20,
        "chat messages per second from one participant (burst: twice that); 0: no limit"),
    Key("rate_auth_failures_per_address", "int", 5,
        "refused tokens or hook denials at connection per address within a minute "
        "before that address is banned; 0: no ban"),
    Key("rate_auth_ban", "int", 60000, "ms an address stays banned after too many failures"),
)

TOO_MANY = "Too many requests"
MAX_KEYS = 10000


class Buckets:
    """One token bucket per key."""

    def __init__(self, clock, rate: float, burst: float, maxKeys: int = MAX_KEYS):
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.maxKeys = maxKeys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable) -> bool:
        """Take one token for C{key}; C{False} when its bucket is empty."""
        if self.rate <= 0:
            return True
        now = self.clock.seconds()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.maxKeys:
            self._buckets.popitem(last=False)
        return allowed

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)


class Bans:
    """
    Addresses banned for a while after too many failures: C{limit} failures
    within a minute (a bucket of C{limit} refilling over 60 s) ban for
    C{duration} seconds.
    """

    def __init__(self, clock, limit: int, duration: float, maxKeys: int = MAX_KEYS):
        self.clock = clock
        self.failures = Buckets(clock, limit / 60.0, limit, maxKeys) if limit else None
        self.duration = duration
        self.maxKeys = maxKeys
        self._until: OrderedDict[Hashable, float] = OrderedDict()

    def banned(self, key: Hashable) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if self.clock.seconds() >= until:
            del self._until[key]
            return False
        return True

    def failed(self, key: Hashable) -> bool:
        """Count a failure; C{True} when it bans C{key}."""
        if self.failures is None or self.failures.take(key):
            return False
        self.failures.forget(key)
        self._until[key] = self.clock.seconds() + self.duration
        if len(self._until) > self.maxKeys:
            self._until.popitem(last=False)
        return True
