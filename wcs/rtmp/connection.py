"""
One RTMP server connection, without I/O: bytes in, events out; calls that
queue bytes to send.

Protocol control (chunk size, acknowledgements, pings) is handled here; what
is left for the application comes out as L{Command}, L{Data} and L{Media}
events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from wcs.rtmp import amf0
from wcs.rtmp.chunks import (
    ABORT, ACKNOWLEDGEMENT, AUDIO, COMMAND_AMF0, COMMAND_AMF3, DATA_AMF0, DATA_AMF3,
    SET_CHUNK_SIZE, SET_PEER_BANDWIDTH, USER_CONTROL, VIDEO, WINDOW_ACK_SIZE,
    ChunkReader, ChunkWriter,
)
from wcs.rtmp.errors import RTMPProtocolError
from wcs.rtmp.handshake import ServerHandshake

# User control event types.
STREAM_BEGIN, STREAM_EOF, STREAM_DRY, SET_BUFFER_LENGTH = 0, 1, 2, 3
STREAM_IS_RECORDED, PING_REQUEST, PING_RESPONSE = 4, 6, 7

# Chunk stream ids the server sends on (any will do; these are customary).
CONTROL_CHUNKS, COMMAND_CHUNKS, DATA_CHUNKS, AUDIO_CHUNKS, VIDEO_CHUNKS = 2, 3, 5, 4, 6

_u32 = struct.Struct(">I")


@dataclass
class Command:
    """A remote call: C{connect}, C{publish}, C{sendData}, ..."""

    name: str
    transactionId: float
    commandObject: Any
    args: list[Any]
    streamId: int


@dataclass
class Data:
    """A data message (C{@setDataFrame}, C{onMetaData}): values as sent."""

    name: str
    values: list[Any]
    streamId: int
    timestamp: int
    payload: bytes = field(repr=False)


@dataclass
class Media:
    """An audio or video message: an FLV tag body."""

    type: int
    streamId: int
    timestamp: int
    payload: bytes = field(repr=False)


class ServerConnection:
    """
    @param minChunkSize: a peer setting a smaller chunk size is refused.
    @param maxPending: bytes of unfinished messages the peer may leave with us.
    @param maxAMFValues: what one command or data message may decode to
        (L{wcs.rtmp.amf3.Budget}).
    """

    def __init__(self, now: int = 0, maxMessageSize: int = 4 << 20,
                 maxChunkStreams: int = 64, maxChunkSize: int = 1 << 20,
                 outgoingChunkSize: int = 4096, minChunkSize: int = 1,
                 maxPending: int = 1 << 30, maxAMFValues: int = amf0.DEFAULT_MAX_VALUES):
        self.handshake = ServerHandshake(now)
        self.reader = ChunkReader(maxMessageSize, maxChunkStreams, maxChunkSize,
                                  minChunkSize, maxPending)
        self.maxAMFValues = maxAMFValues
        self.writer = ChunkWriter()
        self.outgoing: list[bytes] = []
        self.outgoingChunkSize = outgoingChunkSize
        self.windowAckSize = 0
        self.lastAck = 0

    # Bytes in

    def receive(self, data: bytes) -> list[Command | Data | Media]:
        if not self.handshake.done:
            self.handshake.receive(data)
            if self.handshake.output:
                self.outgoing.append(self.handshake.output)
                self.handshake.output = b""
            if not self.handshake.done:
                return []
            data = self.handshake.rest
            self._setChunkSize(self.outgoingChunkSize)
        events = []
        for message in self.reader.receive(data):
            event = self._message(message)
            if event is not None:
                events.append(event)
        self._acknowledge()
        return events

    def dataToSend(self) -> bytes:
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        return data

    def _acknowledge(self) -> None:
        received = self.reader.bytesReceived
        if self.windowAckSize and received - self.lastAck >= self.windowAckSize:
            self.lastAck = received
            self._control(ACKNOWLEDGEMENT, _u32.pack(received & 0xFFFFFFFF))

    def _message(self, message):
        mtype, payload = message.type, message.payload
        if mtype in (AUDIO, VIDEO):
            return Media(mtype, message.streamId, message.timestamp, payload)
        if mtype == COMMAND_AMF0 or mtype == COMMAND_AMF3:
            if mtype == COMMAND_AMF3:
                payload = payload[1:]  # a format byte, then AMF0 (with AVM+ switches)
            values = amf0.decode(payload, self.maxAMFValues)
            if len(values) < 2 or not isinstance(values[0], str):
                raise RTMPProtocolError("command message without a name and transaction id")
            transaction = values[1] if isinstance(values[1], (int, float)) else 0
            return Command(values[0], transaction, values[2] if len(values) > 2 else None,
                           values[3:], message.streamId)
        if mtype == DATA_AMF0 or mtype == DATA_AMF3:
            body = payload[1:] if mtype == DATA_AMF3 else payload
            values = amf0.decode(body, self.maxAMFValues)
            name = values[0] if values and isinstance(values[0], str) else ""
            return Data(name, values[1:], message.streamId, message.timestamp, body)
        if mtype == SET_CHUNK_SIZE:
            return None  # the reader applied it
        if mtype == ABORT:
            if len(payload) >= 4:
                self.reader.abort(_u32.unpack_from(payload)[0])
            return None
        if mtype == WINDOW_ACK_SIZE:
            if len(payload) >= 4:
                self.windowAckSize = _u32.unpack_from(payload)[0]
            return None
        if mtype == USER_CONTROL:
            if len(payload) >= 6 and struct.unpack_from(">H", payload)[0] == PING_REQUEST:
                self._userControl(PING_RESPONSE, payload[2:6])
            return None
        # Acknowledgement, peer bandwidth, shared objects, aggregates: not used.
        return None

    # Bytes out

    def _control(self, mtype: int, payload: bytes) -> None:
        self.outgoing.append(self.writer.write(CONTROL_CHUNKS, mtype, 0, 0, payload))

    def _userControl(self, event: int, body: bytes) -> None:
        self._control(USER_CONTROL, struct.pack(">H", event) + body)

    def _setChunkSize(self, size: int) -> None:
        self._control(SET_CHUNK_SIZE, _u32.pack(size))
        self.writer.chunkSize = size

    def acceptConnect(self, transactionId: float, windowAckSize: int = 2500000,
                      properties: dict | None = None, information: dict | None = None) -> None:
        """Answer C{connect}: window, bandwidth, then C{_result}."""
        self._control(WINDOW_ACK_SIZE, _u32.pack(windowAckSize))
        self._control(SET_PEER_BANDWIDTH, _u32.pack(windowAckSize) + b"\x02")
        self._userControl(STREAM_BEGIN, _u32.pack(0))
        info = {"level": "status", "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.", "objectEncoding": 0.0}
        info.update(information or {})
        self.result(transactionId, properties or {"fmsVer": "FMS/3,5,7,7009",
                                                  "capabilities": 31.0}, info)

    def result(self, transactionId: float, *values: Any) -> None:
        self.command(0, "_result", transactionId, *values)

    def error(self, transactionId: float, code: str, description: str) -> None:
        self.command(0, "_error", transactionId, None,
                     {"level": "error", "code": code, "description": description})

    def command(self, streamId: int, name: str, transactionId: float, *values: Any) -> None:
        payload = amf0.encodeAll(name, transactionId, *values)
        self.outgoing.append(self.writer.write(COMMAND_CHUNKS, COMMAND_AMF0, streamId, 0, payload))

    def call(self, name: str, *args: Any) -> None:
        """Invoke a method on the client (no answer expected): transaction 0, null object."""
        self.command(0, name, 0, None, *args)

    def onStatus(self, streamId: int, code: str, description: str, level: str = "status",
                 **extra: Any) -> None:
        info = {"level": level, "code": code, "description": description}
        info.update(extra)
        self.command(streamId, "onStatus", 0, None, info)

    def streamBegin(self, streamId: int) -> None:
        self._userControl(STREAM_BEGIN, _u32.pack(streamId))

    def streamEOF(self, streamId: int) -> None:
        self._userControl(STREAM_EOF, _u32.pack(streamId))

    def pingRequest(self, timestamp: int) -> None:
        """
        Ask the peer to answer (user control PING_RESPONSE): how the server
        hears from a player, which otherwise sends nothing after C{play}.
        """
        self._userControl(PING_REQUEST, _u32.pack(timestamp & 0xFFFFFFFF))

    def data(self, streamId: int, timestamp: int, payload: bytes) -> None:
        self.outgoing.append(self.writer.write(DATA_CHUNKS, DATA_AMF0, streamId, timestamp, payload))

    def media(self, mtype: int, streamId: int, timestamp: int, payload: bytes) -> bytes:
        """Chunks of one audio or video message (returned, not queued: the hot path)."""
        csid = VIDEO_CHUNKS if mtype == VIDEO else AUDIO_CHUNKS
        return self.writer.write(csid, mtype, streamId, timestamp, payload)
