"""
One publish or play: its transports, its answer and its end.

A session is built synchronously (the offer is checked and the codecs
chosen at once, so that a hopeless offer fails with its reason before any
socket exists), then one task gathers the server's candidates, hands the
answer out, connects, and for a publisher sends receiver reports.

Liveness (docs/operations.md): a publisher fails with C{RTP_ACTIVITY} after
C{media_inactivity_timeout} without RTP; a player with C{KEEP_ALIVE} after
C{media_player_timeout} without RTCP or STUN. One L{Silence} timer each.
"""

from __future__ import annotations

import asyncio
import uuid

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from wcs.errors import StreamError
from wcs.interfaces import IMediaSession, IMediaSource, IMediaStats, IStreamListener
from wcs.media import info, negotiate, rtx
from wcs.media.bandwidth import PublisherBandwidth
from wcs.media.narrow import watchPlayer
from wcs.media.rtcpguard import RtcpBudget
from wcs.media.ice import IceConnection
from wcs.media.internals import RtcpRrPacket
from wcs.media.liveness import LoopClock, Periodic, Silence
from wcs.media.source import WebRTCSource
from wcs.media.track import IncomingTrack, Subscription
from wcs.media.transport import MediaTransport


# What a session counts for wcs.metrics.
COUNTERS = ("packetsIn", "bytesIn", "packetsOut", "bytesOut", "lostIn", "lostOut",
            "nacksIn", "nacksOut", "keyframeRequests",
            # retransmissions (wcs.media.feedback, rtx, reorder): In is the
            # publisher leg, Out the players'
            "retransmitsIn", "retransmitsOut", "rtxIn", "rtxOut", "rtxUnasked",
            "reorderedIn", "reorderedOut", "heldOut", "overBudgetIn", "overBudgetOut",
            "givenUpIn",
            # players that could not decode (wcs.media.stall)
            "stallsOut", "stallProbesOut")


