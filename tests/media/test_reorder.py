"""
The player leg's reordering allowance (wcs/media/reorder.py) through a real
L{Subscription}, on an injected clock.
"""

from dataclasses import replace

from tests.media.test_feedback import SIZE, _player, _seqs
from tests.media.test_rtp import PLAIN
from wcs.media.feedback import FeedbackPolicy
from wcs.media.subscription import Subscription


# Resends after the wait go once: what a test of the wait itself counts
# (the second copies of what waited, or was NACKed late, have their own tests).
ONCE = replace(PLAIN, repeatWaited=False, repeatOverdue=False)


def _sent(track, count: int) -> None:
    for i in range(count):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)


def _pressed(subscription):
    """Its budget without room to spare: first NACKs are held (not with a full bucket)."""
    subscription.hold.roomy = lambda answering: False
    return subscription


def _markEager(hold):
    """Read as eager: as many re-askings as it takes, and no NACK besides."""
    hold.reasked = hold.EAGER_AFTER
    hold.eager = True


def _eagerPlayer(count: int):
    """A player read as eager, sent C{count} packets (their numbers), its wire cleared."""
    track, wire, subscription = _player()
    _pressed(subscription)
    _markEager(subscription.hold)
    _sent(track, count)
    seqs = _seqs(wire)
    wire.sent.clear()
    return track, wire, subscription, seqs


def test_eagerPlayerHeldUntilItsPacketsCouldHaveCome():
    """
    A player that lists every still-missing packet in each NACK (aiortc) is
    recognised by its re-asking within half a round trip; from then on a
    packet it lists is resent only when it is still missing after the
    wait, and a packet left out of a later list meanwhile (it came by
    itself) is not resent at all and is a sample of the wait. (Without the
    second copies of what waited or was NACKed late: their own tests below.)
    """
    track, wire, subscription = _player(policy=ONCE)
    _pressed(subscription)
    clock = track.clock
    _sent(track, 60)  # all near the newest (far behind, wcs.media.crossing has a say)
    seqs = _seqs(wire)
    wire.sent.clear()
    hold = subscription.hold
    # Asked four times 10 ms apart (three re-askings): answered as before meanwhile.
    for _ in range(4):
        subscription.nackReceived([seqs[5]])
        clock.advance(0.01)
    assert hold.eager and _seqs(wire) == [seqs[5]]
    wire.sent.clear()
    # Nothing seen late yet: answered at once, but still listed 30 ms later
    # and left out of the list after (sooner than a round trip) it came by
    # itself, at least 30 ms late: the wait grows.
    assert hold.wait == 0
    subscription.nackReceived([seqs[10]])
    assert _seqs(wire) == [seqs[10]] and hold.heldPackets == 0
    clock.advance(0.03)
    subscription.nackReceived([seqs[10]])
    clock.advance(0.01)
    subscription.nackReceived([])
    assert hold.reordered == 1 and abs(hold.wait - 0.045) < 1e-9
    wire.sent.clear()

    late, lost = seqs[20], seqs[21]
    subscription.nackReceived([late, lost])  # both missing at the player now
    assert wire.sent == [] and hold.heldPackets == 2
    clock.advance(0.03)
    subscription.nackReceived([late, lost])  # still missing
    clock.advance(0.005)
    subscription.nackReceived([lost, seqs[30]])  # `late` arrived; a new gap
    assert wire.sent == [] and hold.reordered == 2
    assert abs(hold.late - 0.03) < 1e-9 and abs(hold.wait - 0.045) < 1e-9
    clock.advance(0.025)  # 60 ms since `lost` was first listed: past the wait
    assert _seqs(wire) == [lost] and subscription.retransmitted == 3
    clock.advance(0.04)  # seqs[30] is due too, listed again or not
    assert _seqs(wire) == [lost, seqs[30]]
    # Asked again later: the once-per-round-trip rule, as for anyone.
    clock.advance(0.2)
    subscription.nackReceived([lost])
    assert _seqs(wire) == [lost, seqs[30], lost]
    assert subscription.retransmitted == 5 and hold.reordered == 2
    subscription.detach()
    assert hold._call is None


