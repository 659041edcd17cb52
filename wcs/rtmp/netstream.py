"""
An RTMP connection's NetStreams as the application sees them: a stream it
publishes (L{Publication}), a stream it plays (L{PlayStream}, where a
L{wcs.rtmp.relay.TagPlayer} writes), and the FLV conversions of non-RTMP
sources shared by all RTMP players of a server (L{Feeds}).
"""

from __future__ import annotations

from typing import Callable

from wcs.interfaces import IMediaSource, IStream
from wcs.logs import Logger
from wcs.rtmp import amf0
from wcs.rtmp.relay import FLVFeed, RTMPSource

log = Logger()


class Publication:
    """A NetStream being published: its source, and its room stream once live."""

    def __init__(self, source: RTMPSource, record: bool):
        self.source = source
        self.record = record
        self.stream: IStream | None = None


class PlayStream:
    """
    An RTMP connection's play NetStream, as a player writes to it.

    @param application: the connection's L{wcs.rtmp.application.RTMPApplication}.
    """

    def __init__(self, application, streamId: int):
        self.application = application
        self.streamId = streamId

    def writeTag(self, mtype: int, timestamp: int, body: bytes) -> None:
        app = self.application
        app.output.write(app.conn.media(mtype, self.streamId, timestamp, body))

    def writeMetadata(self, payload: bytes) -> None:
        self.application.conn.data(self.streamId, 0, amf0.encode("onMetaData") + payload)
        self.application.flush()

    def congested(self) -> bool:
        return self.application.congested

    def sourceEnded(self) -> None:
        app = self.application
        app.conn.streamEOF(self.streamId)
        app.conn.onStatus(self.streamId, "NetStream.Play.UnpublishNotify", "The stream ended.")
        app.conn.onStatus(self.streamId, "NetStream.Play.Stop", "Stopped playing.")
        app.flush()
        app.players.pop(self.streamId, None)


class Feeds:
    """
    One conversion to FLV per non-RTMP source (a WebRTC publisher), shared
    by its RTMP players and dropped when the last one leaves.

    @param transcode: C{(kind, codec) -> converter or None}, as L{FLVFeed}
        takes it; by default L{wcs.rtmp.transcode.converterFor} (imported on
        first use: it loads the codecs).
    """

    def __init__(self, transcode: Callable | None = None):
        self.transcode = transcode
        self.feeds: dict[int, FLVFeed] = {}

    def feedOf(self, source: IMediaSource, name: str) -> FLVFeed:
        key = id(source)
        feed = self.feeds.get(key)
        if feed is None or feed.ended:
            if self.transcode is None:
                from wcs.rtmp.transcode import converterFor

                self.transcode = converterFor

            def idle(ended: FLVFeed) -> None:
                if self.feeds.get(key) is ended:
                    del self.feeds[key]

            feed = self.feeds[key] = FLVFeed(source, name, self.transcode, idle)
            feed.open()
            log.info("converting {name!r} to FLV for RTMP players", name=name)
        return feed