@implementer(IMediaSession)
class MediaSession:
    log = Logger()
    source: IMediaSource | None = None

    def __init__(self, engine, request, listener: IStreamListener):
        self.engine = engine
        self.request = request
        self.listener = listener
        self.offer = negotiate.parseOffer(request.sdp or "")
        self.sections = self.plan()
        # Every authenticated packet from the peer; RTP of our receivers.
        self.peer = Silence(engine.clock, self.peerTimeout(engine.settings) / 1000)
        self.rtp = Silence(engine.clock, 0)
        self.transports: dict[int, MediaTransport] = {}  # id(section) -> transport
        # Each transport with the offer's m-line that holds its ICE/DTLS parameters.
        self.remote: list[tuple[MediaTransport, object]] = []
        for group in negotiate.transportGroups(self.offer, self.sections,
                                               engine.settings.media_max_transports):
            transport = MediaTransport(IceConnection(engine.ports, engine.bindings),
                                       engine.certificate())
            transport.lost = self._fail
            transport.watchedBy(self.peer, self.rtp)
            transport.owner = self
            if engine.settings.media_max_rtcp_rate > 0:
                transport.rtcpBudget = RtcpBudget(engine.settings.media_max_rtcp_rate * 1024)
            self.remote.append((transport, group[0].media))
            for section in group:
                self.transports[id(section)] = transport
        self.stopped = False
        self.finished = False
        self.mediaFlowing = False
        loop = asyncio.get_event_loop()
        self._answer = loop.create_future()
        self.answer = Deferred.fromFuture(self._answer)
        self.task: asyncio.Future | None = None

    def begin(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    @property
    def uniqueTransports(self) -> list[MediaTransport]:
        return [transport for transport, media in self.remote]

    def plan(self) -> list[negotiate.Section]:
        raise NotImplementedError

    def peerTimeout(self, settings) -> int:
        """Hook: ms of total silence from the peer before it is gone; 0: never."""
        return 0

    async def _run(self) -> None:
        try:
            await asyncio.gather(*(t.ice.gather_candidates() for t in self.uniqueTransports))
            role = negotiate.dtlsRole(self.offer)
            answer = negotiate.buildAnswer(
                self.offer, self.sections,
                {key: t.ice for key, t in self.transports.items()},
                self.engine.certificate().getFingerprints(), role,
                self.engine.cname, str(uuid.uuid4()))
            answer = self.finishAnswer(answer)
            if not self._answer.done():
                self._answer.set_result(answer)
            timeout = self.engine.settings.ice_timeout / 1000
            await asyncio.gather(*(transport.connect(media.ice, media.dtls, role, timeout)
                                   for transport, media in self.remote))
            await self.connected()
        except asyncio.CancelledError:
            raise
        except StreamError as e:
            self._fail(e.info)
        except OSError as e:
            self.log.error("{session}: {error}", session=self, error=e)
            self._fail(info.ERROR)
        except Exception:
            self.log.failure("{session} failed", session=self)
            self._fail(info.ERROR)

    def finishAnswer(self, answer: str) -> str:
        """Hook: the answer SDP as it goes out."""
        return answer

    async def connected(self) -> None:
        """Hook: every transport is connected."""

    def _started(self) -> None:
        if not self.mediaFlowing and not self.finished:
            self.mediaFlowing = True
            self.listener.mediaStarted()

    def _fail(self, reason: str) -> None:
        if self.finished:
            return
        if not self._answer.done():
            # Before the answer, the failure travels with it.
            self._answer.set_exception(StreamError(reason))
            self._release()
            return
        self._release()
        if not self.stopped:
            self.log.info("{session}: {reason}", session=self, reason=reason)
            self.listener.mediaFailed(reason)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if not self._answer.done():
            self._answer.set_exception(StreamError(info.ERROR))
            self.answer.addErrback(lambda failure: None)  # nobody waits any more
        self._release()

    def _release(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.peer.stop()
        self.rtp.stop()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.engine.retire(self)
        self.unhook()
        self.engine.forget(self, [t.close() for t in self.uniqueTransports])

    def unhook(self) -> None:
        """Hook: stop forwarding, synchronously."""

    def counters(self) -> dict[str, int]:
        """Hook: this session's share of L{COUNTERS}, summed at scrape time."""
        return {}

    def reorderWaits(self) -> list[float]:
        """Hook: its current reordering waits, in s."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.name!r} {self.request.mediaSessionId}>"


@implementer(IMediaStats)
class PublishSession(MediaSession):
    """A publisher's offer answered; its media exposed as L{source}."""

    reports: Periodic | None = None  # receiver reports, once connected

    def stats(self) -> dict:
        tracks = list(self.source.incoming.values())
        return {"packets": sum(t.received for t in tracks),
                "octets": sum(t.octets for t in tracks),
                "lost": sum(t.lost() for t in tracks)}

    def __init__(self, engine, request, listener):
        self.bandwidth = PublisherBandwidth(request, engine.settings, engine.clock)
        super().__init__(engine, request, listener)
        self.source = WebRTCSource(request.name)
        for section in self.sections:
            if section.active:
                transport = self.transports[id(section)]
                track = IncomingTrack(transport, section.kind, section.name,
                                      section.codec.clockRate, section.codec.payloadType,
                                      section.ssrc, engine.clock, engine.feedback)
                track.firstPacket = self._started
                if section.ssrc is not None:
                    transport.receivers[section.ssrc] = track
                else:
                    # No a=ssrc in the offer: the first SSRC sending this
                    # payload type is the track's (and a later one replaces it).
                    transport.receiversByType[section.codec.payloadType] = track
                if section.rtx is not None:
                    self._receiveRtx(transport, track, section)
                self.source.addTrack(track)

    @staticmethod
    def _receiveRtx(transport, track, section) -> None:
        # Retransmissions on the RTX SSRC of the offer's FID group, else on
        # the first SSRC sending the RTX payload type (also when the group
        # names a media SSRC as RTX: not believed).
        ssrc = section.rtxSsrc if section.rtxSsrc not in transport.receivers else None
        receiver = rtx.RtxReceiver(track, section.rtx.payloadType, ssrc)
        track.rtx = receiver
        # It answers each NACK entry: a copy of each NACK is worth its bytes.
        track.nacks.copies = track.policy.nackTwice
        if track.policy.refund:
            track.nacks.answered = lambda: receiver.octets
        if ssrc is not None:
            transport.receivers[ssrc] = receiver
        else:
            transport.receiversByType[section.rtx.payloadType] = receiver

    def plan(self) -> list[negotiate.Section]:
        sections = negotiate.planPublish(self.offer, self.engine.preferences,
                                         self.engine.settings.media_max_mlines)
        self.bandwidth.plan(sections)
        return sections

    def finishAnswer(self, answer: str) -> str:
        return self.bandwidth.answer(answer)

    async def connected(self) -> None:
        # The stream needs RTP: its silence fails the publisher (the peer's
        # RTCP and STUN alone keep ICE consent, not the stream). A peer that
        # is gone sends no RTP either, so this one timer covers that too.
        self.rtp.timeout = self.engine.settings.media_inactivity_timeout / 1000
        if not self.finished:
            self.rtp.watch(lambda: self._fail(info.RTP_ACTIVITY))
            self.bandwidth.connected(
                [(t, [s for s in self.sections if self.transports.get(id(s)) is t])
                 for t in self.uniqueTransports])
            # Every second, on a packet's wake-up while media flows (Periodic).
            self.reports = Periodic(LoopClock(), 1.0, self._report)
            readLater = self.engine.settings.media_idle_read_interval / 1000
            for transport in self.uniqueTransports:
                transport.awake = self.reports
                # Nobody plays it yet: read its packets in batches (readingChanged).
                transport.readLater = readLater
                transport.readingChanged()
            self.reports.start()

    def _report(self) -> None:
        """Receiver reports, which browsers' send-side estimators live on; REMB."""
        for transport in self.uniqueTransports:
            tracks = [t for t in self.source.incoming.values() if t.transport is transport]
            reports = [r for r in (t.receptionReport() for t in tracks) if r is not None]
            compound = (bytes(RtcpRrPacket(ssrc=transport.rtcpSsrc, reports=reports))
                        if reports else b"")
            compound += self.bandwidth.report(
                transport, [t.ssrc for t in tracks if t.ssrc is not None],
                max((r.fraction_lost for r in reports), default=0))
            if compound:
                transport.sendRtcp(compound)

    def unhook(self) -> None:
        if self.reports is not None:
            self.reports.stop()
        for track in self.source.incoming.values():
            if track.kind == "video" and track.received:
                nacks, rtxIn = track.nacks, track.rtx
                self.log.info(
                    "{session}: video feedback: {nacked} NACKed ({copied} twice), {repaired} "
                    "repaired, {givenUp} given up, {overBudget} held by the budget, {keyframes} "
                    "keyframe requests; RTX {rtxPackets} ({unasked} unasked, {padding} padding)",
                    session=self, nacked=nacks.nacksSent, copied=nacks.nacksCopied,
                    repaired=nacks.retransmitsReceived, givenUp=nacks.nacksGivenUp,
                    overBudget=nacks.nacksOverBudget,
                    keyframes=track.keyframeRequests, rtxPackets=rtxIn and rtxIn.packets,
                    unasked=rtxIn and rtxIn.unasked, padding=rtxIn and rtxIn.padding)
        self.bandwidth.stop()
        self.source.end()

    def counters(self) -> dict[str, int]:
        tracks = list(self.source.incoming.values())
        return {"packetsIn": sum(t.packetsIn for t in tracks),
                "bytesIn": sum(t.octets for t in tracks),
                "lostIn": sum(t.lost() for t in tracks),
                "nacksOut": sum(t.nacks.nacksSent for t in tracks),
                "keyframeRequests": sum(t.keyframeRequests for t in tracks),
                "retransmitsIn": sum(t.nacks.retransmitsReceived - t.nacks.reordered
                                     for t in tracks),
                "rtxIn": sum(t.rtx.packets for t in tracks if t.rtx is not None),
                "rtxUnasked": sum(t.rtx.unasked for t in tracks if t.rtx is not None),
                "reorderedIn": sum(t.nacks.reordered for t in tracks),
                "overBudgetIn": sum(t.nacks.nacksOverBudget for t in tracks),
                "givenUpIn": sum(t.nacks.nacksGivenUp for t in tracks)}

    def reorderWaits(self) -> list[float]:
        """s each track waits for a late packet before NACKing it (wcs.metrics)."""
        return [t.nacks.reorderWait for t in self.source.incoming.values() if t.kind == "video"]


@implementer(IMediaStats)
class PlaySession(MediaSession):
    """A player's receive-only offer answered for a published source."""

    def stats(self) -> dict:
        return {"packets": sum(s.packets for s in self.subscriptions),
                "octets": sum(s.octets for s in self.subscriptions), "lost": None}

    def __init__(self, engine, request, source: IMediaSource, listener):
        self.playing = source
        super().__init__(engine, request, listener)
        self.subscriptions: list[Subscription] = []
        self.narrowWatches: list = []  # wcs.media.narrow

    def plan(self) -> list[negotiate.Section]:
        tracks = {kind: codec for kind, codec in self.playing.tracks.items()
                  if self.engine.canServe(self.playing, kind, codec)}
        return negotiate.planPlay(self.offer, tracks, self.engine.preferences,
                                  self.engine.settings.media_max_mlines)

    async def connected(self) -> None:
        for section in self.sections:
            if not section.active:
                continue
            track = self.engine.trackFor(self.playing, section.kind, section.name)
            subscription = Subscription(track, self.transports[id(section)], section.ssrc,
                                        section.codec.payloadType, self._started,
                                        self.engine.feedback)
            if section.rtx is not None:
                subscription.rtx = rtx.RtxSender(section.rtx.payloadType, section.rtxSsrc)
            self.subscriptions.append(subscription)
            subscription.attach()
        # A player sends no media: its receiver reports, feedback and STUN
        # consent requests are its heartbeat. Without them for the timeout,
        # it vanished (no DTLS close), long before consent would expire.
        if not self.finished:
            self.peer.watch(lambda: self._fail(info.KEEP_ALIVE))
            self.narrowWatches = watchPlayer(self.engine, self.playing, self.subscriptions,
                                             getattr(self.listener, "address", None), repr(self))

    def peerTimeout(self, settings) -> int:
        return settings.media_player_timeout

    def counters(self) -> dict[str, int]:
        subscriptions = self.subscriptions
        return {"packetsOut": sum(s.packets for s in subscriptions),
                # RTP as sent before SRTP: a 12-byte header and the payload
                "bytesOut": sum(s.octets + 12 * s.packets for s in subscriptions),
                "lostOut": sum(s.reportedLost for s in subscriptions),
                "nacksIn": sum(s.nacksReceived for s in subscriptions),
                "retransmitsOut": sum(s.retransmitted for s in subscriptions),
                "rtxOut": sum(s.rtx.packets for s in subscriptions if s.rtx is not None),
                "reorderedOut": sum(s.hold.reordered for s in subscriptions),
                "heldOut": sum(s.hold.heldPackets for s in subscriptions),
                "overBudgetOut": sum(s.retransmitDropped for s in subscriptions),
                "stallsOut": sum(s.stall.stalls for s in subscriptions if s.stall is not None),
                "stallProbesOut": sum(s.stall.probes for s in subscriptions
                                      if s.stall is not None)}

    def reorderWaits(self) -> list[float]:
        """s each held player's NACKs wait (wcs.metrics); none for players not held."""
        return [s.hold.wait for s in self.subscriptions if s.hold.eager]

    def unhook(self) -> None:
        for watch in self.narrowWatches:
            watch.stop()
        subscriptions, self.subscriptions = self.subscriptions, []
        for subscription in subscriptions:
            subscription.detach()
            if subscription.track.kind == "video" and subscription.nacksReceived:
                s = subscription
                self.log.info(
                    "{session}: video feedback: {nacks} NACKs, {resent} resent ({rtx} as RTX), "
                    "{dropped} over the budget, {tooSoon} within a round trip ({rtt:.0f} ms), "
                    "{tooOld} too old ({beforeKeyframe} more before its last keyframe, ignored); "
                    "eager in {reasked} re-askings of {lists} NACKs: "
                    "{held} held for reordering ({reordered} came meanwhile, "
                    "wait {wait:.0f} ms), {upstream} for packets late on the way in not held; "
                    "{keyframes} keyframe requests, {limited} not passed on; "
                    "{repeated} late packets sent twice, {early} repeats within a round trip "
                    "sent again, {deferred} first NACKs left for their repeat, "
                    "{farRepeats} far behind not sent again, "
                    "{startsHeld} keyframe starts held for copies on their way",
                    session=self, nacks=s.nacksReceived, resent=s.retransmitted,
                    rtx=s.rtx and s.rtx.packets, dropped=s.retransmitDropped,
                    tooSoon=s.retransmitTooSoon, rtt=s.rtt.smoothed * 1000,
                    tooOld=s.nacksTooOld, beforeKeyframe=s.nacksBeforeKeyframe,
                    reasked=s.hold.reasked, lists=s.hold.lists, held=s.hold.heldPackets, reordered=s.hold.reordered,
                    wait=s.hold.wait * 1000, upstream=s.hold.upstreamLate,
                    keyframes=s.keyframeRequestsReceived, limited=s.keyframeRequestsLimited,
                    repeated=s.repairsRepeated, early=s.resentEarly,
                    deferred=s.nacksDeferred, farRepeats=s.farRepeats,
                    startsHeld=s.startHold.starts)
