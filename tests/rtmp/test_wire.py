"""The RTMP wire layer without sockets: AMF0/AMF3, chunks, handshake, connection."""

import datetime
import hashlib
import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wcs.rtmp import amf0, amf3, chunks, flv, handshake
from wcs.rtmp.connection import Command, Data, Media, ServerConnection
from wcs.rtmp.errors import RTMPProtocolError

FAST = settings(max_examples=200, deadline=None)

text = st.text(max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=5)),
    max_leaves=20)


@FAST
@given(values)
def test_amf0_round_trip(value):
    assert amf0.decode(amf0.encode(value)) == [value]


@FAST
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**28, 2**28 - 1),
                              st.floats(allow_nan=False), text),
                    lambda inner: st.one_of(
                        st.lists(inner, max_size=5),
                        st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=5)),
                    max_leaves=20))
def test_amf3_round_trip(value):
    assert amf3.decode(amf3.encode(value)) == [value]


def test_amf0_types():
    when = datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc)
    meta = amf0.ECMAArray(width=320.0, height=240.0)
    data = amf0.encodeAll("onMetaData", meta, when, [1.0, "x"], "x" * 70000)
    decoded = amf0.decode(data)
    assert decoded[:4] == ["onMetaData", meta, when, [1.0, "x"]]
    assert len(decoded[4]) == 70000
    assert data[len(amf0.encode("onMetaData"))] == amf0.ECMA_ARRAY


def test_amf0_avmplus_switch_to_amf3():
    data = bytes([amf0.AVMPLUS]) + amf3.encode({"login": "алиса", "n": 5})
    assert amf0.decode(data) == [{"login": "алиса", "n": 5}]


@FAST
@given(st.binary(max_size=200))
def test_amf_parsers_raise_only_their_own_error(data):
    for decode in (amf0.decode, amf3.decode):
        try:
            decode(data)
        except RTMPProtocolError:
            pass


@FAST
@given(values)
def test_truncated_amf0_is_a_protocol_error(value):
    data = amf0.encode(value)
    for cut in range(len(data)):
        try:
            amf0.decode(data[:cut])
        except RTMPProtocolError:
            pass


messages = st.lists(st.tuples(st.integers(3, 400), st.sampled_from([8, 9, 18, 20]),
                              st.integers(0, 5), st.integers(0, 2**32 - 1),
                              st.binary(max_size=600)), min_size=1, max_size=12)


@FAST
@given(messages, st.integers(1, 700), st.integers(1, 97))
def test_chunk_round_trip_any_size_fed_in_pieces(batch, chunkSize, piece):
    writer = chunks.ChunkWriter(chunkSize)
    reader = chunks.ChunkReader()
    reader.chunkSize = chunkSize
    stamps: dict[int, int] = {}
    data = b""
    expected = []
    for csid, mtype, streamId, stamp, payload in batch:
        data += writer.write(csid, mtype, streamId, stamp, payload)
        expected.append((mtype, streamId, stamp, payload))
        stamps[csid] = stamp
    got = []
    for start in range(0, len(data), piece):
        got += reader.receive(data[start:start + piece])
    assert [(m.type, m.streamId, m.timestamp, m.payload) for m in got] == expected


def test_all_four_header_types_and_extended_timestamps():
    writer = chunks.ChunkWriter(128)
    data = writer.write(4, 9, 1, 1000, b"a" * 300)          # fmt 0
    data += writer.write(4, 9, 1, 1040, b"b" * 10)          # fmt 1 (new length)
    data += writer.write(4, 9, 1, 1080, b"c" * 10)          # fmt 2 (same length)
    data += writer.write(4, 9, 1, 0x1000000, b"d" * 300)    # extended, in every chunk
    assert {data[0] >> 6, data[0] >> 6} == {0}
    reader = chunks.ChunkReader()
    got = reader.receive(data)
    assert [(m.timestamp, m.payload[:1], len(m.payload)) for m in got] == [
        (1000, b"a", 300), (1040, b"b", 10), (1080, b"c", 10), (0x1000000, b"d", 300)]


@FAST
@given(st.binary(max_size=400))
def test_chunk_reader_raises_only_its_own_error(data):
    try:
        chunks.ChunkReader(maxMessageSize=1000).receive(data)
    except RTMPProtocolError:
        pass


def test_wanted_is_what_the_started_chunk_lacks():
    """What the transport's low-water mark is set from (wcs/transports/lowwater.py)."""
    writer = chunks.ChunkWriter(4096)
    data = writer.write(6, 9, 1, 0, b"v" * 5000)  # a 12-byte header, 4096 bytes, 1 + 904
    reader = chunks.ChunkReader()
    reader.chunkSize = 4096
    assert reader.receive(data[:5]) == [] and reader.wanted == 0  # header not in yet
    assert reader.receive(data[5:12]) == [] and reader.wanted == 4096
    assert reader.receive(data[12:1012]) == [] and reader.wanted == 3096
    assert reader.receive(data[1012:4108]) == [] and reader.wanted == 0  # a chunk ended
    assert reader.receive(data[4108:4109]) == [] and reader.wanted == 904  # type 3: 1 byte
    got = reader.receive(data[4109:] + writer.write(4, 8, 1, 0, b"a" * 9)[:3])
    assert [len(m.payload) for m in got] == [5000] and reader.wanted == 0
    assert len(reader.buffer) == 3  # the next message's first bytes, kept


