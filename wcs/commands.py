"""
A session's room commands: the C{sendData} requests C{join}, C{leave} and
C{sendMessage}, each asked of the access policy and answered with a
C{DataStatusEvent}, and the chat fast path, by which a transport hands over
a C{sendMessage} it read without decoding (L{wcs.messages.chatFrame}).

A mixin of L{wcs.session.ClientSession}, which owns the state these use
(C{participants}, C{gate}, C{server}, C{limits}, C{logLevel}) and the room
membership (C{_enterRoom}); apart so that the hot path of every chat
delivery reads on its own, next to the commands it must agree with.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed

from wcs import protocol
from wcs.access.hooks import ALLOW
from wcs.errors import INVALID, ProtocolError, RoomError
from wcs.logs import clip
from wcs.protocol import chatProblem
from wcs.room.events import ACCEPTED, FAILED, dataStatus

# Log levels (connection/set_log_level) at which a client's messages are
# logged: a traced client's chat goes the ordinary way, which logs it.
TRACED = frozenset({"DEBUG", "TRACE"})


class RoomCommands:
    """C{sendData} for L{wcs.session.ClientSession} (its C{_handlers})."""

    def _sendData(self, name: str, args: list[Any]) -> None:
        request = protocol.parseSendData(args)
        command = self._COMMANDS.get(request.command)
        try:
            if command is None:
                raise ProtocolError(f"unknown command {request.command!r}")
            # join and sendMessage ask the access policy first: the command
            # itself runs when the answer is in.
            decision, act = command(self, request.options)
        except (ProtocolError, RoomError) as e:
            self._commandFailed(request, e.info, e.code)
            return
        self.gate.after(decision, lambda d: self._decided(request, d, act))

    def _decided(self, request: protocol.DataRequest, decision, act) -> None:
        if self.closed:
            return
        if not decision.allowed:
            self._commandFailed(request, decision.reason)
            return
        try:
            act(decision)
        except (ProtocolError, RoomError) as e:
            self._commandFailed(request, e.info, e.code)
            return
        self.send(dataStatus(request.operationId, ACCEPTED))
        if request.command == "join":
            participant = self.participants[request.options["name"]]
            room = participant.room
            self.send(room.event("STATE", room.state(participant.login)))

    def _commandFailed(self, request: protocol.DataRequest, info: str,
                       code: str = INVALID) -> None:
        self.badInput("failed", "{session}: {command} failed: {info}",
                      session=self, command=clip(request.command, 40), info=clip(info, 200))
        self.send(dataStatus(request.operationId, FAILED, info, refusal=code))

    def _join(self, options: dict[str, Any]):
        join = protocol.parseJoin(options, self.limits)
        placed: dict[str, Any] = {}

        def act(decision) -> None:
            if "refused" in placed:
                raise placed["refused"]  # by the room's node: its text and code
            record = join.record if decision.record is None else decision.record
            self._enterRoom(join.room, record, placed.get("participant"))
        decision = self.server.access.join(self, join.room, join.record)
        placement = self.server.placement
        if placement is not None:
            decision.addCallback(self._place, placement, join, placed)
        return decision, act

    def _place(self, decision, placement, join: protocol.Join, placed: dict[str, Any]):
        """
        In a cluster (L{wcs.cluster}), a room lives on one node: ask where,
        and join it there when that is another node. The join's answer waits
        for it (the gate holds this client's later messages meanwhile).
        """
        if not decision.allowed or not self.login or join.room in self.participants:
            return decision
        record = join.record if decision.record is None else decision.record

        def entered(participant):
            if participant is not None:
                if self.closed:
                    participant.home.disconnect(participant)
                placed["participant"] = participant
            return decision

        def refused(failure):
            failure.trap(RoomError)
            placed["refused"] = failure.value
            return decision
        return placement.enter(self, join.room, self.login, record).addCallbacks(
            entered, refused)

    def _leave(self, options: dict[str, Any]):
        leave = protocol.parseLeave(options, self.limits)

        def act(decision) -> None:
            participant = self.participants.pop(leave.room, None)
            if participant is None:
                raise RoomError(f"not in room {leave.room!r}")
            self.streams.stopRoom(participant)
            participant.home.leave(participant)
        return succeed(ALLOW), act

    def _chat(self, options: dict[str, Any]):
        chat = protocol.parseChat(options, self.limits)
        if chat.room not in self.participants:
            raise RoomError(f"not in room {chat.room!r}: join it before sending messages")
        return self.server.access.chat(self, *chat), self._chatAct(chat)

    def _chatAct(self, chat: protocol.Chat):
        def act(decision) -> None:
            sender = self.participants.get(chat.room)
            if sender is None:
                raise RoomError(f"not in room {chat.room!r}: join it before sending messages")
            sender.home.chat(sender, chat.to, chat.text)
        return act

    def chatFrame(self, operationId: str, room: str, to: str, text: str) -> bool | str:
        """
        A C{sendData} C{sendMessage} that the transport read without
        decoding it (L{wcs.messages.chatFrame}): handled as
        L{wcs.session.ClientSession.messageReceived} would, in fewer steps, in the common case (nothing
        held, no trace, the sender in the room, lengths within the limits,
        the access decision already made); the gate's path when the decision
        is out. False: not handled, the transport decodes the frame the
        ordinary way (which also makes any refusal's text). C{ACCEPTED}:
        delivered, and the transport answers the C{DataStatusEvent} ACCEPTED
        of C{operationId} itself (a WebSocket writes it from a template);
        True: handled and answered.
        """
        # gate.held, not the gate's `waiting` property: a call less per message.
        if (self.closed or self.gate.held is not None or self.logLevel in TRACED
                or chatProblem(room, to, text, self.limits) is not None):
            return False
        sender = self.participants.get(room)
        if sender is None:
            return False
        self.heard = True
        access = self.server.access
        decision = access.chatNow(self, room)
        if decision is ALLOW:
            # What the gate and _decided would do, without their closures
            # and without a Deferred.
            try:
                sender.home.chat(sender, to, text)
            except (ProtocolError, RoomError) as e:
                self._commandFailed(protocol.DataRequest(operationId, "sendMessage", {}),
                                    e.info, e.code)
                return True
            return ACCEPTED
        decision = (access.askChat(self, room, to, text) if decision is None
                    else succeed(decision))
        request = protocol.DataRequest(operationId, "sendMessage", {})
        act = self._chatAct(protocol.Chat(room, to, text))
        self.gate.after(decision, lambda d: self._decided(request, d, act))
        return True

    # Not a dict of bound methods made per message (one per chat delivery).
    _COMMANDS = {"join": _join, "leave": _leave, "sendMessage": _chat}
