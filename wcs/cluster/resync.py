"""
The resync after a Redis outage (docs/cluster.md, "Resync after an outage").

Pub/sub is at most once: what nodes relayed to each other while Redis was
away, or while a node's subscription was down, is lost, among it a
visitor's C{leave} or C{disconnect} (a ghost member on the room's node) and
room events for visitors (a stale roster). When this node sees Redis back
(its heartbeat reached Redis after failing or found its own key gone, or
its subscription came back), it waits until it hears its channel again and
then sends every node it knows one C{members} message: for each room of
that node visited from here, which of this node's clients are members and
which streams they announced there (C{ask}: answer with yours). The room's
node makes its members of this node match the listing: a visitor no longer
listed leaves (LEFT to everyone, its streams end, as a relayed leave), one
listed but missing joins again (a refusal takes it out of the room on its
node, as a kick), announced streams are announced or withdrawn; then it
sends a fresh C{state} of each listed room, from which this node tells its
members there what they missed (JOINED, LEFT, PUBLISHED, UNPUBLISHED).

Both ends apply differences, so a resync repeated changes nothing. Each
node resyncs once per outage signal (signals within L{SETTLE} make one),
and the node whose channel came back last asks the others, so every pair
is resynced after its last outage whichever node noticed first.

Bus payloads (C{op}): C{members} (to a room's node), C{state} (to a
client's node).
"""

from __future__ import annotations

from typing import Any

from wcs.cluster.relay import claimsAsJson
from wcs.cluster.routing import checkClaims
from wcs.errors import RoomError
from wcs.logs import Logger, clip
from wcs.room.events import streamEntry

SETTLE = 1.0  # seconds from an outage signal to the resync: the other signals join it
LEAVE_INFO = "left while Redis was away"
STREAM_LOST = "the stream was lost on the room's node while this node was away"


def rosterOf(entries: list[Any]) -> dict[str, dict[str, None]]:
    """login -> announced stream names, from STATE-shaped entries."""
    roster: dict[str, dict[str, None]] = {}
    for entry in entries:
        if isinstance(entry, dict):
            login, name = entry.get("login"), entry.get("name")
            if isinstance(login, str) and isinstance(name, str):
                roster.setdefault(login, {})[name] = None
        elif isinstance(entry, str):
            roster.setdefault(entry, {})
    return roster


def missed(old: dict[str, dict[str, None]], new: dict[str, dict[str, None]],
           me: str) -> list[tuple[str, Any]]:
    """
    The room events that take a member who saw C{old} to C{new}, in the
    order the room makes them (a participant's streams end before it leaves,
    it joins before it publishes).
    """
    events: list[tuple[str, Any]] = []
    for login, streams in old.items():
        if login == me:
            continue
        kept = new.get(login)
        for stream in streams:
            if kept is None or stream not in kept:
                events.append(("UNPUBLISHED", streamEntry(login, stream)))
        if kept is None:
            events.append(("LEFT", login))
    for login, streams in new.items():
        if login == me:
            continue
        known = old.get(login)
        if known is None:
            events.append(("JOINED", login))
        for stream in streams:
            if known is None or stream not in known:
                events.append(("PUBLISHED", streamEntry(login, stream)))
    return events


def readMembers(payload: dict[str, Any]) -> tuple[dict[str, dict[str, dict]], set[str],
                                                  set[tuple[str, str]]]:
    """
    The listing of a C{members} message: {room: {session: entry}}, the
    sessions of the sender still relaying streams here, and its joins on
    their way here (session, room).

    @raise ValueError: not a listing.
    """
    rooms, sessions = payload.get("rooms"), payload.get("sessions")
    joining = payload.get("joining") or []
    if not isinstance(rooms, dict) or not isinstance(sessions, list) \
            or not all(isinstance(s, str) for s in sessions):
        raise ValueError("members without rooms and sessions")
    if not isinstance(joining, list) or not all(
            isinstance(j, list) and len(j) == 2 and all(isinstance(x, str) for x in j)
            for j in joining):
        raise ValueError("joining not a list of [session, room]")
    listed: dict[str, dict[str, dict]] = {}
    for room, entries in rooms.items():
        if not isinstance(entries, list):
            raise ValueError("members of a room not a list")
        for entry in entries:
            if not (isinstance(entry, dict) and isinstance(entry.get("session"), str)
                    and isinstance(entry.get("login"), str)
                    and isinstance(entry.get("streams"), list)
                    and all(isinstance(s, str) for s in entry["streams"])):
                raise ValueError("a member without session, login or streams")
            checkClaims(entry.get("claims"))
            listed.setdefault(room, {})[entry["session"]] = entry
    return listed, set(sessions), {(session, room) for session, room in joining}


