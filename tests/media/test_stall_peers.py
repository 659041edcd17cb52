"""
A frozen aiortc player recovers (wcs/media/stall.py): real aiortc peers on
loopback, the player's client dropping every copy of a packet, as when a
NACK is answered and its answer lost too.
"""

import asyncio

from tests.media.peers import _isRtp, asyncTest, forwarding

SETTLE = 2.5  # s after the first frame: past the player's own keyframe interval (2 s)
SECOND_GAP = 1.0  # s after the hole: a new gap makes aiortc NACK it again (> the stall wait)


class HoleDropper:
    """
    In the player's client: RTP datagrams of a chosen sequence number are
    dropped, the original and every resend (no RTX is offered: resends come
    with the same number). L{dropNext} picks the next packet to come.
    """

    def __init__(self, pc):
        self.holes: set[int] = set()
        self.dropped = 0
        self._next = False
        ice = pc.getTransceivers()[0].receiver.transport.transport._connection
        receive = ice.data_received

        def dataReceived(data: bytes, component: int) -> None:
            if _isRtp(data):
                seq = data[2] << 8 | data[3]
                if self._next:
                    self._next = False
                    self.holes.add(seq)
                if seq in self.holes:
                    self.dropped += 1
                    return
            receive(data, component)
        ice.data_received = dataReceived

    def dropNext(self) -> None:
        self._next = True


async def _freeze(stallMs: int, watch: float):
    """
    Two holes 1 s apart that no resend fills: (the longest time without a
    decoded frame from the first hole on, or None if none came within
    C{watch} s; the player's subscription).
    """
    loop = asyncio.get_running_loop()
    async with forwarding(video="video/VP8", width=320, height=240,
                          media_video_codecs="VP8", media_player_stall=stallMs,
                          # A probe needs a half-full budget: 32 KiB takes
                          # this small stream longer than the test to save up.
                          media_retransmit_burst=8) \
            as (session, publisher, player):
        dropper = HoleDropper(player.pc)
        await asyncio.sleep(SETTLE)
        dropper.dropNext()
        holeAt = loop.time()
        await asyncio.sleep(SECOND_GAP)
        dropper.dropNext()
        await asyncio.sleep(watch - SECOND_GAP)
        [subscription] = player.session.subscriptions
        arrivals = player.arrivals["video"]
        before = [t for t in arrivals if t < holeAt]
        after = [t for t in arrivals if t >= holeAt]
        # Frames decoded from packets that came before the hole may still come
        # out just after it: the freeze is the longest gap from the hole on.
        times = before[-1:] + after
        gaps = [b - a for a, b in zip(times, times[1:])]
        gaps.append(loop.time() - times[-1])  # one going on at the end
        print(f"stall {stallMs} ms: holes {sorted(dropper.holes)} dropped {dropper.dropped} "
              f"longest freeze {max(gaps):.2f} s, stalls {subscription.stall and subscription.stall.stalls}, "
              f"nacks {subscription.nacksReceived}, resent {subscription.retransmitted}")
        return max(gaps), dropper, subscription


@asyncTest(timeout=60)
async def test_frozenPlayerRecovers():
    """
    The hole stays unfilled (every copy lost) and aiortc holds every later
    frame behind it; when its next NACK lists the hole again after two lost
    copies (our resend and the probe) and the stall wait, it drops to a
    keyframe: frames again well within a second of that NACK.
    """
    freeze, dropper, subscription = await _freeze(800, 4.0)
    assert dropper.dropped >= 4  # two holes, each resent at least once
    assert subscription.stall.stalls >= 1 and subscription.stall.probes >= 1
    assert freeze < SECOND_GAP + 1.0, freeze


@asyncTest(timeout=60)
async def test_frozenPlayerStaysFrozenWithoutTheRule():
    """The same with media_player_stall=0: still frozen seconds later."""
    freeze, dropper, subscription = await _freeze(0, 4.0)
    assert subscription.stall is None and dropper.dropped >= 4
    assert freeze >= 3.0, freeze