def test_waitGrowsWithLaterPacketsUpToTheSetting():
    """The wait is 1.5 times the latest late packet, at most the setting."""
    track, wire, subscription = _player()
    _pressed(subscription)
    clock = track.clock
    hold = subscription.hold
    _markEager(hold)
    hold.late, hold.wait = 0.03, 0.045  # something came late before
    _sent(track, 200)
    seqs = _seqs(wire)
    wire.sent.clear()
    for i, late in enumerate((0.04, 0.055, 0.08, 0.115)):
        subscription.nackReceived([seqs[10 + i]])
        clock.advance(late)
        subscription.nackReceived([seqs[10 + i]])  # still missing then
        clock.advance(0.005)
        subscription.nackReceived([])  # a later list without it
        assert abs(hold.late - late) < 0.01
    assert hold.wait == FeedbackPolicy().playerReorderWait == 0.15
    assert wire.sent == [] and hold.reordered == 4
    # Forgotten with a half-life: a quiet link waits less.
    clock.advance(30)
    subscription.nackReceived([seqs[50]])
    clock.advance(0.01)
    subscription.nackReceived([seqs[50]])
    clock.advance(0.01)
    subscription.nackReceived([])
    assert abs(hold.wait - 0.015) < 1e-9


def test_browserLikePlayerAnsweredAtOnce():
    """
    A webrtc.org receiver NACKs a packet once and again only after a round
    trip: every NACK is answered at once, nothing is held.
    """
    track, wire, subscription = _player()
    clock = track.clock
    _sent(track, 100)
    seqs = _seqs(wire)
    wire.sent.clear()
    for i in range(3):  # (the budget's burst: 8 packets)
        subscription.nackReceived([seqs[i * 2]])
        clock.advance(0.01)
        subscription.nackReceived([seqs[i * 2 + 1]])
        clock.advance(0.01)
    clock.advance(0.2)
    subscription.nackReceived([seqs[0]])  # again, a round trip and more later
    assert _seqs(wire) == seqs[:6] + [seqs[0]]
    assert not subscription.hold.eager and subscription.hold.heldPackets == 0


def test_holdOff():
    """media_player_reorder_wait=0: never held, even for an eager player."""
    track, wire, subscription = _player(policy=replace(PLAIN, playerReorderWait=0))
    _sent(track, 20)
    seqs = _seqs(wire)
    wire.sent.clear()
    for _ in range(4):
        subscription.nackReceived([seqs[3], seqs[4]])
        track.clock.advance(0.01)
    assert not subscription.hold.eager and _seqs(wire) == [seqs[3], seqs[4]]
    assert subscription.retransmitTooSoon == 6


def test_quietLinkNotHeld():
    """
    An eager player whose link has not reordered lately (or never) is
    answered at once: the wait decays to nothing, and holding a real loss
    would only delay its repair.
    """
    track, wire, subscription, seqs = _eagerPlayer(50)
    clock = track.clock
    hold = subscription.hold
    subscription.nackReceived([seqs[1]])
    assert _seqs(wire) == [seqs[1]] and hold.heldPackets == 0 and hold.wait == 0
    # Still missing a round trip later: a real loss, no reordering sample.
    clock.advance(0.15)
    subscription.nackReceived([seqs[1], seqs[2]])
    assert hold.reordered == 0 and hold.wait == 0 and _seqs(wire)[-1] == seqs[2]
    # Both then came 40 ms late (still listed then): held for a while, not
    # after a minute.
    subscription.nackReceived([seqs[3]])
    clock.advance(0.04)
    subscription.nackReceived([seqs[2], seqs[3]])
    clock.advance(0.005)
    subscription.nackReceived([])
    assert hold.reordered == 2 and abs(hold.wait - 0.06) < 1e-9
    clock.advance(60)
    wire.sent.clear()
    subscription.nackReceived([seqs[40]])
    assert _seqs(wire) == [seqs[40]] and hold.wait == 0 and hold.heldPackets == 0


