"""
Webhooks: room, participant, stream, recording and mix events POSTed as JSON
to each of C{webhook_urls}.

L{Webhooks} is an observer of the core (C{Rooms.observers},
C{RoomServer.streamObservers}, C{Recorder.observers}); it never looks into
the core beyond what an event hands it. Each URL has one bounded FIFO and
at most one request in flight: events reach a URL in the order they
happened (so in order per room), at least once (a failed POST is retried,
with back-off, until it succeeds; a receiver must tolerate duplicates by
C{id}). A full queue drops the new event, counted and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections import deque
from io import BytesIO

from twisted.internet.defer import Deferred, succeed
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from wcs.config import ConfigError, Key, declare
from wcs.logs import LogLimiter, Logger, clip

log = Logger()
limited = LogLimiter(log)

declare(
    Key("webhook_urls", "str", "", "comma-separated URLs that get event POSTs; empty: none"),
    Key("webhook_secret", "str", "",
        "key of the X-WCS-Signature header (hex HMAC-SHA256 of the body); empty: unsigned"),
    Key("webhook_queue_max", "int", 10000,
        "events waiting per URL; a new event past that is dropped (and counted)"),
    Key("webhook_timeout", "int", 10000, "ms a webhook POST may take before it is retried"),
    Key("webhook_retry_min", "int", 1000, "ms before the first retry of a failed POST"),
    Key("webhook_retry_max", "int", 60000,
        "longest wait between retries (ms); the wait doubles from webhook_retry_min"),
)

SIGNATURE = b"X-WCS-Signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Delivery:
    """The queue of one URL: one POST at a time, in order, retried until it is taken."""

    def __init__(self, url: str, agent, clock, secret: str, queueMax: int, timeout: float,
                 retryMin: float, retryMax: float, metrics=None):
        self.url = url
        self.agent = agent
        self.clock = clock
        self.secret = secret
        self.queueMax = queueMax
        self.timeout = timeout
        self.retryMin = retryMin
        self.retryMax = retryMax
        self.metrics = metrics
        self.events: deque[bytes] = deque()
        self.sending = False
        self.failures = 0
        self.retry = None
        self.dropped = 0
        self._idle: list[Deferred] = []

    def push(self, body: bytes) -> bool:
        if len(self.events) >= self.queueMax:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.webhookDropped.inc()
            limited.warn(("full", self.url), "webhook {url}: {queued} events queued "
                         "(webhook_queue_max), event dropped ({dropped} so far)",
                         url=self.url, queued=len(self.events), dropped=self.dropped)
            return False
        self.events.append(body)
        self._next()
        return True

    def idle(self) -> Deferred:
        """Fires when every queued event has been delivered."""
        if not self.events:
            return succeed(None)
        d = Deferred()
        self._idle.append(d)
        return d

    def _next(self) -> None:
        if self.sending or self.retry is not None:
            return
        if not self.events:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
            return
        self.sending = True
        body = self.events[0]
        headers = Headers({b"content-type": [b"application/json"],
                           b"user-agent": [b"wcs-webhooks"]})
        if self.secret:
            headers.addRawHeader(SIGNATURE, sign(self.secret, body).encode())
        d = self.agent.request(b"POST", self.url.encode(), headers,
                               FileBodyProducer(BytesIO(body)))
        d.addCallback(self._response)
        d.addTimeout(self.timeout, self.clock)
        d.addCallbacks(self._delivered, self._failed)

    def _response(self, response):
        # Read the body whatever the status: the connection goes back to the pool.
        d = readBody(response)
        d.addBoth(lambda _: response.code)
        return d

    def _delivered(self, code: int) -> None:
        if not 200 <= code < 300:
            self._failed(f"HTTP {code}")
            return
        self.sending = False
        self.failures = 0
        self.events.popleft()
        self._next()

    def _failed(self, why) -> None:
        self.sending = False
        self.failures += 1
        if self.metrics is not None:
            self.metrics.webhookFailures.inc()
        delay = min(self.retryMax, self.retryMin * 2 ** min(self.failures - 1, 30))
        reason = why.getErrorMessage() if hasattr(why, "getErrorMessage") else why
        limited.warn(("failed", self.url), "webhook {url}: {reason}; retry in {delay:.1f}s "
                     "({queued} queued)", url=self.url, reason=clip(reason, 200),
                     delay=delay, queued=len(self.events))
        self.retry = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self.retry = None
        self._next()

    def stop(self) -> None:
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        self.retry = None


def parseUrls(settings) -> list[str]:
    """C{webhook_urls} as a list. @raise ConfigError: one is not http(s)."""
    urls = [u.strip() for u in settings.webhook_urls.split(",") if u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise ConfigError(f"webhook_urls: not an http(s) URL: {', '.join(bad)}")
    return urls


class Webhooks:
    """The observer that turns core events into webhook POSTs."""

    def __init__(self, urls: list[str], clock, settings, metrics=None, agent=None):
        self.clock = clock
        if agent is None:
            pool = HTTPConnectionPool(clock, persistent=True)
            pool.maxPersistentPerHost = 1
            agent = Agent(clock, pool=pool)
        self.deliveries = [
            Delivery(url, agent, clock, settings.webhook_secret, settings.webhook_queue_max,
                     settings.webhook_timeout / 1000, settings.webhook_retry_min / 1000,
                     settings.webhook_retry_max / 1000, metrics)
            for url in urls]

    @classmethod
    def fromSettings(cls, settings, clock, metrics=None) -> "Webhooks | None":
        urls = parseUrls(settings)
        return cls(urls, clock, settings, metrics) if urls else None

    def emit(self, event: str, **fields) -> None:
        body = json.dumps({"id": str(uuid.uuid4()), "event": event,
                           "timestamp": round(time.time(), 3), **fields}).encode()
        for delivery in self.deliveries:
            delivery.push(body)

    def flush(self) -> Deferred | None:
        """A Deferred that fires when every URL's queue is empty (a drain waits on it)."""
        from twisted.internet.defer import DeferredList

        return DeferredList([d.idle() for d in self.deliveries])

    # Rooms.observers

    def roomStarted(self, room) -> None:
        self.emit("room_started", room=room.name, record=room.record)

    def roomEnded(self, room) -> None:
        self.emit("room_ended", room=room.name,
                  duration=round(self.clock.seconds() - room.createdAt, 3))

    def participantJoined(self, participant) -> None:
        self.emit("participant_joined", room=participant.room.name, login=participant.login)

    def participantLeft(self, participant) -> None:
        self.emit("participant_left", room=participant.room.name, login=participant.login)

    # RoomServer.streamObservers

    def streamStarted(self, stream) -> None:
        self.emit("stream_published", **self._stream(stream))

    def streamEnded(self, stream) -> None:
        self.emit("stream_unpublished", **self._stream(stream), status=stream.status)

    @staticmethod
    def _stream(stream) -> dict:
        participant = stream.participant
        return {"room": participant.room.name if participant is not None else None,
                "login": stream.owner.login, "stream": stream.name,
                "mediaSessionId": stream.mediaSessionId,
                "provider": stream.request.mediaProvider, "record": stream.request.record,
                "recordName": stream.recordName}

    # Recorder.observers

    def recordingFinished(self, info: dict) -> None:
        self.emit("recording_finished", **info)

    def mixFinished(self, info: dict) -> None:
        self.emit("mix_finished", **info)
