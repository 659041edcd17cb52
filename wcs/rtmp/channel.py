"""
An RTMP connection as the room session sees it (L{ISignallingChannel}): a
Flash room client gets the room protocol's calls in AMF0, an encoder or
player only the keep-alive, as RTMP ping requests.
"""

from __future__ import annotations

from zope.interface import implementer

from wcs.interfaces import ISignallingChannel

# Server calls a Flash room client knows; other session messages are not for it.
FLASH_CALLS = frozenset({"DataStatusEvent", "OnDataEvent", "ping", "fail",
                         "notifyStreamStatusEvent"})


@implementer(ISignallingChannel)
class RTMPChannel:
    """
    The room session's view of an RTMP connection.

    @param application: the connection's L{wcs.rtmp.application.RTMPApplication}.
    @param flash: a Flash room client, which speaks the room protocol.
    """

    def __init__(self, application, flash: bool):
        self.application = application
        self.flash = flash
        self.peer = application.peer
        self.transportName = "flash" if flash else "rtmp"  # a label of wcs.metrics
        # An encoder's room is joined for it (a room URL): it cannot join
        # again by itself (wcs.cluster.relay.joinsItself).
        self.clientJoins = flash

    def send(self, message) -> None:
        app = self.application
        if app.closed:
            return  # refused at connect: the status went out, the connection is closing
        if self.flash:
            if message.name in FLASH_CALLS:
                app.conn.call(message.name, *message.args)
                app.flush()
        elif message.name == "ping":
            # An encoder or player speaks no room protocol, but every RTMP
            # client answers a ping request: the session's keep-alive in RTMP.
            app.conn.pingRequest(int(app.server.clock.seconds() * 1000))
            app.flush()

    def close(self, reason: str) -> None:
        self.application.close(reason)
