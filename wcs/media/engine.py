"""
The WebRTC media engine: an L{IMediaEngine} for C{mediaProvider} "WebRTC".
"""

from __future__ import annotations

import asyncio
import datetime
import uuid

from twisted.logger import Logger
from zope.interface import implementer

from wcs.config import Settings
from wcs.errors import StreamError
from wcs.interfaces import IMediaEngine, IMediaSource, IStreamListener
from wcs.media import limits, negotiate
from wcs.media.feedback import FeedbackPolicy
from wcs.media.ice import PortRange, hostBindings
from wcs.media.internals import RTCCertificate
from wcs.media.liveness import LoopClock
from wcs.media.narrow import RenditionRefused
from wcs.media.session import COUNTERS, MediaSession, PlaySession, PublishSession
from wcs.media.source import WebRTCSource
from wcs.media.track import Track
from wcs.media.transcode import FrameTrack, canDecode


@implementer(IMediaEngine)
class WebRTCEngine:
    """
    Answers WebRTC publishers and players and forwards media between them.

    @param settings: the server's L{Settings}; this package's keys are
        C{media_port_from}, C{media_port_to}, C{ice_public_ip}, C{ice_timeout},
        C{media_inactivity_timeout}, C{media_video_codecs},
        C{media_audio_codecs}, C{media_player_timeout}, and the limits on
        hostile offers and clients (L{wcs.media.limits}).
    @param clock: times the liveness watches (the server's clock); default
        the running asyncio loop.

    A listener may name its client for the per-client limits: C{connection}
    (any hashable; default: the listener itself) and C{address} (the
    client's host; default: no per-address limit).
    """

    providers = ("WebRTC",)
    log = Logger()

    def __init__(self, settings: Settings | None = None, clock=None):
        self.settings = settings if settings is not None else Settings()
        self.clock = clock if clock is not None else LoopClock()
        self.ports = PortRange(self.settings.media_port_from, self.settings.media_port_to)
        self.bindings = hostBindings(self.settings.ice_public_ip,
                                     getattr(self.settings, "listen_address", "0.0.0.0"))
        self.preferences = {
            "video": negotiate.preferences(self.settings.media_video_codecs, "video"),
            "audio": negotiate.preferences(self.settings.media_audio_codecs, "audio"),
        }
        self.cname = str(uuid.uuid4())
        self.feedback = FeedbackPolicy.fromSettings(self.settings)
        ports = self.ports
        self.quota = limits.Quota(self.settings,
                                  ports.last - ports.first + 1 if ports.first or ports.last else 0,
                                  len(self.bindings))
        self.sessions: set[MediaSession] = set()
        self.frameTracks: dict[tuple[int, str, str], FrameTrack] = {}
        # The client address each lower rendition was made for (its charge).
        self.renditionMakers: dict[tuple, str | None] = {}
        self._closing: set[asyncio.Future] = set()
        self._certificate: RTCCertificate | None = None
        # Counters of the sessions that ended (wcs.metrics adds the live ones).
        self.retired = dict.fromkeys(COUNTERS, 0)

    # IMediaEngine

    def publish(self, request, listener: IStreamListener) -> PublishSession:
        limits.checkOffer(request.sdp or "", self.settings)
        return self._open(PublishSession(self, request, listener))

    def play(self, request, source: IMediaSource, listener: IStreamListener) -> PlaySession:
        limits.checkOffer(request.sdp or "", self.settings)
        return self._open(PlaySession(self, request, source, listener))

    # Shared by the sessions

    def certificate(self) -> RTCCertificate:
        """One DTLS certificate for all sessions, renewed before it expires."""
        now = datetime.datetime.now(datetime.timezone.utc)
        if self._certificate is None or self._certificate.expires - now < datetime.timedelta(days=1):
            self._certificate = RTCCertificate.generateCertificate()
        return self._certificate

    def canServe(self, source: IMediaSource, kind: str, codec: str) -> bool:
        """Whether a track of C{codec} can reach players (as it is or transcoded)."""
        return codec in negotiate.CLOCK_RATES or canDecode(codec)

    def trackFor(self, source: IMediaSource, kind: str, codec: str) -> Track:
        """
        What a player of C{codec} subscribes to: the publisher's own track
        when the codec matches (forwarded untouched), else a L{FrameTrack}
        shared by every player of that source, kind and codec.
        """
        if isinstance(source, WebRTCSource):
            track = source.incoming.get(kind)
            if track is not None and track.codec == codec:
                return track
        key = (id(source), kind, codec)
        track = self.frameTracks.get(key)
        if track is None or track.ended:
            track = FrameTrack(source, kind, source.tracks[kind], codec,
                               lambda t: self._dropFrameTrack(key, t))
            self.frameTracks[key] = track
        return track

    def lowerTrackFor(self, source: IMediaSource, kind: str, codec: str,
                      bitrate: int, address: str | None = None) -> FrameTrack:
        """
        The lower rendition of C{source}'s C{kind} for narrow players
        (L{wcs.media.narrow}): made at C{bitrate} for the first, whose
        client C{address} it counts against, and shared by the others free.

        @raise RenditionRefused: naming the limit, when making it would pass
            C{player_narrow_renditions} in the process (each is a decoder
            and an encoder at work) or C{player_narrow_renditions_per_address}
            for C{address} (so that one client reporting false loss cannot
            take them all).
        """
        key = (id(source), kind, codec, "lower")
        track = self.frameTracks.get(key)
        if track is None or track.ended:
            live = [k for k, t in self.frameTracks.items() if k[-1] == "lower" and not t.ended]
            settings = self.settings
            if len(live) >= settings.player_narrow_renditions:
                raise RenditionRefused("all player_narrow_renditions are in use")
            perAddress = settings.player_narrow_renditions_per_address
            if address is not None and 0 < perAddress <= sum(
                    1 for k in live if self.renditionMakers.get(k) == address):
                raise RenditionRefused(f"its address made player_narrow_renditions_per_address "
                                       f"({perAddress}) already")
            track = FrameTrack(source, kind, codec, codec,
                               lambda t: self._dropFrameTrack(key, t), bitrate,
                               pace=max(settings.player_narrow_pace, 0) / 100)
            self.frameTracks[key] = track
            self.renditionMakers[key] = address
        return track

    def _dropFrameTrack(self, key, track: FrameTrack) -> None:
        if self.frameTracks.get(key) is track:
            del self.frameTracks[key]
            self.renditionMakers.pop(key, None)

    def counters(self) -> dict[str, int]:
        """Media totals since start, for L{wcs.metrics} (read at scrape time)."""
        totals = dict(self.retired)
        for session in list(self.sessions):
            for name, value in session.counters().items():
                totals[name] += value
        return totals

    def reorderWaits(self) -> dict[str, list[float]]:
        """The live sessions' reordering waits (s), by leg: for L{wcs.metrics}."""
        waits: dict[str, list[float]] = {"publisher": [], "player": []}
        for session in list(self.sessions):
            waits["publisher" if isinstance(session, PublishSession) else "player"] += \
                session.reorderWaits()
        return waits

    def retire(self, session: MediaSession) -> None:
        """A session stops forwarding: keep its counts."""
        for name, value in session.counters().items():
            self.retired[name] += value

    def forget(self, session: MediaSession, closing: list) -> None:
        """
        A session ended: close its transports in the background. Its ports
        count against its client until they are closed.
        """
        self.sessions.discard(session)
        task = asyncio.ensure_future(asyncio.gather(*closing, return_exceptions=True))
        self._closing.add(task)

        def closed(task):
            self._closing.discard(task)
            self.quota.release(session)
        task.add_done_callback(closed)

    async def close(self) -> None:
        """Stop every session and wait until their sockets are closed."""
        for session in list(self.sessions):
            session.stop()
        for track in list(self.frameTracks.values()):
            track.stop()
        self.frameTracks.clear()
        self.renditionMakers.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _open(self, session: MediaSession) -> MediaSession:
        # Planned, no socket bound yet: the client's share is checked first.
        listener = session.listener
        try:
            self.quota.claim(session, getattr(listener, "connection", listener),
                             getattr(listener, "address", None),
                             len(session.uniqueTransports) * len(self.bindings))
        except StreamError:
            session.stop()
            raise
        self.sessions.add(session)
        session.begin()
        return session