def test_error_after_whole_chunks_keeps_the_parse_consistent():
    """Chunks parsed before a bad one in the same read are consumed."""
    writer = chunks.ChunkWriter(128)
    good = writer.write(4, 9, 1, 0, b"a" * 300)
    reader = chunks.ChunkReader(maxMessageSize=1000)
    with pytest.raises(RTMPProtocolError, match="without a full header"):
        reader.receive(good + bytes([0xC0 | 7]))  # fmt 3 on a chunk stream never opened
    assert bytes(reader.buffer) == bytes([0xC0 | 7])


def test_message_over_the_limit_is_refused():
    data = chunks.ChunkWriter().write(3, 9, 1, 0, b"x" * 2000)
    with pytest.raises(RTMPProtocolError, match="over the limit of 1000"):
        chunks.ChunkReader(maxMessageSize=1000).receive(data)


def digestC1(base: int) -> bytes:
    """A C1 as Flash Player makes it (digest at the scheme's offset)."""
    c1 = bytearray(os.urandom(1536))
    c1[4:8] = bytes([10, 0, 45, 2])
    offset = handshake.digestOffset(bytes(c1), base)
    c1[offset:offset + 32] = handshake.digestOf(bytes(c1), offset, handshake.FLASH_PLAYER_KEY[:30])
    return bytes(c1)


@pytest.mark.parametrize("base", [8, 772])
def test_digest_handshake_answers_what_flash_player_checks(base):
    c1 = digestC1(base)
    response = handshake.serverResponse(c1, now=0)
    s1, s2 = response[1:1537], response[1537:]
    offset = handshake.digestOffset(s1, base)
    assert s1[offset:offset + 32] == handshake.digestOf(s1, offset,
                                                       handshake.MEDIA_SERVER_KEY[:36])
    clientDigest = c1[handshake.digestOffset(c1, base):][:32]
    key = hmac.new(handshake.MEDIA_SERVER_KEY, clientDigest, hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()


def test_plain_handshake_echoes_c1():
    c1 = bytes(8) + os.urandom(1528)
    response = handshake.serverResponse(c1, now=5)
    assert response[0] == 3 and response[1537:] == c1 and response[5:9] == bytes(4)


def test_wrong_version_is_refused():
    with pytest.raises(RTMPProtocolError, match="RTMP version 6 is not supported"):
        ServerConnection().receive(b"\x06" + bytes(1536))


def clientBytes(*messages) -> bytes:
    writer = chunks.ChunkWriter()
    body = b"".join(writer.write(*m) for m in messages)
    return b"\x03" + bytes(1536) + bytes(1536) + body


def test_connection_events_and_replies():
    conn = ServerConnection()
    events = conn.receive(clientBytes(
        (3, chunks.COMMAND_AMF0, 0, 0, amf0.encodeAll("connect", 1.0, {"app": "live"}, {"x": 1})),
        (5, chunks.DATA_AMF0, 1, 0, amf0.encodeAll("@setDataFrame", "onMetaData",
                                                   amf0.ECMAArray(width=320.0))),
        (6, chunks.VIDEO, 1, 40, b"\x17\x01\x00\x00\x00frame"),
        (2, chunks.USER_CONTROL, 0, 0, b"\x00\x06\x00\x00\x00\x2a"),
    ))
    assert events[0] == Command("connect", 1.0, {"app": "live"}, [{"x": 1.0}], 0)
    assert isinstance(events[1], Data) and events[1].name == "@setDataFrame"
    assert events[2] == Media(chunks.VIDEO, 1, 40, b"\x17\x01\x00\x00\x00frame")
    out = conn.dataToSend()
    assert out[:1] == b"\x03" and len(out) >= 1 + 2 * 1536
    replies = chunks.ChunkReader().receive(out[1 + 2 * 1536:])
    assert replies[0].type == chunks.SET_CHUNK_SIZE
    assert any(m.type == chunks.USER_CONTROL and m.payload == b"\x00\x07\x00\x00\x00\x2a"
               for m in replies)  # the ping answered


def test_flv_video_frames_round_trip():
    sps, pps, idr = b"\x67\x42\xc0\x1e\x01", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x21"
    config = flv.makeAVCConfig(sps, pps)
    toFrames = flv.VideoToFrames()
    assert toFrames.convert(0, b"\x17\x00\x00\x00\x00" + config) is None
    frame = toFrames.convert(40, b"\x17\x01\x00\x00\x00" + len(idr).to_bytes(4, "big") + idr)
    assert frame.keyframe and frame.pts == 40
    assert frame.data == b"".join(b"\x00\x00\x00\x01" + u for u in (sps, pps, idr))
    bodies = flv.FramesToVideo().convert(frame, 40)
    assert bodies[0][1] == b"\x17\x00\x00\x00\x00" + config
    assert bodies[1][1] == b"\x17\x01\x00\x00\x00" + len(idr).to_bytes(4, "big") + idr