def test_lossOnTheWayInIsNeitherHeldNorASample():
    """
    A packet the player lists before we had it (lost on the way in) is not
    held; once it is forwarded late (our repair of the publisher leg), a
    NACK for it is answered at once, and its coming after it was listed
    teaches the wait nothing: it is late because of the way in, not
    because this player's link reorders.
    """
    track, wire, subscription = _player()
    _pressed(subscription)
    clock = track.clock
    hold = subscription.hold
    _markEager(hold)
    hold.late, hold.wait = 0.03, 0.045  # this link was seen to reorder
    hold.lateAt = clock.seconds()
    for i in list(range(50)) + list(range(51, 60)):  # 50 lost on the way in
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seqs = _seqs(wire)
    wire.sent.clear()
    missing = (seqs[49] + 1) & 0xFFFF  # the player's number for publisher seq 50
    subscription.nackReceived([missing])
    assert wire.sent == [] and hold.heldPackets == 1  # nothing to resend yet anyway
    clock.advance(0.03)  # our NACK to the publisher is answered: forwarded late
    track.fanout(0, 0, 50, 50 * 3000, bytes(SIZE), False)
    assert _seqs(wire) == [missing] and missing in hold.upstream
    wire.sent.clear()
    subscription.nackReceived([missing])  # crossed our forward on the way
    assert wire.sent == [] and hold.upstreamLate == 0
    assert subscription.retransmitTooSoon == 1  # the forward counts as a resend
    clock.advance(0.01)
    subscription.nackReceived([])  # it arrived: after the forward, no sample
    assert hold.reordered == 0 and abs(hold.late - 0.03) < 0.002
    # A packet of the player's own link is still held, and a sample.
    wire.sent.clear()
    subscription.nackReceived([seqs[40]])
    assert wire.sent == [] and hold.heldPackets == 2
    clock.advance(0.02)
    subscription.nackReceived([])
    assert hold.reordered == 1 and wire.sent == []
    # Forgotten after KEPT: the memory of late packets stays bounded.
    clock.advance(hold.KEPT + 0.1)
    subscription.nackReceived([])
    assert hold.upstream == {}
    # Listed long after the forward: the player's own link, held as any.
    subscription.nackReceived([missing])
    assert wire.sent == [] and hold.heldPackets == 3
    clock.advance(0.1)
    assert _seqs(wire) == [missing]
    subscription.detach()


def test_sampleIsTheLastListThatHadIt():
    """
    A player lists its missing packets only when a new gap opens: a packet
    left out of a list that came 80 ms after the one that listed it came
    at some time between the two, not 80 ms late. The wait learns from
    the last list that still had it: a packet listed once teaches nothing,
    and a real loss after it is answered at once.
    """
    track, wire, subscription, seqs = _eagerPlayer(50)
    clock = track.clock
    hold = subscription.hold
    subscription.nackReceived([seqs[1]])
    clock.advance(0.08)  # the player's next gap, long after (within a round trip)
    subscription.nackReceived([seqs[2]])
    assert hold.reordered == 1 and hold.wait == 0
    assert _seqs(wire) == [seqs[1], seqs[2]]  # both answered at once
    # Listed twice, 20 ms apart: at least 20 ms late.
    clock.advance(0.02)
    subscription.nackReceived([seqs[2], seqs[3]])
    clock.advance(0.05)
    subscription.nackReceived([seqs[4]])
    assert abs(hold.late - 0.02) < 1e-9 and abs(hold.wait - 0.03) < 1e-9
    subscription.detach()


