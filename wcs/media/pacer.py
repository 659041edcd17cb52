"""
Pacing a lower rendition's packets (L{wcs.media.narrow}).

An encoder hands over a whole picture at once; a keyframe of a 500 kbit/s
rendition is 10-30 KB, sent in one burst. The players of that rendition sit
behind a narrow link by definition, whose queue (a router's, the lab's 200
ms) drops the tail of such a burst: holes in the keyframe that every later
frame waits behind (aiortc holds them up to 512 packets, seconds at this
rate) until resends, which join the same queue, repair them. A L{Pacer}
lets packets go at most at C{factor} times the rendition's bitrate, so a
keyframe takes a few frame intervals instead of arriving at once.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.logger import Logger


class Pacer:
    """
    C{send(*item)} for each L{push}ed item, in order, no faster than
    C{rate} bytes a second on average (a packet goes when the previous
    ones' time is spent; one goes at once when the pacer is idle). More than
    L{MAX_BACKLOG} seconds queued is sent at once: the rendition then makes
    more than its rate, and waiting would only add delay.
    """

    log = Logger()
    MAX_BACKLOG = 1.0  # s of packets at the pacing rate

    def __init__(self, clock, rate: float, send: Callable[..., None]):
        self.clock = clock
        self.rate = float(rate)
        self.send = send
        self.queue: deque[tuple[int, tuple]] = deque()
        self.queued = 0  # bytes
        self.freeAt = float("-inf")  # when the link we pace for is idle again
        self._call = None
        self.flushed = 0  # backlogs sent at once (a counter, docs/media.md)

    def push(self, size: int, *item) -> None:
        self.queue.append((size, item))
        self.queued += size
        if self.queued > self.rate * self.MAX_BACKLOG:
            self.flushed += 1
            self._cancel()
            self.freeAt = float("-inf")
            while self.queue:
                self._sendNext(self.clock.seconds())
            return
        if self._call is None:
            self._drain()

    def _sendNext(self, now: float) -> None:
        size, item = self.queue.popleft()
        self.queued -= size
        self.freeAt = max(self.freeAt, now) + size / self.rate
        self.send(*item)

    def _drain(self) -> None:
        self._call = None
        now = self.clock.seconds()
        while self.queue and self.freeAt <= now:
            self._sendNext(now)
        if self.queue:
            self._call = self.clock.callLater(self.freeAt - now, self._drain)

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def stop(self) -> None:
        self._cancel()
        self.queue.clear()
        self.queued = 0
