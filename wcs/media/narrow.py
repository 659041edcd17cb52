"""
Players on a link narrower than their stream (C{player_narrow_link}).

With C{drop} such a player is served like any other: the budgets of
L{wcs.media.feedback} bound what it costs, and it skips to the keyframes the
others get (the lab's player behind 600 kbit/s of a 1 Mbit/s stream decoded
under 1 frame a second). With C{transcode} (the default), a L{NarrowWatch}
on each video player of a publisher's track notices a narrow link from the
player's own receiver reports (more than C{player_narrow_loss} percent of
what we sent it lost, beyond what the publisher's uplink lost, in each of
the last L{NarrowWatch.LOSSY} intervals: a burst of loss within one or two
is no narrow link) and moves it to one lower rendition of the stream:
decoded once and encoded at C{player_narrow_share} percent of the stream's
bitrate, or L{NarrowWatch.FIT} of what the player's link delivered if less,
same codec and resolution, shared by every narrow player of that stream (a
L{wcs.media.transcode.FrameTrack}, its codec work in the offload pool). The
others keep the publisher's packets and see no extra keyframe but the one
the new rendition's decoder starts from. A moved player whose reports
on the rendition stay clean (no more than C{player_narrow_loss} lost) for
C{player_narrow_hold} seconds goes back to the publisher's stream: a
burst of loss (a stalled server, a Wi-Fi hiccup) must not leave it on half
the bitrate for the rest of its session. Each later move doubles its hold
(up to L{NarrowWatch.MAX_HOLD}), so that a link that really is narrow is
tried again less and less often (each try floods it for a check or two). At
most C{player_narrow_renditions} renditions are made at once in a process,
and at most C{player_narrow_renditions_per_address} for one client address
(a rendition counts against the address of the player it was made for; the
players who join it later cost nothing): a client that reports false loss
on every stream it plays cannot take them all. Beyond, a narrow player
stays on the stream (as with C{drop}) and is moved when one is free.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.logger import Logger

from wcs.config import PARSERS, Key, declare, oneOf
from wcs.logs import LogLimiter
from wcs.media.track import IncomingTrack
from wcs.offload import THREADS

limited = LogLimiter(Logger())

POLICIES = ("drop", "transcode")


PARSERS.setdefault("narrowlink", oneOf(POLICIES))

declare(
    Key("player_narrow_link", "narrowlink", "transcode",
        "a WebRTC player whose link is narrower than its stream: transcode (gets one lower "
        "rendition of the stream, shared by all such players) or drop (skips to keyframes, "
        "within the retransmission budgets)"),
    # One per codec thread: a core is left to the forwarding.
    Key("player_narrow_renditions", "int", THREADS,
        "lower renditions (transcode) made at once in a server process, each a decoder and "
        "an encoder at work; beyond, a narrow player stays on the stream until one is free "
        "(default: one per core but one)"),
    Key("player_narrow_renditions_per_address", "int", 2,
        "lower renditions made for the players of one client address (a rendition counts "
        "against the address it was first made for; joining one made already is free); "
        "0: no limit per address"),
    Key("player_narrow_share", "int", 50,
        "percent of the stream's bitrate the lower rendition is encoded at (transcode)"),
    Key("player_narrow_pace", "int", 150,
        "percent of the lower rendition's bitrate its packets are paced at, so that a "
        "keyframe does not overflow the narrow link's queue (0: sent as encoded)"),
    Key("player_narrow_hold", "int", 60,
        "seconds of clean reports (no more than player_narrow_loss lost) after which a "
        "player moved to the lower rendition goes back to the publisher's stream; doubled "
        "at each later move of that player, up to 30 minutes; 0: a moved player stays"),
    Key("player_narrow_loss", "int", 10,
        "percent of its video a player reports lost (beyond the publisher's own loss), "
        "check after check, that makes its link narrow (transcode)"),
)


class RenditionRefused(Exception):
    """No lower rendition may be made now; the message names the limit."""


def moveSubscription(subscription, track, force: bool = True) -> None:
    """
    Serve C{subscription} from C{track} from now on: its numbering goes on
    (the player sees one stream) from the new track's next keyframe, which
    is asked for at once (C{force}: even within the track's keyframe
    interval). The numbering skips ahead: the narrow link left
    holes that the player would otherwise wait for behind the new keyframe
    (aiortc: 5-8 s, then the frames it held, late).
    """
    subscription.track.unsubscribe(subscription)
    subscription.restart(skip=True)
    subscription.track = track
    track.subscribe(subscription)
    track.requestKeyframe(force=force)


class NarrowWatch:
    """
    One video player of a publisher's track, checked every L{INTERVAL}:
    its reported loss against what we sent it and what the publisher lost,
    in each of the last L{LOSSY} intervals; once moved, whether its reports on
    the rendition stay clean for its hold (C{hold} seconds, doubled at each
    later move; 0: it stays moved and is no longer checked).
    C{lower(bitrate)} gives the lower rendition (made on first use) or
    raises L{RenditionRefused}.
    """

    log = Logger()
    INTERVAL = 2.0  # s: a receiver report or two from browsers and aiortc
    WINDOWS = 2  # intervals: the window of the bitrate and of the clean check
    # Intervals in a row each lossier than C{loss} that make a link narrow. A
    # healthy player losing 7 % at random (`mobile`) reads over 10 % in about
    # 3 % of 2 s intervals: two in a row moved one about once per half hour
    # (docs/networks.md); three in a row come about once a day. A narrow
    # link loses in each; its move comes one interval later.
    LOSSY = 3
    FIT = 0.75  # of the share of the stream the link delivered: the rendition's most
    MAX_HOLD = 1800.0  # s: the longest hold, however often a player was moved

    def __init__(self, clock, subscription, lower: Callable[[int], object], loss: float,
                 share: float, hold: float = 0.0, name: str | None = None):
        self.clock = clock
        self.subscription = subscription
        self.name = name or repr(subscription)  # the player, in the log
        self.incoming = subscription.track
        self.lower = lower
        self.loss = loss
        self.share = share
        self.hold = hold
        self.moved = False
        self.moves = 0  # to the rendition
        self.cleanSince: float | None = None
        self.history = self._fresh(self._counts())
        self._call = clock.callLater(self.INTERVAL, self._check)

    def _fresh(self, counts) -> deque:
        return deque([counts], maxlen=max(self.WINDOWS, self.LOSSY) + 1)

    def _counts(self) -> tuple[int, int, int, int]:
        s, track = self.subscription, self.incoming
        # Numbers skipped at a drop to a keyframe are reported lost, not lost.
        return s.packets, s.reportedLost - s.skipped, track.lost(), track.octets

    def holdFor(self) -> float:
        """Seconds of clean reports before going back: the hold, doubled per later move."""
        return min(self.hold * 2 ** max(self.moves - 1, 0), max(self.hold, self.MAX_HOLD))

    def _check(self) -> None:
        self._call = None
        self.history.append(self._counts())
        if self.incoming.ended:
            return
        if not self.moved:
            self._checkNarrow()
        elif self._backOnStream():
            # Watched afresh from before the move: its skip (counted at
            # once) and the player's reports of it (later) in one window.
            self.history = self._fresh(self.history[-1])
        if not self.moved or self.hold > 0:
            self._call = self.clock.callLater(self.INTERVAL, self._check)

    def _window(self) -> tuple[int, int, int] | None:
        """
        Over the whole window (receiver reports come about once a second,
        and their cumulative loss goes down again when our resends land):
        packets sent, lost beyond the publisher's own loss, the stream's
        bytes; None before a whole window.
        """
        if len(self.history) <= self.WINDOWS:
            return None
        return _between(self.history[-1 - self.WINDOWS], self.history[-1])

    def _eachIntervalLossy(self) -> bool:
        """
        Whether the player lost more than C{loss} in each of the last
        L{LOSSY} intervals, not only over a window: a healthy `mobile`
        player (5 % random loss) was moved when a burst in one interval
        made its window 10.3 % (docs/networks.md); a narrow link loses in
        each.
        """
        history = list(self.history)[-1 - self.LOSSY:]
        if len(history) <= self.LOSSY:
            return False
        for before, after in zip(history, history[1:]):
            sent, lost, _ = _between(before, after)
            if sent <= 0 or lost <= self.loss * sent:
                return False
        return True

    def _checkNarrow(self) -> None:
        window = self._window()
        # Lossy in each interval is lossy over the whole window too.
        if window is None or not self._eachIntervalLossy():
            return
        sent, lost, octets = window
        # The publisher's packets came in a burst after a silence within the
        # window (reports lag a second): every player's link got it at once.
        if self.clock.seconds() - self.incoming.lastSilence < self.INTERVAL * (self.WINDOWS + 1):
            limited.warn("burst", "{player}: {lost} of {sent} packets lost after the stream "
                         "came in a burst (our stall or the publisher's pause): not judged "
                         "narrow", player=self.name, lost=lost, sent=sent)
            return
        # At most FIT of what the link delivered: the rest is for resends,
        # RTCP and the bursts of a variable bitrate (at 90% of the link
        # the queue overflows at every keyframe).
        delivered = 1 - lost / sent
        share = min(self.share, self.FIT * delivered)
        bitrate = int(octets * 8 / (self.INTERVAL * self.WINDOWS) * share)
        try:
            track = self.lower(bitrate)
        except RenditionRefused as refused:
            # Checked again: a rendition may be free later.
            limited.warn("renditions", "{player}: narrow link ({lost} of {sent} packets "
                         "lost), but {why}: it stays on the stream",
                         player=self.name, lost=lost, sent=sent, why=refused)
            return
        self.moved, self.cleanSince = True, None
        self.moves += 1
        self.log.info("{player}: narrow link ({lost} of {sent} packets lost), moved to a "
                      "rendition at {kbps} kbit/s (back after {hold:.0f} s clean)",
                      player=self.name, lost=lost, sent=sent, kbps=bitrate // 1000,
                      hold=self.holdFor())
        moveSubscription(self.subscription, track)

    def _backOnStream(self) -> bool:
        """
        On the rendition: whether its last window was clean (no more lost
        than C{loss}: not narrow there); after the hold clean, back to the
        publisher's stream (its keyframe within the stream's interval: one
        more for everyone). Whether the link carries the whole stream only
        a try tells: on a narrow link the rendition is clean too.
        """
        window, now = self._window(), self.clock.seconds()
        if window is None or window[1] > self.loss * max(window[0], 0):
            self.cleanSince = None
            return False
        if self.cleanSince is None:
            self.cleanSince = now - self.INTERVAL
        if now - self.cleanSince < self.holdFor():
            return False
        self.log.info("{player}: clean on the rendition for {s:.0f} s, back on the stream",
                      player=self.name, s=now - self.cleanSince)
        self.moved, self.cleanSince = False, None
        moveSubscription(self.subscription, self.incoming, force=False)
        return True

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()


def _between(before, after) -> tuple[int, int, int]:
    """
    Between two of NarrowWatch's counts: packets sent, lost beyond the
    publisher's own loss, the stream's bytes.
    """
    sent, lost, upstreamLost, octets = (a - b for a, b in zip(after, before))
    return sent, lost - max(0, upstreamLost), octets


def watchPlayer(engine, source, subscriptions, address: str | None,
                name: str | None = None) -> list[NarrowWatch]:
    """
    The watches of a play session's video subscriptions, per the engine's
    policy; C{address} is the player's client address, C{name} its session
    in the log.
    """
    settings = engine.settings
    if settings.player_narrow_link != "transcode":
        return []
    watches = []
    for subscription in subscriptions:
        track = subscription.track
        if track.kind != "video" or not isinstance(track, IncomingTrack):
            continue  # only a publisher's own track is forwarded as it comes

        def lower(bitrate, track=track):
            return engine.lowerTrackFor(source, track.kind, track.codec, bitrate, address)
        watches.append(NarrowWatch(engine.clock, subscription, lower,
                                   settings.player_narrow_loss / 100,
                                   min(max(settings.player_narrow_share, 1), 100) / 100,
                                   max(settings.player_narrow_hold, 0), name))
    return watches