class Resync:
    log = Logger()

    def __init__(self, bus, visitors, hosts, server, clock, known: dict[str, str]):
        """
        @param known: node -> incarnation of every node heard from (the
            service's): the nodes a resync goes to.
        """
        self.bus = bus
        self.visitors = visitors
        self.hosts = hosts
        self.server = server
        self.clock = clock
        self.known = known
        self.scheduled = None

    def outage(self, why: str) -> None:
        """Redis is back after an outage: resync once this node hears its channel."""
        if self.scheduled is not None:
            return  # one resync for the signals of one outage
        self.log.info("cluster: Redis back ({why}): resyncing rooms with the other nodes",
                      why=why)
        self.scheduled = self.clock.callLater(SETTLE, self._whenHeard)

    def stop(self) -> None:
        if self.scheduled is not None and self.scheduled.active():
            self.scheduled.cancel()

    def _whenHeard(self) -> None:
        self.bus.whenSubscribed().addCallback(lambda _: self._send())

    def _send(self) -> None:
        self.scheduled = None
        for node in sorted(self.known):
            self.sendTo(node, ask=True)

    def sendTo(self, node: str, ask: bool) -> None:
        """This node's members of the rooms of C{node}, and its streams relayed there."""
        rooms: dict[str, list[dict[str, Any]]] = {}
        for room in self.visitors.rooms.values():
            if room.node != node:
                continue
            rooms[room.name] = [{
                "session": sessionId, "login": p.login,
                "appKey": p.member.connection.appKey if p.member.connection else "",
                "claims": claimsAsJson(getattr(p.member, "claims", None)),
                # Announced here and not pushed: a pushed stream is the room
                # node's own (published there from the relayed frames).
                "streams": [s for s in p.streams if s not in p.pushes]}
                for sessionId, p in room.members.items() if not p.gone]
        sessions = [s for s, streams in self.visitors.streams.nodes.items()
                    if node in streams.values()]
        # Joins on their way: the room's node may hold them before their answer.
        joining = [[session, room] for _, _, session, room, to in
                   self.visitors.pending.values() if to == node]
        # Its streams there (publishes and plays), by mediaSessionId: one the
        # room's node no longer holds (it gave this node up) fails.
        relayed = [[session, media] for session, streams in self.visitors.streams.nodes.items()
                   for media, to in streams.items() if to == node]
        self.bus.send(node, {"op": "members", "ask": ask, "rooms": rooms,
                             "sessions": sessions, "joining": joining, "relayed": relayed})

    # The room's node

    def members(self, payload: dict[str, Any]) -> None:
        """A node listed its members of rooms here: make them match."""
        node = payload["from"]
        listed, relaying, joining = readMembers(payload)
        hosts = self.hosts
        dropped = added = 0
        for (of, session), proxy in list(hosts.proxies.items()):
            if of != node:
                continue
            if not any(session in members for members in listed.values()) \
                    and session not in relaying and not any(j[0] == session for j in joining):
                dropped += len(proxy.participants)
                hosts.command({"op": "disconnect", "from": node, "session": session})
                continue
            for room in list(proxy.participants):
                if session not in listed.get(room, {}) and (session, room) not in joining:
                    dropped += 1
                    hosts.command({"op": "leave", "from": node, "session": session,
                                   "room": room})
        for roomName, members in listed.items():
            room = self.server.rooms.rooms.get(roomName)
            for session, entry in members.items():
                proxy = hosts.proxies.get((node, session))
                participant = proxy.participants.get(roomName) if proxy else None
                if participant is None:
                    if room is None:
                        self._remove(node, session, roomName,
                                     "the room ended on its node while Redis was away")
                        continue
                    try:
                        participant = hosts.admit(node, session, roomName, entry)
                    except RoomError as e:
                        self._remove(node, session, roomName, e.info)
                        continue
                    added += 1
                self._streams(participant, hosts.proxies[(node, session)], entry["streams"])
            if room is not None:
                self.bus.send(node, {"op": "state", "room": roomName, "state": [
                    e for p in room.participants.values() for e in p.stateEntries()]})
        self._lost(node, payload.get("relayed") or [])
        if dropped or added:
            self.log.info("cluster: resync with {node}: {dropped} memberships dropped, "
                          "{added} added", node=node, dropped=dropped, added=added)
        if payload.get("ask"):
            self.sendTo(node, ask=False)

    @staticmethod
    def _streams(participant, proxy, wanted: list[str]) -> None:
        """Announce and withdraw the streams announced from the visitor's node;
        those published here (forwarded or pushed) are this node's own."""
        own = {s.name for s in proxy.streams.active.values() if s.published}
        for stream in list(participant.streams):
            if stream not in wanted and stream not in own:
                participant.home.withdrawStream(participant, stream)
        for stream in wanted:
            if stream not in participant.streams:
                participant.home.announceStream(participant, stream)

    def _lost(self, node: str, relayed: Any) -> None:
        """
        Streams the node relays here that this node no longer holds (it gave
        that node up, ending them): FAILED to their client, which may start
        them again; its node forgets them on that status (L{Visitors.deliver}).
        """
        if not isinstance(relayed, list):
            return
        for entry in relayed:
            if not (isinstance(entry, list) and len(entry) == 2
                    and all(isinstance(x, str) for x in entry)):
                continue
            session, media = entry
            proxy = self.hosts.proxies.get((node, session))
            if proxy is not None and media in proxy.streams.active:
                continue
            self.log.info("cluster: resync with {node}: stream {media} of {session} is no "
                          "longer here: FAILED", node=node, media=clip(media),
                          session=clip(session))
            self.bus.send(node, {"op": "deliver", "to": [session],
                                 "name": "notifyStreamStatusEvent", "args": [{
                                     "mediaSessionId": media, "name": "", "status": "FAILED",
                                     "info": STREAM_LOST}]})

    def _remove(self, node: str, session: str, room: str, info: str) -> None:
        """A member there that cannot be one here: out of the room there, as a kick."""
        self.bus.send(node, {"op": "removed", "session": session, "room": room,
                             "info": info})

    # The client's node

    def _pushAgain(self, participant, listed: dict[str, None]) -> None:
        """
        A stream whose push to the room's node was lost (that node gave this
        one up during a stall, ending its copy and the connection) and that
        the room no longer lists is pushed anew: the room's node has joined
        its member again by now, and publishes it (PUBLISHED) as before.
        """
        for name in [n for n, push in participant.pushes.items()
                     if push.lost and n not in listed]:
            del participant.pushes[name]
            self.log.info("cluster: pushing {stream} to node {node} again",
                          stream=clip(name), node=participant.room.node)
            participant.home.announceStream(participant, name)

    def state(self, payload: dict[str, Any]) -> None:
        """A fresh state of a visited room: tell its members here what they missed."""
        room = self.visitors.rooms.get(payload["room"])
        if room is None or room.node != payload["from"]:
            return
        new = rosterOf(payload.get("state") or [])
        members = list(room.members.values())
        for participant in members:
            new.setdefault(participant.login, {})  # listed unless on its way out
        old, count = room.roster, 0
        for participant in members:
            for name, info in missed(old, new, participant.login):
                participant.member.send(room.event(name, info))
                count += 1
        room.roster = new
        for participant in members:
            self._pushAgain(participant, new[participant.login])
        if count:  # once per room and resync
            self.log.info("cluster: resync of room {room}: its members here had missed "
                          "{count} events", room=clip(room.name), count=count)
