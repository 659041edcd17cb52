"""
The room's node's end of a visitor: a client connected to another node
that joined a room here (docs/cluster.md, "Relay").

Each visiting client is a L{ProxySession} here: a L{ClientSession} like any
other, identified with the client's login, whose L{ISignallingChannel} is a
L{RemoteChannel} that relays every message to the client's node. It joins
the room as its member, and the client's stream messages for this room's
streams are handed to it as they came (publishStream, playStream...), so
the media engine here answers the offer: the answer carries this node's
candidates and the media comes straight here.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from wcs import protocol
from wcs.access.tokens import Claims
from wcs.cluster.moves import dropParticipant, yieldInfo
from wcs.cluster.routing import checkClaims
from wcs.errors import RoomError, StreamError
from wcs.interfaces import ISignallingChannel
from wcs.logs import Logger
from wcs.messages import ServerMessage
from wcs.session import ClientSession


def claimsFromJson(value) -> Claims | None:
    """
    A visitor's token claims as its node sent them, or None.

    @raise ValueError: not claims (L{wcs.cluster.routing.checkClaims}, which
        the join and the resync's listing passed already).
    """
    checkClaims(value)
    if value is None:
        return None
    return Claims(value["login"], value["room"], frozenset(value["grants"]),
                  value.get("expires"))


@implementer(ISignallingChannel)
class RemoteChannel:
    """A visitor's signalling, relayed to the node its client is connected to."""

    def __init__(self, bus, node: str, session: str):
        self.bus = bus
        self.node = node
        self.session = session
        self.peer = f"cluster:{node}:{session}"

    def send(self, message: ServerMessage) -> None:
        self.bus.deliver(self.node, self.session, message)

    def close(self, reason: str) -> None:
        # An operator's close here: the client's node closes the connection.
        self.bus.send(self.node, {"op": "close", "session": self.session, "reason": reason})


class ProxySession(ClientSession):
    """
    A visitor's session on the room's node. Identified by its node (the
    access checks of connecting ran there), and not kept alive by pings: its
    node tells when the client is gone.
    """

    def __init__(self, server, channel: RemoteChannel, login: str, appKey: str,
                 claims: Claims | None = None):
        super().__init__(server, channel)
        server.sessions.add(self)  # listed, counted, closed at shutdown like others
        self.connection = protocol.Connection(appKey, login, None)
        self.claims = claims  # the token verified by the client's node

    def _startPinging(self) -> None:
        pass

    def removeFromRoom(self, room: str, info: str) -> bool:
        removed = super().removeFromRoom(room, info)
        if removed:
            self.channel.bus.send(self.channel.node, {
                "op": "removed", "session": self.channel.session, "room": room, "info": info})
        return removed


class Hosts:
    log = Logger()

    def __init__(self, bus, server, known=None):
        self.bus = bus
        self.server = server
        # node -> the incarnation heard from it (the service's), which a
        # media relay's header must name.
        self.known = known if known is not None else {}
        # (host, port) of this node's media relay, told in join answers.
        self.relayAddress: tuple[str, int] | None = None
        # (node, sessionId there) -> the visitor's session here.
        self.proxies: dict[tuple[str, str], ProxySession] = {}

    def peers(self) -> set[str]:
        return {node for node, _ in self.proxies}

    def join(self, payload: dict[str, Any]) -> None:
        node, session, room = payload["from"], payload["session"], payload["room"]
        reply = {"op": "joined", "id": payload.get("id"), "session": session, "room": room}
        try:
            participant = self.admit(node, session, room, payload)
        except RoomError as e:
            self.bus.send(node, {**reply, "error": e.info, "code": e.code})
            return
        self.bus.send(node, {**reply, "state": participant.room.state(participant.login),
                             "relay": self.relayAddress})

    def admit(self, node: str, session: str, room: str, payload: dict[str, Any]):
        """
        Join the visitor C{session} of C{node} to C{room} here, with the
        C{login}, C{appKey}, C{claims} and C{record} of C{payload} (a join,
        or a resync's listing).

        @return: its participant.
        @raise RoomError: refused (login taken, room full...).
        """
        proxy = self.proxies.get((node, session))
        if proxy is None:
            proxy = ProxySession(self.server, RemoteChannel(self.bus, node, session),
                                 str(payload["login"]), str(payload.get("appKey") or ""),
                                 claimsFromJson(payload.get("claims")))
        try:
            proxy.joinRoom(room, bool(payload.get("record")))
        except RoomError:
            self._retireIfIdle(node, session, proxy)
            raise
        self.proxies[(node, session)] = proxy
        return proxy.participants[room]

    def relayed(self, header: dict[str, Any], source, onStop):
        """
        A stream of a visitor, published on its node, whose frames now come
        here (L{wcs.cluster.media}): published by its session here, into
        its room, so the room announces it and players play it here.

        @return: (the visitor's session, the stream).
        @raise StreamError: no such visitor or room, or the name is taken.
        """
        node, session = header.get("node"), header.get("session")
        proxy = self.proxies.get((node, session))
        if proxy is None or self.known.get(node) != header.get("inc"):
            raise StreamError("no such visitor on this node")
        room = header.get("room")
        if room not in proxy.participants:
            raise StreamError(f"the visitor is not in room {room!r} here")
        return proxy, proxy.publish(str(header.get("stream")), source,
                                    str(header.get("provider") or "RTMP"),
                                    record=bool(header.get("record")), room=room,
                                    onStop=onStop)

    def command(self, payload: dict[str, Any]) -> None:
        """leave, disconnect, chat, announce, withdraw, stream of a visitor."""
        op, node, session = payload["op"], payload["from"], payload.get("session")
        proxy = self.proxies.get((node, session))
        if proxy is None:
            return  # already out (a kick, a node given up)
        if op == "disconnect":
            del self.proxies[(node, session)]
            proxy.connectionLost(f"its client left node {node}")
            return
        if op == "stream":
            proxy.messageReceived(str(payload.get("name")), payload.get("args") or [])
            return
        room = payload.get("room")
        participant = proxy.participants.get(room)
        if participant is None:
            return
        if op == "leave":
            del proxy.participants[room]
            proxy.streams.stopRoom(participant)
            participant.home.leave(participant)
            self._retireIfIdle(node, session, proxy)
        elif op == "chat":
            try:
                participant.home.chat(participant, str(payload.get("to")),
                                      str(payload.get("text")))
            except RoomError as e:  # left while the chat was on its way
                self.log.info("cluster: chat from {node} dropped: {info}",
                              node=node, info=e.info)
        elif op == "announce":
            participant.home.announceStream(participant, str(payload.get("stream")))
        elif op == "withdraw":
            participant.home.withdrawStream(participant, str(payload.get("stream")),
                                            failed=bool(payload.get("failed")))

    def moveOut(self, participant, node: str) -> bool:
        """
        A visitor's room here yields to the older one on C{node} (a split,
        the room already dissolved): its streams negotiated here end (the
        client negotiated with this node), and its node moves it there
        (L{wcs.cluster.moves}).

        @return: whether C{participant} was a visitor's.
        """
        proxy = participant.member
        if not isinstance(proxy, ProxySession):
            return False
        room = participant.room.name
        dropParticipant(proxy, participant)
        proxy.streams.stopRoom(participant, yieldInfo(node))
        channel = proxy.channel
        self.bus.send(channel.node, {"op": "moved", "session": channel.session, "room": room,
                                     "to": node})
        self._retireIfIdle(channel.node, channel.session, proxy)
        return True

    def _retireIfIdle(self, node: str, session: str, proxy: ProxySession) -> None:
        """A visitor in no room here and with no stream here is done."""
        if not proxy.participants and not proxy.streams.active:
            self.proxies.pop((node, session), None)
            proxy.connectionLost("in no room of this node")

    def nodeGone(self, node: str) -> None:
        """A node died: its clients' sessions here end as a disconnect would."""
        for key in [k for k in self.proxies if k[0] == node]:
            self.proxies.pop(key).connectionLost(f"node {node} is gone")
