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
    a wire without the SDK's messages (RTMP encoders, WHIP) acts for its
    client:  session.identify / joinRoom / publish(name, IMediaSource)
             server.liveSource(name) to play, stream.stop() to end

Everything a transport may call in the core is declared here: a transport
(in C{wcs.transports} or a drop-in in C{wcs_plugins}) imports only
C{wcs.interfaces}, C{wcs.messages}, C{wcs.frames}, C{wcs.config},
C{wcs.logs}, C{wcs.errors} and its own package (tests/test_contract.py
checks it). See docs/transports.md.

Media for C{publishStream}/C{playStream} is negotiated by an L{IMediaEngine}
chosen by the request's C{mediaProvider}; a published stream exposes its
encoded media as an L{IMediaSource} so that any transport (WebRTC, RTMP, the
recorder) can consume it.
"""

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

# --- The SDK's strings (constants.js), for transports that report streams ---

# STREAM_STATUS: the life of a published or played stream.
PENDING = "PENDING"
PUBLISHING = "PUBLISHING"
PLAYING = "PLAYING"
UNPUBLISHED = "UNPUBLISHED"
STOPPED = "STOPPED"
FAILED = "FAILED"

# STREAM_STATUS_INFO: why a stream failed or stopped.
STREAM_NOT_FOUND = "Stream not found"
NAME_IN_USE = "Stream name is already in use"
SESSION_ID_IN_USE = "MediaSessionId is already in use"
STOPPED_BY_PUBLISHER = "Stopped by publisher stop"
STOPPED_BY_DISCONNECT = "Stopped by session disconnect"
STOPPED_BY_USER = "Stopped by user"


class ISignallingChannel(Interface):
    """
    One client's signalling connection, as the core sees it.

    Provided by a transport for each accepted connection. Two optional
    attributes are read with a default when absent: C{transportName}, a
    label of L{wcs.metrics} (default: the class name, lowercased), and C{clientJoins},
    whether the client sends its own room joins (default true; false for a
    client its transport joined, an RTMP encoder publishing to a room URL,
    which cannot join again itself: L{wcs.cluster.relay.joinsItself}). One
    optional method: C{sendChat(head, text)}, writing a chat MESSAGE whose
    JSON up to the text is C{head} (L{wcs.room.events.chatHead}) without a
    L{wcs.messages.ServerMessage}; a channel without it gets C{send}.
    """

    peer = Attribute("A short description of the remote end, for logs.")

    def send(message):
        """
        Send one server message to the client.

        @param message: a L{wcs.messages.ServerMessage}. The same instance may
            be sent to many channels; a transport encodes it once per wire
            format with L{wcs.messages.ServerMessage.encoded}. A refusal
            (C{fail}, a FAILED C{DataStatusEvent} or stream status) carries
            its reason's code, one of L{wcs.errors}', in C{message.refusal}
            (the wire has only the text).
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

    def chatFrame(operationId, room, to, text):
        """
        A C{sendData} C{sendMessage} read by a transport without decoding
        it (L{wcs.messages.chatFrame}). Return False when not handled (the
        transport decodes it and calls L{messageReceived}), True when handled
        and answered, C{ACCEPTED} (L{wcs.messages}) when delivered and the
        transport is to send the C{DataStatusEvent} ACCEPTED of
        C{operationId} itself.
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

    def refuse(apiMethod, info):
        """
        Refuse one client request: a C{fail} naming C{apiMethod} and C{info}
        goes to the client, and a warning to the log (rate-limited per
        address). The connection stays open.

        @param apiMethod: the message refused (e.g. C{"sendData"}), or None.
        @param info: what is wrong, for the client to read.
        """

    # Identity, for wires that carry no SDK C{connection} message (RTMP
    # encoders, WHIP): the transport identifies its client itself.

    login = Attribute(
        "The client's login, its identity in rooms (LiveKit's participant "
        "identity); None before L{identify}, or when identified without one.")
    identified = Attribute("Whether the client has identified (L{identify} or "
                           "the SDK's C{connection} message).")

    def identify(appKey, login=None, token=None):
        """
        Identify the client, as the SDK's C{connection} message does (with
        C{custom.login} and C{custom.token}), through the same access policy
        (signed token, REST hook C{connect}, rate limits): the client is
        sent C{getUserData} (its C{sessionId}).

        @param appKey: the application, e.g. C{"rtmp"}, C{"flashRoomApp"}.
        @param login: the client's login, or None for a client that only
            publishes or plays by stream name (it cannot join rooms), or
            whose token names it.
        @param token: a signed access token the client brought, or None.
        @return: a Deferred firing with None once identified, or failing
            with L{wcs.errors.AccessDenied} (the reason) when refused: the
            transport then tells its client and closes the connection.
            Without a REST hook it has fired when C{identify} returns.
        @raise wcs.errors.ProtocolError: already identified, or the login is
            too long.
        """

    # Rooms (LiveKit's Room and Participant)

    def joinRoom(room, record=False):
        """
        Join C{room} as this client's login, without asking the access
        policy (the transport acts on the server's behalf); the room is made
        on first join and its other participants get C{JOINED}. Joining a
        room the client is already in changes nothing.

        @param record: ask for the room's mix to be recorded.
        @raise wcs.errors.RoomError: no login, the login is taken in that
            room, the room or the server is full, a bad room name.
        """

    def requestJoin(room, record=False):
        """
        Join C{room} for the client, as its SDK C{join} would: the access
        policy (token C{join} grant and room, REST hook C{joinRoom}, rate
        limit) decides first. A room already joined is allowed at once.

        @return: a Deferred firing with None once joined, or failing with
            L{wcs.errors.AccessDenied} or L{wcs.errors.RoomError}.
        """

    def authorizePublish(name, room=None, record=False, provider="RTMP"):
        """
        Ask the access policy whether the client may publish C{name} (token
        C{publish} and C{record} grants, the stream-name rule, REST hooks
        C{publishStream} and C{recordStream}), before L{publish}.

        @param room: as for L{publish}.
        @return: a Deferred firing with whether to record (the backend may
            say), or failing with L{wcs.errors.AccessDenied}.
        """

    def authorizePlay(name, provider="RTMP"):
        """
        Ask the access policy whether the client may play stream C{name}
        (token C{play} grant, room membership, REST hook C{playStream}).

        @return: a Deferred firing with None, or failing with
            L{wcs.errors.AccessDenied}.
        """

    def inRoom(room):
        """
        @return: whether the client is a participant of C{room}.
        """

    # Streams (LiveKit's track publications)

    def publish(name, source, provider, record=False, room=None, onStop=None):
        """
        Publish media that the transport brings itself (an RTMP encoder, a
        WHIP client): the stream is live at once (C{PUBLISHING}), playable
        by name server-wide, recorded if asked, and announced to the room
        (C{PUBLISHED}) when it belongs to one.

        @param name: the stream name, unique on the server.
        @param source: the L{IMediaSource} of the media.
        @param provider: the C{mediaProvider} reported for it, e.g.
            C{"RTMP"}, C{"WHIP"}.
        @param room: the room the stream belongs to (joined first); None:
            the joined room whose C{ROOM-LOGIN} prefix the name carries (how
            Flash clients name their streams), else no room.
        @param onStop: called once when the stream ends, whatever ends it
            (L{IStream.stop}, the client leaving the room, the session
            closing), so the transport can stop its media.
        @return: the L{IStream}.
        @raise wcs.errors.StreamError: with L{NAME_IN_USE} when the name is
            taken, or when C{room} is not joined.
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

    badInputLog = Attribute(
        "A L{wcs.logs.LogLimiter} for warnings about a client's bad input: "
        "C{badInputLog.warn((address, kind), format, **fields)} logs one line "
        "per address and kind a while, and counts the rest.")

    def registerMediaEngine(engine):
        """
        Make an L{IMediaEngine} available for its C{providers}.
        """

    draining = Attribute(
        "None; while the server drains (docs/operations.md), the reason new "
        "connections are refused: a transport refuses a new client with it "
        "(WebSocket: the handshake gets 503; RTMP: connect gets _error).")

    # Streams by name, for players (LiveKit's subscription)

    def liveSource(name):
        """
        The media of a live (C{PUBLISHING}) stream, to play it.

        @return: its L{IMediaSource}, or None when no stream of that name is
            live (report L{STREAM_NOT_FOUND}).
        """

    def locateSource(name):
        """
        The media of a live stream, here or, in a cluster, on the node of
        the room its name belongs to (C{ROOM-LOGIN...}): relayed here, once
        for all of this node's players of it (docs/cluster.md).

        @return: a Deferred firing with its L{IMediaSource}, or None when no
            stream of that name is live (report L{STREAM_NOT_FOUND}).
        """

    def streamNameInUse(name):
        """
        @return: whether a published stream holds C{name} (live or still
            negotiating): a publish under it would fail with L{NAME_IN_USE}.
        """

    # Listening

    def tlsContext():
        """
        The server's TLS context factory (its certificate, made on first use
        when none is configured), for secure listeners (wss, https).

        @return: a L{twisted.internet.interfaces.IOpenSSLContextFactory}, or
            None when TLS is not available in this installation.
        """


class ITransport(IPlugin):
    """
    A drop-in transport, found with L{twisted.plugin.getPlugins} in
    C{wcs.transports} and the top-level C{wcs_plugins} package: a module there
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


class IStream(Interface):
    """
    One published (or played) stream of a session, as the core keeps it.
    """

    name = Attribute("The stream name.")
    published = Attribute("True for a publish, False for a play.")
    status = Attribute("Its SDK status: L{PENDING}, L{PUBLISHING}, ... L{FAILED}.")
    recordName = Attribute("The recording's file name when it is recorded, else None.")

    def stop(info=None):
        """
        End the stream (L{UNPUBLISHED} for a publish, L{STOPPED} for a play)
        as if its client asked: its media stops, its players get
        C{STOPPED}, its room C{UNPUBLISHED}, its client the status. Once:
        later calls do nothing.

        @param info: a C{STREAM_STATUS_INFO} string for the status, or None.
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


class IMediaStats(Interface):
    """
    Counters of an L{IMediaSession} for operators (the REST API, the admin
    page), read when asked: nothing is computed per packet beyond them.
    """

    def stats():
        """
        @return: a dict: C{packets} and C{octets} received (publish) or sent
            (play) so far, and C{lost}: packets that never came from the
            publisher (None for a play).
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


class IAdmin(Interface):
    """
    What an operator may read and do on a running server (the REST API, the
    admin page): clients, streams, rooms and recordings, by their ids.

    Objects are the core's own, read through their public attributes: a
    client (L{wcs.session.ClientSession}) has C{sessionId}, C{login},
    C{connection}, C{channel}, C{createdAt}, C{logLevel}, C{participants};
    a stream (L{wcs.streams.Stream}) C{mediaSessionId}, C{name},
    C{published}, C{status}, C{request}, C{owner}, C{participant},
    C{recordName}; a room (L{wcs.room.model.Room}) C{name}, C{record},
    C{createdAt}, C{participants}.
    """

    def connections():
        """@return: every client connection, oldest first."""

    def connection(sessionId):
        """@return: the client of C{sessionId}, or None."""

    def closeConnection(sessionId, reason):
        """
        Close a client's connection, as a disconnect would end it.

        @return: whether there was such a client.
        """

    def setLogLevel(sessionId, level):
        """
        Log a client's messages (C{DEBUG}, C{TRACE}) or stop (C{INFO},
        C{WARN}, C{ERROR}).

        @return: whether there was such a client.
        @raise ValueError: an unknown level.
        """

    def streams():
        """@return: every stream, published and played, of every client."""

    def stream(mediaSessionId):
        """@return: the stream of C{mediaSessionId}, or None."""

    def endStream(mediaSessionId, info):
        """
        End a stream as its client's stop would; its client gets C{info}.

        @return: whether there was such a stream.
        """

    def recordingOf(stream):
        """@return: the file name C{stream} is being recorded to now, or None."""

    def rooms():
        """@return: every room, idle ones included."""

    def room(name):
        """@return: the room C{name}, or None."""

    def streamsOf(participant):
        """@return: the streams a room participant publishes there."""

    def kick(room, login, info):
        """
        Take C{login} out of C{room}: the others get C{LEFT}, its streams in
        the room end with C{info}.

        @return: whether there was such a room and participant.
        """

    def endRoom(name, info):
        """
        End a room: every participant is taken out as by L{kick}, then the
        room ends (its mix, if recorded, is made).

        @return: whether there was such a room.
        """

    def startRecording(mediaSessionId):
        """
        Record a live published stream.

        @return: the recording's file name.
        @raise LookupError: no such stream.
        @raise wcs.errors.StreamError: not a live published stream, already
            recorded, or the recorder refused (low disk).
        """

    def stopRecording(mediaSessionId):
        """
        Stop recording a stream; the stream goes on and the file is finished.

        @return: the recording's file name.
        @raise LookupError: no such stream.
        @raise wcs.errors.StreamError: the stream is not being recorded.
        """

    def recordings():
        """@return: the finished and unfinished recordings: C{pathlib.Path}s."""

    def deleteRecording(fileName):
        """
        Delete one recording of the records directory.

        @raise ValueError: C{fileName} is not a plain file name there.
        @raise LookupError: no such recording.
        @raise wcs.errors.StreamError: it is still being written.
        """


# Web resources from drop-ins ------------------------------------------------
#
# A transport that speaks HTTP (WHIP, WHEP) serves its paths on the web
# server's ports (http_port, https_port) rather than listening on its own.


class IWebResource(IPlugin):
    """
    A drop-in that serves one top-level path of the web server, found with
    L{twisted.plugin.getPlugins} in C{wcs.transports} and the top-level
    C{wcs_plugins} package, like L{ITransport}. The web server mounts
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