def test_roomyBudgetHoldsNothing():
    """
    A link that is not short of budget: the first NACK of an eager player
    whose link reorders is answered at once (as Janus does), and held only
    once the resends have taken the bucket below half (what is left is for
    the real losses). Nothing is refused for it.
    """
    track, wire, subscription = _player()
    clock = track.clock
    hold = subscription.hold
    _markEager(hold)
    hold.late, hold.wait, hold.lateAt = 0.03, 0.045, clock.seconds()
    budget = subscription.budget
    _sent(track, 100)  # the bucket is full
    assert budget.roomy(subscription.octets, 0) and budget.credit == budget.burst
    seqs = _seqs(wire)
    wire.sent.clear()
    listed = seqs[10:10 + budget.burst // SIZE]  # more than half the bucket's worth
    subscription.nackReceived(listed)
    answered = len(wire.sent)
    assert 0 < answered < len(listed) and hold.heldPackets == len(listed) - answered
    assert budget.credit >= budget.burst / 2 - SIZE - 12
    assert subscription.retransmitDropped == 0
    clock.advance(0.1)  # the held ones are due, within the budget left
    assert len(wire.sent) > answered
    subscription.detach()


def test_fewReaskingsAfterAStallAreNoHabit():
    """
    A webrtc.org receiver's NACKs read back to back (the server or the
    player ran late) look like re-askings; a player is eager only while
    they are at least EAGER_SHARE of its NACKs, so a browser that was read
    so after a stall has its NACKs answered at once again.
    """
    track, wire, subscription = _player()
    _pressed(subscription)
    clock = track.clock
    _sent(track, 200)
    seqs = _seqs(wire)
    hold = subscription.hold
    for i in range(3):  # a stall: each NACK read again 1 ms after itself
        subscription.nackReceived([seqs[i]])
        clock.advance(0.001)
        subscription.nackReceived([seqs[i]])
        clock.advance(0.1)
    assert hold.eager and hold.reasked == 3 and hold.lists == 6
    for i in range(25):  # then one new packet a NACK, a round trip apart
        subscription.nackReceived([seqs[10 + i]])
        clock.advance(0.1)
    assert not hold.eager and hold.reasked == 3 and hold.lists == 31
    wire.sent.clear()
    subscription.nackReceived([seqs[50]])
    assert _seqs(wire) == [seqs[50]] and not hold.held


def test_lateForwardsForgottenWithoutNacks():
    """
    An eager player that stops NACKing (its link got better, or it never
    sends RTCP again) while the publisher's link keeps reordering: what was
    forwarded late is remembered L{NackHold.KEPT} seconds, not for the
    session (it grew by every late packet, up to all 65,536 numbers: ~6 MB
    a player, after ~20 minutes of a link that reorders 5 % at 1,000
    packets/s). Here a minute at 100 packets/s, every other pair swapped,
    across the numbers' wrap.
    """
    track, wire, subscription, seqs = _eagerPlayer(10)
    clock, hold = track.clock, subscription.hold
    seq = 63000  # the publisher's numbers wrap meanwhile
    for _ in range(3000):
        for s in (seq + 1, seq):
            track.fanout(0, 0, s & 0xFFFF, (s * 3000) & 0xFFFFFFFF, b"x", False)
        seq += 2
        clock.advance(0.02)
        wire.sent.clear()
    assert hold.upstream, "late forwards are still seen"
    assert len(hold.upstream) <= hold.KEPT / 0.02 + 1
    subscription.detach()


def test_aPacketStillListedAfterTheWaitGoesTwice():
    """
    A packet an eager player still lists after the wait was lost on its
    link, not reordered, and a resend is lost as often (5 % on `mobile`:
    another round trip, a freeze): its resend goes twice, REPEAT_AFTER
    apart, charged to the budget as the first (with the bucket below half,
    where spare copies do not go). Without C{media_repeat_waited}, once.
    """
    for repeatWaited in (True, False):
        track, wire, subscription = _player(
            policy=replace(PLAIN, repeatWaited=repeatWaited, repeatOverdue=False))
        _pressed(subscription)
        clock, hold, budget = track.clock, subscription.hold, subscription.budget
        _markEager(hold)
        _sent(track, 60)
        seqs = _seqs(wire)
        wire.sent.clear()
        hold.late, hold.wait, hold.lateAt = 0.03, 0.045, clock.seconds()
        budget.credit = budget.burst / 2 - 1  # no spare budget
        lost = seqs[40]
        subscription.nackReceived([lost])
        clock.advance(0.03)
        subscription.nackReceived([lost])  # still missing
        assert wire.sent == [] and hold.heldPackets == 1
        clock.advance(0.04)  # released by the timer after the wait
        assert _seqs(wire) == [lost]
        clock.advance(Subscription.REPEAT_AFTER)
        copies = 2 if repeatWaited else 1
        assert _seqs(wire) == [lost] * copies
        assert subscription.retransmitted == copies
        assert subscription.repairsRepeated == copies - 1
        assert hold.released == set()  # taken by each resend: nothing kept
        # Released by a NACK that still lists it after the wait: the same.
        wire.sent.clear()
        other = seqs[45]
        subscription.nackReceived([other])
        clock.advance(0.02)
        subscription.nackReceived([other])
        clock.advance(0.02)  # the timer's tick: not due yet
        clock.advance(0.005)  # past the wait, before its next tick
        assert wire.sent == []
        subscription.nackReceived([other])
        assert _seqs(wire) == [other]
        clock.advance(Subscription.REPEAT_AFTER)
        assert _seqs(wire) == [other] * copies
        subscription.detach()


def test_aPacketFirstNackedARoundTripAfterItWentGoesTwice():
    """
    A packet an eager player first NACKs more than the retry (a round trip
    and two variations) after it went is more often lost than reordered,
    and a resend is lost as often (`mobile`: a freeze, docs/networks.md): its resend goes
    twice, REPEAT_AFTER apart, the second from spare budget. A first NACK
    sooner, mostly for a packet still on its way, gets one copy; without
    C{media_repeat_overdue}, once.
    """
    for overdue in (True, False):
        track, wire, subscription = _player(policy=replace(PLAIN, repeatOverdue=overdue))
        clock = track.clock
        _markEager(subscription.hold)
        _sent(track, 60)
        seqs = _seqs(wire)
        wire.sent.clear()
        subscription.nackReceived([seqs[50]])  # as it went: it may be on its way
        clock.advance(Subscription.REPEAT_AFTER)
        assert _seqs(wire) == [seqs[50]]
        wire.sent.clear()
        clock.advance(subscription.rtt.retry)  # all went the retry and 20 ms ago
        subscription.nackReceived([seqs[40]])
        clock.advance(Subscription.REPEAT_AFTER)
        copies = 2 if overdue else 1
        assert _seqs(wire) == [seqs[40]] * copies
        assert subscription.retransmitted == 1 + copies
        assert subscription.repairsRepeated == copies - 1
        subscription.detach()


def test_whenAPacketWentIsReadFromItsTrackAcrossTheWrap():
    """
    L{Subscription.wentAt} maps our numbering back onto the track's, whose
    fan-out times are kept once per packet (not per player), across the
    16-bit wrap of both.
    """
    track, wire, subscription = _player()
    clock = track.clock
    first = 65536 - 40
    for i in range(80):  # the track's numbers wrap at the 40th
        track.fanout(0, 0, (first + i) & 0xFFFF, i * 3000, bytes(SIZE), i == 0)
        clock.advance(0.01)
    ours = _seqs(wire)
    assert subscription.seqDelta != 0
    for i in (0, 39, 40, 79):
        assert abs(subscription.wentAt(ours[i]) - i * 0.01) < 1e-9
    subscription.detach()
