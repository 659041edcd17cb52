"""
What one offer and one client may make the engine do before ICE.

L{checkOffer} reads an offer's lines once, before aiortc parses it: aiortc's
parser is quadratic in some attributes (each C{a=ssrc} looks up the SSRCs
seen so far, each C{a=fmtp} the codecs, each C{a=rtcp-fb:*} is copied to
every codec, the session's fingerprints to every m-line), so their counts
are bounded first. Candidates (ignored: the peer is learned from its
checks), extmaps and fmtp values are parsed in linear time and need no bound
of their own beyond the signalling message size.

L{Quota} hands the media port range out fairly: sessions per client address
and in all, and the ports (sockets, closing ones included) one connection
and one address may hold, as a share of the range.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wcs.errors import TOO_MANY, UNAVAILABLE, StreamError

# Attributes bounded together by media_max_sdp_attributes.
_COUNTED = ("ssrc", "ssrc-group", "fingerprint", "group")


def checkOffer(text: str, settings) -> None:
    """
    Refuse an offer whose parse would cost more than its size: more than
    C{media_max_offer_mlines} m-lines, C{media_max_codecs} rtpmap or fmtp
    lines, C{media_max_feedback} rtcp-fb entries (a C{*} line is one entry
    per codec of its m-line), or C{media_max_sdp_attributes} lines of any of
    C{a=ssrc}, C{a=ssrc-group}, C{a=fingerprint}, C{a=group}.

    @raise StreamError: C{Invalid SDP offer: ...} naming the limit.
    """
    mlines = 0
    counts: Counter[str] = Counter()
    feedback = 0
    payloadTypes: Counter[str] = Counter()  # of the current m-line
    pending: list[str] = []  # rtcp-fb payload types of the current m-line

    def closeSection() -> int:
        # aiortc attaches each rtcp-fb line to every codec it names.
        codecs = sum(payloadTypes.values())
        total = sum(codecs if pt == "*" else payloadTypes[pt] for pt in pending)
        payloadTypes.clear()
        pending.clear()
        return total

    for line in text.splitlines():
        if line.startswith("m="):
            feedback += closeSection()
            mlines += 1
            _bound(mlines, settings.media_max_offer_mlines, "m-lines")
            continue
        if not line.startswith("a="):
            continue
        attr, _, value = line[2:].partition(":")
        if attr == "rtpmap" or attr == "fmtp":
            counts[attr] += 1
            _bound(counts[attr], settings.media_max_codecs, f"a={attr} lines")
            if attr == "rtpmap":
                payloadTypes[value.split(" ", 1)[0]] += 1
        elif attr == "rtcp-fb":
            pending.append(value.split(" ", 1)[0])
            _bound(len(pending), settings.media_max_feedback, "a=rtcp-fb entries")
        elif attr in _COUNTED:
            counts[attr] += 1
            _bound(counts[attr], settings.media_max_sdp_attributes, f"a={attr} lines")
    feedback += closeSection()
    _bound(feedback, settings.media_max_feedback, "a=rtcp-fb entries")


def _bound(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise StreamError(f"Invalid SDP offer: more than {limit} {what}")


@dataclass
class _Claim:
    connection: object
    address: str | None
    ports: int


class Quota:
    """
    Media sessions and ports held, per connection, per client address and in
    all. A session's claim is made before any socket is bound and dropped
    when its sockets are closed, not when it stops: ports of a session still
    closing are not free yet.

    @param rangeSize: the number of ports of the media range; 0 when any
        port will do (then only session counts are bounded).
    @param socketsPerTransport: sockets one transport binds (one per host
        address): the least share, so that a connection can always have one
        transport.
    """

    def __init__(self, settings, rangeSize: int, socketsPerTransport: int):
        self.settings = settings
        self.rangeSize = rangeSize
        self.least = socketsPerTransport
        self.claims: dict[object, _Claim] = {}  # session -> claim
        self.connectionPorts: Counter[object] = Counter()
        self.addressPorts: Counter[str | None] = Counter()
        self.addressSessions: Counter[str | None] = Counter()

    def share(self, percent: int) -> int | None:
        """Ports in C{percent} of the range; None: unbounded (any port)."""
        if not self.rangeSize:
            return None
        return max(self.least, self.rangeSize * percent // 100)

    def claim(self, session, connection, address: str | None, ports: int) -> None:
        """
        Count C{session}'s C{ports}, or refuse it.

        @raise StreamError: with a message for the client naming the limit.
        """
        settings = self.settings
        # 0 is "no limit", as for the other connection and session limits.
        if 0 < settings.media_max_sessions <= len(self.claims):
            raise StreamError(
                f"Server media capacity reached: at most {settings.media_max_sessions} sessions",
                code=UNAVAILABLE)
        if address is not None and \
                0 < settings.media_max_sessions_per_address <= self.addressSessions[address]:
            raise StreamError(f"Too many media sessions from this address: at most "
                              f"{settings.media_max_sessions_per_address}", code=TOO_MANY)
        limit = self.share(settings.media_port_share_connection)
        if limit is not None and self.connectionPorts[connection] + ports > limit:
            raise StreamError(f"Media port share of this connection used up: "
                              f"at most {limit} ports", code=TOO_MANY)
        limit = self.share(settings.media_port_share_address)
        if address is not None and limit is not None and \
                self.addressPorts[address] + ports > limit:
            raise StreamError(f"Media port share of this address used up: "
                              f"at most {limit} ports", code=TOO_MANY)
        self.claims[session] = _Claim(connection, address, ports)
        self.connectionPorts[connection] += ports
        self.addressPorts[address] += ports
        self.addressSessions[address] += 1

    def release(self, session) -> None:
        """C{session}'s sockets are closed. Harmless for a session never counted."""
        claim = self.claims.pop(session, None)
        if claim is None:
            return
        _decrement(self.connectionPorts, claim.connection, claim.ports)
        _decrement(self.addressPorts, claim.address, claim.ports)
        _decrement(self.addressSessions, claim.address, 1)


def _decrement(counter: Counter, key, amount: int) -> None:
    # Keys of gone clients must not pile up.
    counter[key] -= amount
    if counter[key] <= 0:
        del counter[key]
