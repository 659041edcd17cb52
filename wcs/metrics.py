"""
Prometheus metrics of a running server, served at C{/metrics}.

Nothing here runs per packet: the forwarding path keeps plain integer
counters in the objects that already count (L{wcs.media.track}); a
L{ServerCollector} reads and sums them, and the room server's own tables,
when Prometheus scrapes. Only rare events (a hook run, the lag probe, a
dropped webhook) touch C{prometheus_client} objects directly.
"""

from __future__ import annotations


from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.web.resource import Resource

from wcs.logs import Logger
from wcs.transports.lowwater import inForce as lowWaterInForce

log = Logger()

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOOK_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600)


def codecLabel(tracks: dict[str, str]) -> str:
    """C{{"video": "H264", "audio": "opus"}} -> C{"H264+opus"}: video first."""
    return "+".join(tracks[kind] for kind in sorted(tracks, key=lambda k: k != "video"))


def transportLabel(channel) -> str:
    name = getattr(channel, "transportName", None)
    return name if isinstance(name, str) else type(channel).__name__.lower()


class ServerCollector:
    """Reads a L{wcs.server.RoomServer} at scrape time."""

    def __init__(self, server):
        self.server = server

    def describe(self):
        return []  # generated at scrape time: nothing to check at registration

    def collect(self):
        server = self.server
        connections = GaugeMetricFamily("wcs_connections", "Client connections",
                                        labels=["transport"])
        byTransport: dict[str, int] = {}
        for session in list(server.sessions):
            label = transportLabel(session.channel)
            byTransport[label] = byTransport.get(label, 0) + 1
        for label, count in sorted(byTransport.items()):
            connections.add_metric([label], count)
        yield connections

        rooms = server.rooms.rooms
        yield GaugeMetricFamily("wcs_rooms", "Rooms, idle ones included", value=len(rooms))
        yield GaugeMetricFamily("wcs_participants", "Participants of all rooms",
                                value=sum(len(r.participants) for r in list(rooms.values())))
        yield self._streams()
        yield from self._media()
        recorder = getattr(server, "recorder", None)
        yield GaugeMetricFamily("wcs_transcoders", "Codec conversions running",
                                value=self._transcoders(recorder))
        yield GaugeMetricFamily("wcs_recordings_active", "Streams being recorded",
                                value=len(recorder.writers) if recorder is not None else 0)
        mixQueue = GaugeMetricFamily("wcs_mix_queue", "Room mixes (with their hook)",
                                     labels=["state"])
        if recorder is not None:
            mixQueue.add_metric(["running"], recorder.queue.running)
            mixQueue.add_metric(["waiting"], recorder.queue.waiting)
        yield mixQueue
        sockets, reads = lowWaterInForce()
        yield GaugeMetricFamily("wcs_rtmp_low_water_sockets", "RTMP publishing sockets "
                                "with a receive low-water mark over 1 byte", value=sockets)
        yield CounterMetricFamily("wcs_rtmp_low_water_reads", "Reads of RTMP publishing "
                                  "sockets after which a mark over 1 byte was in force",
                                  value=reads)
        yield GaugeMetricFamily("wcs_draining", "1 while the server drains",
                                value=1 if getattr(server, "draining", None) else 0)
        yield from self._cluster()

    def _cluster(self):
        """The media relays between nodes (docs/cluster.md), with a cluster only."""
        counts = getattr(self.server.placement, "relayCounts", None)
        if counts is None:
            return
        c = counts()
        pulls = GaugeMetricFamily("wcs_cluster_pulls_active", "Streams relayed between nodes for "
                                  "players: served to other nodes (out), pulled from them (in)",
                                  labels=["direction"])
        pulls.add_metric(["out"], c["serving"])
        pulls.add_metric(["in"], c["pulling"])
        yield pulls
        total = CounterMetricFamily("wcs_cluster_pulls", "Pulls of streams between nodes since "
                                    "start", labels=["direction"])
        total.add_metric(["out"], c["pullsServed"])
        total.add_metric(["in"], c["pulls"])
        yield total
        yield GaugeMetricFamily("wcs_cluster_edge_players", "WebRTC players here of streams "
                                "of other nodes (played from this node's pull)",
                                value=c["edgePlayers"])
        yield CounterMetricFamily("wcs_cluster_pull_keyframe_requests", "Keyframe requests "
                                  "this node's pulls sent to their origin",
                                  value=c["keyframeAsks"])

    def _streams(self):
        streams = GaugeMetricFamily("wcs_streams", "Live streams",
                                    labels=["direction", "provider", "codec"])
        counts: dict[tuple[str, str, str], int] = {}
        for session in list(self.server.sessions):
            for stream in list(session.streams.active.values()):
                if stream.status not in ("PUBLISHING", "PLAYING") or stream.media is None:
                    continue
                if stream.published:
                    source = stream.media.source
                    tracks = dict(source.tracks) if source is not None else {}
                else:
                    sections = getattr(stream.media, "sections", None)
                    if sections is not None:
                        tracks = {s.kind: s.name for s in sections if s.active}
                    else:
                        tracks = dict(stream.playing.media.source.tracks)
                key = ("publish" if stream.published else "play",
                       stream.request.mediaProvider, codecLabel(tracks))
                counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            streams.add_metric(list(key), count)
        return streams

    def _media(self):
        totals: dict[str, int] = {}
        for engine in set(self.server.engines.values()):
            counters = getattr(engine, "counters", None)
            if counters is not None:
                for name, value in counters().items():
                    totals[name] = totals.get(name, 0) + value
        get = totals.get

        def pair(name, help, inName, outName):
            family = CounterMetricFamily(name, help, labels=["direction"])
            family.add_metric(["in"], get(inName, 0))
            family.add_metric(["out"], get(outName, 0))
            return family

        yield pair("wcs_media_bytes", "RTP bytes received from publishers (in) and "
                   "sent to players (out)", "bytesIn", "bytesOut")
        yield pair("wcs_media_packets", "RTP packets received from publishers (in) and "
                   "sent to players (out)", "packetsIn", "packetsOut")
        yield pair("wcs_rtp_lost", "RTP packets lost on the way in (our receiver reports) "
                   "and out (players' receiver reports)", "lostIn", "lostOut")
        yield pair("wcs_nacks", "NACKs received from players (in) and sent to publishers (out)",
                   "nacksIn", "nacksOut")
        yield CounterMetricFamily("wcs_keyframe_requests", "Keyframe requests (PLI) sent "
                                  "to publishers", value=get("keyframeRequests", 0))
        yield pair("wcs_retransmitted_packets", "Packets repaired by a retransmission we "
                   "asked a publisher for (in) and resent to players (out)",
                   "retransmitsIn", "retransmitsOut")
        yield pair("wcs_rtx_packets", "RTX packets received from publishers (in) and sent "
                   "to players (out)", "rtxIn", "rtxOut")
        yield CounterMetricFamily("wcs_rtx_unasked", "RTX packets from publishers for a "
                                  "packet not missing (bandwidth probes, late originals)",
                                  value=get("rtxUnasked", 0))
        yield pair("wcs_reordered_packets", "Packets that came by themselves after all: "
                   "missing from a publisher (in), or NACKed by a player whose NACK was "
                   "held (out)", "reorderedIn", "reorderedOut")
        yield CounterMetricFamily("wcs_player_nacks_held", "Packets whose first NACK from "
                                  "a player was held for reordering", value=get("heldOut", 0))
        yield pair("wcs_retransmits_over_budget", "Retransmissions not asked for (in) or "
                   "not sent (out): over media_retransmit_share", "overBudgetIn",
                   "overBudgetOut")
        yield CounterMetricFamily("wcs_packets_given_up", "Packets missing from publishers "
                                  "that were given up (a keyframe repairs them)",
                                  value=get("givenUpIn", 0))
        yield CounterMetricFamily("wcs_player_stalls", "Video players dropped to a keyframe "
                                  "asked for on their behalf: they could not decode past a "
                                  "hole (media_player_stall)", value=get("stallsOut", 0))
        yield CounterMetricFamily("wcs_player_stall_probes", "Packets resent to a player "
                                  "unasked: a resent hole no NACK mentioned again",
                                  value=get("stallProbesOut", 0))
        waits = GaugeMetricFamily("wcs_reorder_wait_seconds", "The longest current wait "
                                  "for a late packet before a NACK to a publisher is sent or "
                                  "one from a player is answered", labels=["leg"])
        byLeg: dict[str, list[float]] = {"publisher": [], "player": []}
        for engine in set(self.server.engines.values()):
            for leg, values in getattr(engine, "reorderWaits", dict)().items():
                byLeg.setdefault(leg, []).extend(values)
        for leg, values in sorted(byLeg.items()):
            waits.add_metric([leg], max(values, default=0.0))
        yield waits

    def _transcoders(self, recorder) -> int:
        count = 0
        for engine in set(self.server.engines.values()):
            for track in list(getattr(engine, "frameTracks", {}).values()):
                count += bool(getattr(track, "transcoding", False) and not track.ended)
        if recorder is not None:
            from wcs.recording.transcoding import Transcoding

            for entry in list(recorder.writers.values()):
                sink = entry[0]  # the recorder's sink, maybe offloaded to a worker
                count += isinstance(getattr(sink, "sink", sink), Transcoding) or \
                    isinstance(sink, Transcoding)
        return count


class Metrics:
    """The registry of one server, and the few metrics that are pushed."""

    def __init__(self, server=None):
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        if server is not None:
            self.registry.register(ServerCollector(server))
        self.hookSeconds = Histogram("wcs_hook_seconds", "Run time of the mix hook script",
                                     buckets=HOOK_BUCKETS, registry=self.registry)
        self.loopLag = Histogram("wcs_event_loop_lag_seconds",
                                 "How late a timer of the event loop fires",
                                 buckets=LAG_BUCKETS, registry=self.registry)
        self.webhookDropped = Counter("wcs_webhook_dropped", "Webhook events dropped: "
                                      "the queue of their URL was full",
                                      registry=self.registry)
        self.webhookFailures = Counter("wcs_webhook_failures", "Webhook deliveries that "
                                       "failed and will be retried", registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # The recorder's observer interface: only the hook is measured here.

    def hookFinished(self, room: str, seconds: float, code: int) -> None:
        self.hookSeconds.observe(seconds)


class MetricsResource(Resource):
    """C{GET /metrics}: the text exposition format."""

    isLeaf = True

    def __init__(self, metrics: Metrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.exposition()
