"""
How sessions end: the listener hears the SDK's reason once, and everything
a session held is freed.
"""

import asyncio
import gc
import os

from tests.media.peers import (
    WAIT, Listener, Player, Publisher, Request, asyncTest, makeEngine, newPeer, offerOf)


@asyncTest()
async def test_publisherStopsSending():
    """A publisher whose media stops fails with 'Failed by RTP activity'."""
    engine = makeEngine(media_inactivity_timeout=800)
    publisher = Publisher(video="video/VP8", audio="audio/opus")
    player = Player(video="video/VP8", audio="audio/opus")
    try:
        session = await publisher.publish(engine)
        await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
        await player.play(engine, session.source)
        await player.waitFrames("video", 3)
        # The tracks end: aiortc stops sending RTP, ICE consent goes on.
        publisher.videoTrack.stop()
        publisher.audioTrack.stop()
        await asyncio.wait_for(publisher.listener.failed.wait(), WAIT)
        assert publisher.listener.events == [("started", None),
                                             ("failed", "Failed by RTP activity")]
        assert session.source.ended
        # The player's media stops with it (the room core then ends the play).
        subscriptions = player.session.subscriptions
        assert subscriptions and all(s.ssrc not in s.transport.senders for s in subscriptions)
        assert session.source.incoming["video"].subscribers == ()
    finally:
        await player.close()
        await publisher.close()
        await engine.close()


@asyncTest()
async def test_iceTimeout():
    """An answered peer that never connects fails with 'Failed by ICE timeout'."""
    engine = makeEngine(ice_timeout=700)
    pc = newPeer()
    pc.addTransceiver("video", direction="sendonly")
    try:
        listener = Listener()
        session = engine.publish(Request("silent", await offerOf(pc)), listener)
        answer = await asyncio.wait_for(session.answer.asFuture(asyncio.get_running_loop()), WAIT)
        assert "a=candidate:" in answer and "127.0.0.1" in answer
        await asyncio.wait_for(listener.failed.wait(), WAIT)
        assert listener.events == [("failed", "Failed by ICE timeout")]
        assert session not in engine.sessions
    finally:
        await pc.close()
        await engine.close()


@asyncTest()
async def test_peerClosesConnection():
    """
    A player that closes its peer connection (DTLS close) fails, the
    publisher goes on, and stopping afterwards is harmless.
    """
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio=None)
    player = Player(video="video/H264", audio=None)
    try:
        session = await publisher.publish(engine)
        await player.play(engine, session.source)
        await player.waitFrames("video", 3)
        await player.pc.close()
        await asyncio.wait_for(player.listener.failed.wait(), WAIT)
        assert player.listener.failure in ("Failed by DTLS error", "Failed by ICE error")
        assert session.source.incoming["video"].subscribers == ()
        player.session.stop()
        player.session.stop()
        assert not publisher.listener.failed.is_set()
    finally:
        await player.close()
        await publisher.close()
        await engine.close()


def _openFds() -> int:
    return len(os.listdir("/proc/self/fd"))


@asyncTest(timeout=240)
async def test_noLeakAfterManyCycles():
    """
    100 publish/stop cycles with real peers (each connected, media flowing,
    a player of every second publisher, transcoded for every tenth), and 20
    sessions stopped before they connected, leave no task and no socket behind.
    """
    engine = makeEngine()

    async def cycle(i: int):
        publisher = Publisher(video="video/VP8", audio="audio/opus", width=64, height=48)
        codec = "video/H264" if i % 10 == 5 else "video/VP8"
        player = Player(video=codec, audio="audio/opus") if i % 2 else None
        try:
            session = await publisher.publish(engine, name=f"s{i}")
            await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
            if player is not None:
                await player.play(engine, session.source, name=f"s{i}")
                await asyncio.wait_for(player.listener.started.wait(), WAIT)
                transcoded = any(key[0] == id(session.source) for key in engine.frameTracks)
                assert transcoded == (codec == "video/H264")
                player.session.stop()
            session.stop()
        finally:
            if player is not None:
                await player.close()
            await publisher.close()

    async def settle():
        await engine.close()
        for _ in range(20):
            await asyncio.sleep(0.05)
        gc.collect()

    async def abandoned(i: int):
        # Stopped before the answer, or while ICE waits for the peer.
        pc = newPeer()
        pc.addTransceiver("video", direction="sendonly")
        session = engine.publish(Request(f"a{i}", await offerOf(pc)), Listener())
        if i % 2:
            await session.answer.asFuture(asyncio.get_running_loop())
        session.stop()
        await pc.close()

    await cycle(-1)  # warm up lazily created things (executors, caches)
    await settle()
    tasks, fds = len(asyncio.all_tasks()), _openFds()
    for batch in range(10):
        await asyncio.gather(*(cycle(batch * 10 + i) for i in range(10)),
                             *(abandoned(batch * 2 + i) for i in range(2)))
    await settle()
    assert engine.sessions == set() and engine.frameTracks == {}
    assert len(asyncio.all_tasks()) == tasks, asyncio.all_tasks()
    assert _openFds() == fds


def _vanish(pc) -> None:
    """
    The peer's machine is gone: its sockets close at once, so no DTLS
    close_notify, RTCP or STUN reaches the server any more.
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in connection._protocols:
            protocol.transport.abort()


@asyncTest()
async def test_vanishedPlayerFails():
    """
    A player that vanishes without closing anything fails with 'Failed by
    ICE keep alive' within media_player_timeout (not after the ~30 s of
    consent expiry), while a healthy player of the same stream plays on.
    """
    timeout = 3.0  # above aiortc's RTCP interval (0.5-1.5 s), with room for load
    engine = makeEngine(media_player_timeout=int(timeout * 1000))
    publisher = Publisher(video="video/VP8", audio=None)
    gone, healthy = Player(video="video/VP8", audio=None), Player(video="video/VP8", audio=None)
    loop = asyncio.get_running_loop()
    try:
        session = await publisher.publish(engine)
        await gone.play(engine, session.source)
        await healthy.play(engine, session.source)
        await gone.waitFrames("video", 3)
        await healthy.waitFrames("video", 3)
        subscription = gone.session.subscriptions[0]
        _vanish(gone.pc)
        vanished = loop.time()
        await asyncio.wait_for(gone.listener.failed.wait(), timeout + WAIT)
        took = loop.time() - vanished
        assert gone.listener.events == [("started", None), ("failed", "Failed by ICE keep alive")]
        assert timeout - 1.6 <= took <= timeout + 5, took  # the last RR may be 1.5 s old
        assert subscription.ssrc not in subscription.transport.senders
        # The healthy player keeps receiving, past another whole timeout.
        count = len(healthy.frames["video"])
        await asyncio.sleep(timeout + 1)
        await healthy.waitFrames("video", count + 10)
        assert not healthy.listener.failed.is_set() and not publisher.listener.failed.is_set()
        assert session.source.incoming["video"].subscribers == (healthy.session.subscriptions[0],)
    finally:
        await gone.close()
        await healthy.close()
        await publisher.close()
        await engine.close()
