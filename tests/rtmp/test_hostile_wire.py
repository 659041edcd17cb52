"""
Hostile bytes against the RTMP wire layer, without sockets: AMF reference
bombs, cycles, encoder robustness, chunk buffering limits.
"""

import struct
import time
import tracemalloc

import pytest

from wcs.rtmp import amf0, amf3, chunks
from wcs.rtmp.connection import ServerConnection
from wcs.rtmp.errors import RTMPProtocolError


def amf0Bomb(levels: int) -> bytes:
    """
    A strict array of C{levels} arrays, each holding two references to the
    one before: a few bytes per level, 2**levels values once walked.
    """
    parts = [bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", 2) + b"\x05\x05"]
    for i in range(1, levels):
        ref = bytes([amf0.REFERENCE]) + struct.pack(">H", i)  # index 0 is the outer array
        parts.append(bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", 2) + ref + ref)
    return bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", levels) + b"".join(parts)


def u29(n: int) -> bytes:
    return amf3._u29(n)


def amf3Bomb(levels: int) -> bytes:
    """The same in AMF3 (object references are U29 headers with the low bit clear)."""
    parts = [bytes([amf3.ARRAY]) + u29(5) + b"\x01\x01\x01"]
    for i in range(1, levels):
        ref = bytes([amf3.ARRAY]) + u29(i << 1)
        parts.append(bytes([amf3.ARRAY]) + u29(5) + b"\x01" + ref + ref)
    return bytes([amf3.ARRAY]) + u29((levels << 1) | 1) + b"\x01" + b"".join(parts)


@pytest.mark.parametrize("data", [amf0Bomb(60), bytes([amf0.AVMPLUS]) + amf3Bomb(60)],
                         ids=["amf0", "amf3"])
def test_reference_bomb_is_refused_in_bounded_time(data):
    assert len(data) < 700
    start = time.process_time()
    with pytest.raises(RTMPProtocolError, match="decodes to more than 1000 values"):
        amf0.decode(data, maxValues=1000)
    with pytest.raises(RTMPProtocolError, match="more than"):
        amf0.decode(data)  # the default budget
    # Decoding stops at the budget: far below the 2**60 values of the walk.
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize("bomb", [amf0Bomb, lambda n: bytes([amf0.AVMPLUS]) + amf3Bomb(n)],
                         ids=["amf0", "amf3"])
def test_references_within_the_budget_decode_and_cost_what_they_point_to(bomb):
    # 8 levels: the walk meets 2**8 - 1 inner arrays' values.
    [value] = amf0.decode(bomb(8))
    assert value[7][0] is value[6] and value[7][1] is value[6]
    reader = amf0.Reader(bomb(8), budget=amf3.Budget(10_000))
    reader.value()
    walked = len(repr(value).replace("[", ""))
    assert reader.budget.used > 500 and walked > 500  # cost grows as the walk does


def test_a_shared_object_as_flash_sends_it_still_decodes():
    shared = bytes([amf0.OBJECT]) + b"\x00\x01a" + amf0.encode(1.0) + b"\x00\x00\x09"
    data = amf0.encode("connect") + amf0.encode(1.0) + bytes([amf0.STRICT_ARRAY]) + \
        struct.pack(">I", 2) + shared + bytes([amf0.REFERENCE]) + struct.pack(">H", 1)
    assert amf0.decode(data) == ["connect", 1.0, [{"a": 1.0}, {"a": 1.0}]]


def test_an_object_that_contains_itself_is_refused():
    amf0Cycle = bytes([amf0.OBJECT]) + b"\x00\x04self" + bytes([amf0.REFERENCE]) + \
        b"\x00\x00" + b"\x00\x00\x09"
    with pytest.raises(RTMPProtocolError, match="AMF0 object contains itself"):
        amf0.decode(amf0Cycle)
    # AMF3: a dynamic anonymous object whose member "me" refers to object 0.
    amf3Cycle = bytes([amf3.OBJECT, 0x0B, 0x01]) + u29((2 << 1) | 1) + b"me" + \
        bytes([amf3.OBJECT]) + u29(0) + b"\x01"
    with pytest.raises(RTMPProtocolError, match="AMF3 object contains itself"):
        amf3.decode(amf3Cycle)


def test_references_cannot_nest_deeper_than_a_value_may():
    # Each array refers to the previous one: nesting grows one level per array.
    parts = [bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", 0)]
    for i in range(1, 100):
        parts.append(bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", 1) +
                     bytes([amf0.REFERENCE]) + struct.pack(">H", i))
    data = bytes([amf0.STRICT_ARRAY]) + struct.pack(">I", 100) + b"".join(parts)
    with pytest.raises(RTMPProtocolError, match="nested too deeply"):
        amf0.decode(data)


def test_long_strings_count_against_the_budget_when_referred_to_again():
    # AMF3 string references: 100 references to one 64 KiB string.
    text = "x" * 65536
    data = bytes([amf3.ARRAY]) + u29((101 << 1) | 1) + b"\x01" + \
        bytes([amf3.STRING]) + amf3._string(text) + (bytes([amf3.STRING]) + u29(0)) * 100
    assert len(data) < 70_000
    with pytest.raises(RTMPProtocolError, match="more than 50000 values"):
        amf3.decode(data, maxValues=50_000)
    assert len(amf3.decode(data, maxValues=200_000)[0]) == 101


def test_trait_references_count_their_member_names():
    names = [f"member{i:04d}" + "n" * 500 for i in range(50)]
    traits = u29((len(names) << 4) | 3) + amf3._string("") + b"".join(
        amf3._string(n) for n in names)
    first = bytes([amf3.OBJECT]) + traits + b"\x01" * len(names)
    again = bytes([amf3.OBJECT]) + u29(1) + b"\x01" * len(names)  # traits reference 0
    data = bytes([amf3.ARRAY]) + u29((41 << 1) | 1) + b"\x01" + first + again * 40
    with pytest.raises(RTMPProtocolError, match="more than"):
        amf3.decode(data, maxValues=10_000)


def test_encoders_take_bytes_and_refuse_cycles_clearly():
    decoded = amf0.decode(bytes([amf0.AVMPLUS, amf3.BYTE_ARRAY]) + u29((3 << 1) | 1) + b"abc")
    assert decoded == [b"abc"]
    assert amf0.decode(amf0.encodeAll(*decoded)) == [b"abc"]
    assert amf3.decode(amf3.encode(bytearray(b"xy"))) == [b"xy"]
    loop: dict = {"a": 1.0}
    loop["self"] = loop
    for encode in (amf0.encode, amf3.encode):
        with pytest.raises(ValueError, match="contains itself"):
            encode(loop)
        with pytest.raises(ValueError, match="contains itself"):
            encode([[loop]])
    shared = {"a": 1.0}
    assert amf0.decode(amf0.encode([shared, shared])) == [[shared, shared]]  # not a cycle
    deep: list = []
    for _ in range(500):
        deep = [deep]
    for encode in (amf0.encode, amf3.encode):
        with pytest.raises(ValueError, match="nested deeper than"):
            encode(deep)
    with pytest.raises(TypeError, match="cannot encode object as AMF0"):
        amf0.encode(object())


# Chunk buffering

def chunked(csid: int, length: int, payload: bytes, chunkSize: int, mtype: int = 9) -> bytes:
    """The first C{len(payload)} bytes of a message of C{length}, cut in chunks."""
    out = bytes([csid]) + bytes(3) + length.to_bytes(3, "big") + bytes([mtype]) + \
        (1).to_bytes(4, "little") + payload[:chunkSize]
    for start in range(chunkSize, len(payload), chunkSize):
        out += bytes([0xC0 | csid]) + payload[start:start + chunkSize]
    return out


def test_unfinished_messages_are_capped_per_connection():
    reader = chunks.ChunkReader(maxMessageSize=1 << 20, maxPending=300_000)
    reader.setChunkSize(65536)
    # Chunk streams, each two chunks into a message of 1 MiB: the third is too many.
    reader.receive(chunked(4, 1 << 20, b"x" * 131072, 65536))
    reader.receive(chunked(5, 1 << 20, b"x" * 131072, 65536))
    with pytest.raises(RTMPProtocolError, match="over 300000 bytes of unfinished messages"):
        reader.receive(chunked(6, 1 << 20, b"x" * 131072, 65536))
    assert reader.pending <= 300_000


def test_pending_bytes_are_released_by_whole_messages_and_aborts():
    reader = chunks.ChunkReader(maxPending=1000)
    [message] = reader.receive(chunked(4, 900, b"y" * 900, 128))
    assert message.payload == b"y" * 900 and reader.pending == 0
    reader.receive(chunked(5, 900, b"z" * 640, 128))
    assert reader.pending == 640
    reader.abort(5)
    assert reader.pending == 0
    [message] = reader.receive(chunked(6, 900, b"w" * 900, 128))
    assert message.payload == b"w" * 900


def test_a_chunk_size_under_the_minimum_is_refused():
    reader = chunks.ChunkReader(minChunkSize=128)
    setSize = chunks.ChunkWriter().write(2, chunks.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 1))
    with pytest.raises(RTMPProtocolError, match="chunk size 1 is out of range 128"):
        reader.receive(setSize)
    reader.setChunkSize(128)  # what Flash Player uses
    assert reader.chunkSize == 128


def test_partial_message_memory_is_proportional_to_its_bytes():
    reader = chunks.ChunkReader(maxMessageSize=4 << 20)
    reader.setChunkSize(1)  # the worst case the minimum setting now refuses
    data = chunked(4, 1 << 20, b"m" * 65536, 1)
    tracemalloc.start()
    try:
        for start in range(0, len(data), 16384):
            reader.receive(data[start:start + 16384])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.pending == 65536
    assert held < 256 << 10  # a list of 1-byte chunks: over 2 MiB


def test_connection_applies_its_limits():
    conn = ServerConnection(minChunkSize=128, maxPending=1000, maxAMFValues=100)
    handshake = b"\x03" + bytes(1536) + bytes(1536)
    command = amf0.encode("connect") + amf0.encode(1.0) + amf0Bomb(20)
    data = chunks.ChunkWriter(65536).write(3, chunks.COMMAND_AMF0, 0, 0, command)
    with pytest.raises(RTMPProtocolError, match="more than 100 values"):
        conn.receive(handshake + chunks.ChunkWriter(4096).write(
            2, chunks.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 65536)) + data)
