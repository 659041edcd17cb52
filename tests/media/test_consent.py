"""
ICE consent freshness (RFC 7675): the rule on an injected clock, then two
real ICE agents on loopback whose answers come later than aioice's 0.5 s.
"""

import asyncio

from twisted.internet.task import Clock

from tests.media.peers import asyncTest
from wcs.media.ice import IceConnection, PortRange
from wcs.media.internals import IceAgent
from wcs.media.liveness import Consent

INTERVAL, LIFETIME = 5.0, 30.0


def _consent(clock, checks, expired, random=lambda: 0.5):
    return Consent(clock, lambda: checks.append(clock.seconds()),
                   lambda: expired.append(clock.seconds()), INTERVAL, LIFETIME, random)


def test_lateAnswersKeepConsent():
    """
    Checks go out every 4-6 s; answers that come 3 s after their check
    (six aioice checks in a row unanswered within 0.5 s) keep consent for
    as long as they come.
    """
    clock, checks, expired = Clock(), [], []
    consent = _consent(clock, checks, expired, random=iter([0.0, 1.0] * 100).__next__)
    consent.start()
    answered = 0
    for _ in range(200):
        clock.advance(0.5)
        if len(checks) > answered and clock.seconds() - checks[answered] >= 3:
            consent.answered()
            answered += 1
    assert expired == []
    gaps = [b - a for a, b in zip(checks, checks[1:])]
    assert len(checks) >= 15 and min(gaps) == 4.0 and max(gaps) == 6.0
    assert len(clock.getDelayedCalls()) == 1


def test_expiresLifetimeAfterLastAnswer():
    """No answer for the lifetime: expired once, at that moment, no timer left."""
    clock, checks, expired = Clock(), [], []
    consent = _consent(clock, checks, expired)
    consent.start()
    clock.pump([1] * 12)
    consent.answered()
    clock.pump([0.5] * 200)
    assert expired == [12 + LIFETIME]
    assert checks == [5, 10, 15, 20, 25, 30, 35, 40]
    assert clock.getDelayedCalls() == []


def test_stop():
    clock, checks, expired = Clock(), [], []
    consent = _consent(clock, checks, expired)
    consent.start()
    clock.advance(INTERVAL)
    consent.stop()
    clock.advance(100)
    assert (checks, expired) == ([INTERVAL], [])
    assert clock.getDelayedCalls() == []


class Browser(IceAgent):
    """The peer: controlling, one loopback socket, answers checks after C{delay}."""

    delay = 0.0
    answering = True

    def __init__(self):
        super().__init__(ice_controlling=True, use_ipv6=False)
        self.answered = 0

    async def bindCandidates(self, component):
        return [await self.openSocket(PortRange(0, 0).bind("127.0.0.1"), component,
                                      "127.0.0.1")]

    def request_received(self, message, addr, protocol):
        if not self._nominated:  # connectivity checks: at once
            return super().request_received(message, addr, protocol)
        if self.answering:
            self.answered += 1
            asyncio.get_running_loop().call_later(
                self.delay, super().request_received, message, addr, protocol)


async def _connected(serverInterval, serverLifetime):
    server = IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")])
    server.consentInterval, server.consentLifetime = serverInterval, serverLifetime
    browser = Browser()
    browser.consentInterval, browser.consentLifetime = 60.0, 600.0  # not under test
    await asyncio.gather(server.gather_candidates(), browser.gather_candidates())
    for a, b in ((server, browser), (browser, server)):
        a.remote_username, a.remote_password = b.local_username, b.local_password
        for candidate in b.local_candidates:
            await a.add_remote_candidate(candidate)
        await a.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(server.connect(), browser.connect()), 10)
    return server, browser


@asyncTest(timeout=60)
async def test_lateAnswersOnTheWire():
    """
    A peer that answers every check 0.8 s late (a server reading its socket
    behind seconds of media sees this) keeps consent; one that stops
    answering loses it within the lifetime and one interval, and the
    agent closes.
    """
    interval, lifetime = 0.2, 2.0
    server, browser = await _connected(interval, lifetime)
    loop = asyncio.get_running_loop()
    try:
        browser.delay = 0.8  # above aioice's 0.5 s transaction timeout
        await asyncio.sleep(3 * lifetime)
        assert not server.consentLost
        assert browser.answered >= 2 * lifetime / (1.2 * interval)
        assert loop.time() - server._consent.answeredAt < lifetime
        assert len(server._checks) <= lifetime / (0.8 * interval) + 1  # answered ones forgotten
        browser.answering = False
        stopped = loop.time()
        for _ in range(200):
            if server.consentLost:
                break
            await asyncio.sleep(0.05)
        took = loop.time() - stopped
        assert server.consentLost
        # The last answer may have been on its way when we stopped answering.
        assert lifetime - 0.1 <= took <= lifetime + browser.delay + 1.2 * interval + 2, took
        await asyncio.sleep(0.2)
        assert server._query_consent_task is None and server._checks == []
        assert all(not p.transactions for p in server._protocols)
    finally:
        await server.close()
        await browser.close()
