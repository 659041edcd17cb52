"""
A player's keyframe requests, as its L{wcs.media.subscription.Subscription}
passes them to the track: limited per player, backing off while it keeps
asking, and held while packets it asked for are on their way.
"""

from __future__ import annotations


class KeyframeAsking:
    """
    Keyframes for one player (a mixin of C{Subscription}, which holds the
    state: C{keyframeAllowedAt}, C{keyframeBackoff}, C{keptAsking},
    C{_heldKeyframe}, C{repairingUntil}, and its track, clock, policy,
    stall watch and counters).
    """

    MAX_BACKOFF = 4  # times the player keyframe interval

    def askKeyframe(self, now: float) -> bool:
        """
        This player needs a keyframe: ask the track, unless it asked less
        than its interval ago (then it waits for the next keyframe anyone
        gets). False when not passed on.
        """
        if now < self.keyframeAllowedAt:
            self.keyframeRequestsLimited += 1
            self.keptAsking = True
            if self.stall is not None:
                self.stall.keyframeDenied(now)
            return False
        # Asking again as soon as allowed is "keeps asking": a narrow link,
        # which new keyframes do not help. A quiet interval resets it.
        quiet = now >= self.keyframeAllowedAt + self.policy.playerKeyframeInterval
        if quiet:
            self.keyframeBackoff = 1
        elif self.keptAsking:
            self.keyframeBackoff = min(self.keyframeBackoff * 2, self.MAX_BACKOFF)
        self.keptAsking = False
        self.keyframeAllowedAt = now + self.policy.playerKeyframeInterval * self.keyframeBackoff
        self.track.requestKeyframe()
        return True

    def _cancelHeld(self) -> None:
        call, self._heldKeyframe = self._heldKeyframe, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()

    def _releaseKeyframe(self, askedAt: float) -> None:
        self._heldKeyframe = None
        if self.track.lastKeyframe < askedAt:
            self.askKeyframe(self.clock.seconds())

    def keyframeRequested(self) -> None:
        """A PLI or FIR from the player."""
        self.keyframeRequestsReceived += 1
        now = self.clock.seconds()
        if now < self.repairingUntil:
            # Packets it asked for are on their way: they may repair the
            # picture without a keyframe for everyone.
            if self._heldKeyframe is None:
                self._heldKeyframe = self.clock.callLater(
                    self.repairingUntil - now, self._releaseKeyframe, now)
            return
        self.askKeyframe(now)
