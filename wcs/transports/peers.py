"""
Connection caps per remote address and in all, for the listeners that take
many small connections (WebSocket, HTTP).
"""

from __future__ import annotations

from collections import Counter

ADMIT = "admit"
REFUSE = "refuse"  # over a cap: answer with the reason, then close
DROP = "drop"  # far over: close at once, an explanation would cost too much


class PeerConnections:
    """
    Open connections counted per address and in all. A connection over a cap
    is still counted while it is open (it holds a socket), so that a flood
    from one address turns from L{REFUSE} to L{DROP} at twice the cap and
    the server never holds more than that for one address.

    @param perAddress: connections from one address; 0: no cap.
    @param total: connections in all; 0: no cap.
    """

    def __init__(self, perAddress: int, total: int = 0):
        self.perAddress = perAddress
        self.total = total
        self.open: Counter[str] = Counter()
        self.count = 0

    def connect(self, host: str) -> tuple[str, str | None]:
        """
        Count a new connection from C{host}: (L{ADMIT}, None), or
        (L{REFUSE} or L{DROP}, the reason). Every call needs its
        L{disconnect}.
        """
        self.open[host] += 1
        self.count += 1
        for cap, number, what in ((self.perAddress, self.open[host], "from your address"),
                                  (self.total, self.count, "on this server")):
            if cap and number > cap:
                reason = f"too many connections {what}: at most {cap}"
                return (REFUSE if number <= 2 * cap else DROP), reason
        return ADMIT, None

    def disconnect(self, host: str) -> None:
        self.count -= 1
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]
