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
_u32le = struct.Struct("<I")
_HEADER_SIZES = (11, 7, 3, 0)


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
        # Bytes still missing from the chunk at the head of the buffer, once
        # its header is here (0 otherwise): the transport need not wake for less.
        self.wanted = 0
        self.offset = 0  # parsed bytes at the head of the buffer, during receive

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
        buf = self.buffer
        buf += data
        messages: list[Message] = []
        self.offset = 0
        try:
            while True:
                message = self._chunk(self.offset)
                if message is None:
                    return messages
                messages.append(message)
                if message.type == SET_CHUNK_SIZE and message.streamId == 0:
                    # Applies to the chunks that follow, in this same buffer.
                    if len(message.payload) < 4:
                        raise RTMPProtocolError("Set Chunk Size message too short")
                    self.setChunkSize(_u32.unpack_from(message.payload)[0] & 0x7FFFFFFF)
        finally:
            # One cut per read, not one per chunk (each cut moves the rest).
            if self.offset:
                del buf[:self.offset]
                self.offset = 0

    def _chunk(self, start: int) -> Message | None:
        """
        Parse chunks from C{start} in the buffer up to one that ends a message
        and return it, or None at a chunk not wholly here. L{offset} follows
        the chunks used, L{wanted} says what the next one lacks.
        """
        buf = self.buffer
        size = len(buf)
        streams = self.streams
        while True:
            self.offset, self.wanted = start, 0
            if size - start < 1:
                return None
            first = buf[start]
            fmt, csid = first >> 6, first & 0x3F
            pos = start + 1
            if csid == 0:
                if size < pos + 1:
                    return None
                csid, pos = buf[pos] + 64, pos + 1
            elif csid == 1:
                if size < pos + 2:
                    return None
                csid, pos = buf[pos] + 64 + buf[pos + 1] * 256, pos + 2
            headerSize = _HEADER_SIZES[fmt]
            if size < pos + headerSize:
                return None
            state = streams.get(csid)
            if state is None:
                if fmt != 0:
                    raise RTMPProtocolError(f"chunk stream {csid} starts without a full header")
                if len(streams) >= self.maxChunkStreams:
                    raise RTMPProtocolError("too many chunk streams")
                state = streams[csid] = _Incoming()
            starting = state.received == 0
            if fmt == 3:
                extended = state.extended
                stamp = None
            else:
                if not starting:
                    raise RTMPProtocolError(f"chunk stream {csid}: new header inside a message")
                stamp = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                extended = stamp == EXTENDED
            if fmt <= 1:
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                mtype = buf[pos + 6]
                streamId = _u32le.unpack_from(buf, pos + 7)[0] if fmt == 0 else state.streamId
            else:
                length, mtype, streamId = state.length, state.type, state.streamId
            pos += headerSize
            if extended:
                if size < pos + 4:
                    return None
                extendedStamp = _u32.unpack_from(buf, pos)[0]
                pos += 4
                if stamp is not None or starting:
                    # (fmt 3 starting a new message: a repeated extended delta)
                    stamp = extendedStamp
            if length > self.maxMessageSize:
                raise RTMPProtocolError(f"message of {length} bytes is over the limit "
                                        f"of {self.maxMessageSize}")
            take = min(self.chunkSize, length - state.received)
            end = pos + take
            if size < end:
                self.wanted = end - size
                return None
            # Commit the header only once the whole chunk is here.
            if starting:
                if fmt == 0:
                    state.timestamp, state.delta = stamp, 0
                elif fmt != 3:
                    state.delta = stamp
                    state.timestamp = (state.timestamp + stamp) & 0xFFFFFFFF
                else:
                    state.timestamp = (state.timestamp + (stamp if extended else state.delta)) \
                        & 0xFFFFFFFF
                state.length, state.type, state.streamId = length, mtype, streamId
                state.extended = extended
                if take == length:  # a message in one chunk: no copy kept
                    self.offset = end
                    return Message(mtype, streamId, state.timestamp, bytes(buf[pos:end]), csid)
            if self.pending + take > self.maxPending:
                raise RTMPProtocolError(f"over {self.maxPending} bytes of unfinished messages")
            self.pending += take
            state.partial += buf[pos:end]
            state.received += take
            start = end
            if state.received < state.length:
                continue
            payload = bytes(state.partial)
            self.pending -= state.received
            state.partial, state.received = bytearray(), 0
            self.offset = end
            return Message(state.type, state.streamId, state.timestamp, payload, csid)


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
