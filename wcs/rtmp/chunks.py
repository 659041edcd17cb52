"""
The RTMP chunk stream, without I/O: messages cut into chunks of the agreed
size, interleaved by chunk stream id, with the four header formats.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wcs.rtmp.errors import RTMPProtocolError

# Message types.
SET_CHUNK_SIZE, ABORT, ACKNOWLEDGEMENT, USER_CONTROL = 1, 2, 3, 4
WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 5, 6
AUDIO, VIDEO = 8, 9
DATA_AMF3, SHARED_OBJECT_AMF3, COMMAND_AMF3 = 15, 16, 17
DATA_AMF0, SHARED_OBJECT_AMF0, COMMAND_AMF0 = 18, 19, 20
AGGREGATE = 22

DEFAULT_CHUNK_SIZE = 128
EXTENDED = 0xFFFFFF

_u32 = struct.Struct(">I")


@dataclass(slots=True)
class Message:
    type: int
    streamId: int
    timestamp: int
    payload: bytes
    chunkStream: int = 0


class _Incoming:
    """What a chunk stream id remembers between chunks."""

    __slots__ = ("timestamp", "delta", "length", "type", "streamId", "extended",
                 "partial", "received")

    def __init__(self):
        self.timestamp = self.delta = self.length = self.type = self.streamId = 0
        self.extended = False
        # The message so far: memory in proportion to its bytes, whatever the
        # chunk size (a list of chunks would cost ~50 bytes more per chunk).
        self.partial = bytearray()
        self.received = 0


class ChunkReader:
    """
    Bytes in, whole L{Message}s out.

    @param maxMessageSize: a message announcing more is an error.
    @param maxChunkStreams: distinct chunk stream ids one peer may use.
    @param minChunkSize: least chunk size the peer may set (tiny chunks cost
        a header and a parse each).
    @param maxPending: bytes of unfinished messages held at once, over all
        chunk streams.
    """

    def __init__(self, maxMessageSize: int = 4 << 20, maxChunkStreams: int = 64,
                 maxChunkSize: int = 1 << 24, minChunkSize: int = 1,
                 maxPending: int = 1 << 30):
        self.chunkSize = DEFAULT_CHUNK_SIZE
        self.maxMessageSize = maxMessageSize
        self.maxChunkStreams = maxChunkStreams
        self.maxChunkSize = maxChunkSize
        self.minChunkSize = minChunkSize
        self.maxPending = maxPending
        self.pending = 0
        self.streams: dict[int, _Incoming] = {}
        self.buffer = bytearray()
        self.bytesReceived = 0

    def setChunkSize(self, size: int) -> None:
        if not max(1, self.minChunkSize) <= size <= min(self.maxChunkSize, 0x7FFFFFFF):
            raise RTMPProtocolError(f"chunk size {size} is out of range "
                                    f"{self.minChunkSize}..{self.maxChunkSize}")
        self.chunkSize = size

    def abort(self, chunkStream: int) -> None:
        state = self.streams.get(chunkStream)
        if state is not None:
            self.pending -= state.received
            state.partial, state.received = bytearray(), 0

    def receive(self, data: bytes) -> list[Message]:
        self.bytesReceived += len(data)
        self.buffer += data
        messages: list[Message] = []
        while True:
            message, used = self._chunk()
            if used == 0:
                return messages
            del self.buffer[:used]
            if message is not None:
                messages.append(message)
                if message.type == SET_CHUNK_SIZE and message.streamId == 0:
                    # Applies to the chunks that follow, in this same buffer.
                    if len(message.payload) < 4:
                        raise RTMPProtocolError("Set Chunk Size message too short")
                    self.setChunkSize(_u32.unpack_from(message.payload)[0] & 0x7FFFFFFF)

    def _chunk(self) -> tuple[Message | None, int]:
        """Parse one chunk at the start of the buffer: (message or None, bytes used)."""
        buf = self.buffer
        size = len(buf)
        if size < 1:
            return None, 0
        fmt, csid = buf[0] >> 6, buf[0] & 0x3F
        pos = 1
        if csid == 0:
            if size < 2:
                return None, 0
            csid, pos = buf[1] + 64, 2
        elif csid == 1:
            if size < 3:
                return None, 0
            csid, pos = buf[1] + 64 + buf[2] * 256, 3
        headerSize = (11, 7, 3, 0)[fmt]
        if size < pos + headerSize:
            return None, 0
        state = self.streams.get(csid)
        if state is None:
            if fmt != 0:
                raise RTMPProtocolError(f"chunk stream {csid} starts without a full header")
            if len(self.streams) >= self.maxChunkStreams:
                raise RTMPProtocolError("too many chunk streams")
            state = self.streams[csid] = _Incoming()
        starting = state.received == 0
        if fmt == 3 and not starting:
            extended = state.extended
            stamp = None
        else:
            if fmt != 3 and not starting:
                raise RTMPProtocolError(f"chunk stream {csid}: new header inside a message")
            stamp = int.from_bytes(buf[pos:pos + 3], "big") if fmt < 3 else None
            extended = stamp == EXTENDED if stamp is not None else state.extended
        length, mtype, streamId = state.length, state.type, state.streamId
        if fmt <= 1:
            length = int.from_bytes(buf[pos + 3:pos + 6], "big")
            mtype = buf[pos + 6]
        if fmt == 0:
            streamId = int.from_bytes(buf[pos + 7:pos + 11], "little")
        pos += headerSize
        if extended:
            if size < pos + 4:
                return None, 0
            extendedStamp = _u32.unpack_from(buf, pos)[0]
            pos += 4
            if stamp is not None:
                stamp = extendedStamp
            elif starting:
                stamp = extendedStamp  # fmt 3 starting a new message: repeated extended delta
        if length > self.maxMessageSize:
            raise RTMPProtocolError(f"message of {length} bytes is over the limit "
                                    f"of {self.maxMessageSize}")
        take = min(self.chunkSize, length - state.received)
        if size < pos + take:
            return None, 0
        # Commit the header only once the whole chunk is here.
        if starting:
            if fmt == 0:
                state.timestamp, state.delta = stamp, 0
            elif fmt in (1, 2):
                state.delta = stamp
                state.timestamp = (state.timestamp + stamp) & 0xFFFFFFFF
            else:
                state.timestamp = (state.timestamp + (stamp if extended else state.delta)) \
                    & 0xFFFFFFFF
            state.length, state.type, state.streamId = length, mtype, streamId
            state.extended = extended
        if starting and take == length:
            payload = bytes(buf[pos:pos + take])  # a message in one chunk: no copy kept
        else:
            if self.pending + take > self.maxPending:
                raise RTMPProtocolError(f"over {self.maxPending} bytes of unfinished messages")
            self.pending += take
            state.partial += buf[pos:pos + take]
            state.received += take
            if state.received < state.length:
                return None, pos + take
            payload = bytes(state.partial)
            self.pending -= state.received
            state.partial, state.received = bytearray(), 0
        return Message(state.type, state.streamId, state.timestamp, payload, csid), pos + take


class ChunkWriter:
    """Messages in, chunk bytes out."""

    def __init__(self, chunkSize: int = DEFAULT_CHUNK_SIZE):
        self.chunkSize = chunkSize
        # chunk stream id -> (stream id, type, length, timestamp) of its last message
        self.last: dict[int, tuple[int, int, int, int]] = {}

    @staticmethod
    def _basic(fmt: int, csid: int) -> bytes:
        if csid < 64:
            return bytes([(fmt << 6) | csid])
        if csid < 320:
            return bytes([fmt << 6, csid - 64])
        return bytes([(fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])

    def write(self, csid: int, mtype: int, streamId: int, timestamp: int, payload: bytes) -> bytes:
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        last = self.last.get(csid)
        if last is not None and last[0] == streamId and timestamp >= last[3]:
            delta = timestamp - last[3]
            fmt = 2 if (last[1], last[2]) == (mtype, length) else 1
            field = delta
        else:
            fmt, field = 0, timestamp
        self.last[csid] = (streamId, mtype, length, timestamp)
        extended = field >= EXTENDED
        stamp = (EXTENDED if extended else field).to_bytes(3, "big")
        if fmt == 0:
            header = stamp + length.to_bytes(3, "big") + bytes([mtype]) + \
                streamId.to_bytes(4, "little")
        elif fmt == 1:
            header = stamp + length.to_bytes(3, "big") + bytes([mtype])
        else:
            header = stamp
        ext = _u32.pack(field) if extended else b""
        size = self.chunkSize
        out = [self._basic(fmt, csid), header, ext, payload[:size]]
        if length > size:
            continuation = self._basic(3, csid) + ext
            for start in range(size, length, size):
                out.append(continuation)
                out.append(payload[start:start + size])
        return b"".join(out)
