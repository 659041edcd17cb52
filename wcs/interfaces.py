"""
Contracts between the room core and the transports.

The core (L{wcs.room}, L{wcs.session}) imports no transport. A transport adapts
one wire (WebSocket frames, RTMP chunks, ...) to these interfaces:

    transport                         core
    ---------                         ----
    ITransport (drop-in)  --makeService(server, settings)-->
    per connection:  server.openSession(channel: ISignallingChannel)
                      -> IClientSession
    decoded client message  --session.messageReceived(name, args)-->
    <--channel.send(ServerMessage)--  replies and room events

Media for C{publishStream}/C{playStream} is negotiated by an L{IMediaEngine}
chosen by the request's C{mediaProvider}; a published stream exposes its
encoded media as an L{IMediaSource} so that any transport (WebRTC, RTMP, the
recorder) can consume it.
"""

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


class ISignallingChannel(Interface):
    """
    One client's signalling connection, as the core sees it.

    Provided by a transport for each accepted connection.
    """

    peer = Attribute("A short description of the remote end, for logs.")

    def send(message):
        """
        Send one server message to the client.

        @param message: a L{wcs.messages.ServerMessage}. The same instance may
            be sent to many channels; a transport encodes it once per wire
            format with L{wcs.messages.ServerMessage.encoded}.
        """

    def close(reason):
        """
        Close the connection. The transport later reports the loss to its
        L{IClientSession} as usual.

        @param reason: a human-readable reason, logged and (where the wire
            allows) sent to the client.
        """


class IClientSession(Interface):
    """
    The core's side of one client connection (L{wcs.session.ClientSession}).
    """

    def messageReceived(name, args):
        """
        A client message was decoded.

        @param name: the message name, e.g. C{"connection"}, C{"sendData"}.
        @param args: the list of arguments (C{data} of a JSON frame, the call
            arguments of an AMF call).
        """

    def peerActive():
        """
        The transport heard from the peer: any bytes or frame, whether or
        not it carries a message (RTMP media and acknowledgements, a
        WebSocket pong). Keeps the session from being closed as silent.

        Called on the transport's hot path: it costs one attribute store.
        """

    def protocolError(info):
        """
        The transport received something it could not decode (bad JSON, an
        oversize frame). The session answers the client with a C{fail}
        naming the problem and logs it once; the connection stays open.
        """

    def connectionLost(reason):
        """
        The connection is gone: release everything the client held.
        """


class IRoomServer(Interface):
    """
    What the core offers to transports.
    """

    settings = Attribute("The server's L{wcs.config.Settings}.")
    clock = Attribute("An IReactorTime used for every timer of the core.")

    def openSession(channel):
        """
        Start a client session for a new connection.

        @param channel: an L{ISignallingChannel}.
        @return: an L{IClientSession}.
        """

    def registerMediaEngine(engine):
        """
        Make an L{IMediaEngine} available for its C{providers}.
        """


class ITransport(IPlugin):
    """
    A drop-in transport, found with L{twisted.plugin.getPlugins} in
    C{wcs.transports} and the top-level C{plugins} package: a module there
    that has an instance of a class declared C{@implementer(ITransport)} at
    module level adds a transport (extending L{IPlugin} is what makes the
    plugin system see it).
    """

    name = Attribute("A short unique name, e.g. C{'websocket'}, for logs.")

    def makeService(server, settings):
        """
        Build the transport's listening service.

        @param server: the L{IRoomServer}.
        @param settings: the L{wcs.config.Settings}.
        @return: an L{twisted.application.service.IService}, or L{None} when
            the settings disable this transport.
        """


class IStreamListener(Interface):
    """
    Told by an L{IMediaEngine} how one media session is doing.
    """

    def mediaStarted():
        """
        Media flows (publish: the publisher's media arrived; play: media is
        being sent to the player).
        """

    def mediaFailed(info):
        """
        The media session failed for good. C{info} is one of the SDK's
        C{STREAM_STATUS_INFO} strings (e.g. C{"Failed by ICE timeout"}).
        """


class IMediaSession(Interface):
    """
    One negotiated publish or play of an L{IMediaEngine}.
    """

    answer = Attribute(
        "A Deferred firing with the answer SDP, or failing with "
        "L{wcs.errors.StreamError} whose info is an SDK info string."
    )
    source = Attribute(
        "For a publish: the L{IMediaSource} of the published media; "
        "None for a play."
    )

    def stop():
        """
        End the session and free its sockets and tasks. Idempotent.
        """


class IMediaEngine(Interface):
    """
    Negotiates media for one or more C{mediaProvider} values.
    """

    providers = Attribute("The C{mediaProvider} names handled, e.g. ('WebRTC',).")

    def publish(request, listener):
        """
        Accept a publisher's offer.

        @param request: a L{wcs.protocol.StreamRequest} (C{sdp} is the offer).
        @param listener: an L{IStreamListener}.
        @return: an L{IMediaSession} whose C{source} carries the media.
        """

    def play(request, source, listener):
        """
        Accept a player's receive-only offer for a published stream.

        @param source: the L{IMediaSource} of the stream to play.
        @return: an L{IMediaSession}.
        """


class IMediaSource(Interface):
    """
    Encoded media of one published stream, whatever transport brought it.
    """

    tracks = Attribute(
        "A dict mapping C{'audio'}/C{'video'} to the codec name of that track "
        "(C{'H264'}, C{'VP8'}, C{'opus'}, C{'PCMU'}, C{'PCMA'}, C{'AAC'}, ...)."
    )

    def attach(sink):
        """
        Start delivering L{wcs.frames.EncodedFrame}s to an L{IMediaSink}.
        """

    def detach(sink):
        """
        Stop delivering to C{sink}. Idempotent.
        """

    def requestKeyframe():
        """
        Ask the publisher for a keyframe (PLI/FIR, or the next GOP).
        """


class IMediaSink(Interface):
    """
    A consumer of encoded frames: a player, a recorder, a transcoder.
    """

    def writeFrame(frame):
        """
        One L{wcs.frames.EncodedFrame}. Must not block: a slow sink drops
        frames up to the next keyframe.
        """

    def sourceEnded():
        """
        The source stopped for good.
        """


# Web resources from drop-ins ------------------------------------------------
#
# A transport that speaks HTTP (WHIP, WHEP) serves its paths on the web
# server's ports (http_port, https_port) rather than listening on its own.


class IWebResource(IPlugin):
    """
    A drop-in that serves one top-level path of the web server, found with
    L{twisted.plugin.getPlugins} in C{wcs.transports} and the top-level
    C{plugins} package, like L{ITransport}. The web server mounts
    C{makeResource}'s answer at C{/path/} on both its HTTP and HTTPS ports,
    unless the path is taken already (C{client2}, C{records}, or an earlier
    drop-in): then it logs one line and leaves the drop-in out.
    """

    name = Attribute("A short unique name, e.g. C{'whip'}, for logs.")
    path = Attribute("The first path segment served, a C{str} such as C{'whip'}.")
    maxBodySize = Attribute(
        "Bytes of request body accepted under C{/path/} (with a Content-Length; "
        "a chunked body is refused with 411); 0: none, the web server's "
        "default (413 for any body)."
    )

    def makeResource(server, settings):
        """
        Build the resource serving C{/path/...}.

        @param server: the L{IRoomServer}; the resource opens client sessions
            with C{server.openSession(channel)} like any transport.
        @param settings: the L{wcs.config.Settings}.
        @return: an L{twisted.web.resource.IResource}, or L{None} when the
            settings disable it.
        """
