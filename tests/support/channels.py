"""
Test doubles of the transport side of the core's interfaces, for unit tests
of the room core with an injected clock (the real transports are tested
with real clients elsewhere).
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from wcs import protocol
from wcs.interfaces import IMediaEngine, IMediaSession, ISignallingChannel


@implementer(ISignallingChannel)
class RecordingChannel:
    """Keeps what the core sent, as the client would decode it."""

    def __init__(self, peer: str = "test"):
        self.peer = peer
        self.frames: list[dict] = []
        self.closedWith: str | None = None

    def send(self, message) -> None:
        # Through the real codec, so every message is checked to be valid JSON.
        self.frames.append(json.loads(message.encoded(protocol.WIRE, protocol.encodeFrame)))

    def close(self, reason: str) -> None:
        self.closedWith = reason

    def take(self) -> list[dict]:
        frames, self.frames = self.frames, []
        return frames

    def named(self, message: str) -> list[dict]:
        return [f["data"][0] for f in self.frames if f["message"] == message]

    def roomEvents(self, name: str | None = None) -> list[dict]:
        events = [f["data"][0]["payload"] for f in self.frames if f["message"] == "OnDataEvent"]
        return [e for e in events if name is None or e["name"] == name]


ANSWER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=answer\r\n"


@implementer(IMediaSession)
class HeldMediaSession:
    def __init__(self, request, listener, source=None):
        self.request = request
        self.listener = listener
        self.source = source if source is not None else object()
        self.answer: Deferred = succeed(ANSWER)
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


@implementer(IMediaEngine)
class HeldMediaEngine:
    """
    Answers at once and lets the test decide when media starts or fails, to
    check the core's stream bookkeeping without a network.
    """

    providers = ("WebRTC",)

    def __init__(self):
        self.sessions: list[HeldMediaSession] = []

    def publish(self, request, listener):
        session = HeldMediaSession(request, listener)
        self.sessions.append(session)
        return session

    def play(self, request, source, listener):
        session = HeldMediaSession(request, listener, source)
        self.sessions.append(session)
        return session

    def last(self) -> HeldMediaSession:
        return self.sessions[-1]
