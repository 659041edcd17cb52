"""
Bytes from Redis as the bus's own connections read them
(L{wcs.cluster.resp}): the reader fed in the pieces the input says, each
outcome checked against the bounds it documents, then the same bytes as one
piece (the split must not change what is read), then through a
L{RespProtocol} with commands pending and a subscription's C{onMessage}.

Input: one byte of split points (a piece ends after each multiple of
C{data[0] % 64 + 1} bytes), the rest the wire.
"""

from twisted.internet.testing import StringTransport

from wcs.cluster.resp import ProtocolError, RespError, RespProtocol, RespReader

EXPECTED = ()  # ProtocolError is caught below: it is the documented outcome
MAX_LEN = 8192
MAX_BULK = 512
MAX_DEPTH = 8  # RespReader's documented bound, restated: the check must not follow the code


def bounded(reply, depth: int = 0) -> None:
    """A reply within the reader's documented bounds."""
    assert depth <= MAX_DEPTH + 1, "nested deeper than MAX_DEPTH"
    if isinstance(reply, list):
        assert len(reply) <= MAX_BULK, f"an array of {len(reply)}"
        for item in reply:
            bounded(item, depth + 1)
    elif isinstance(reply, bytes):
        assert len(reply) <= MAX_BULK, f"a bulk string of {len(reply)}"
    else:
        assert reply is None or isinstance(reply, (str, int, RespError)), type(reply)
        if isinstance(reply, int):
            assert -(1 << 63) <= reply < 1 << 63, "an integer past signed 64 bits"


def read(pieces: list[bytes]):
    """(replies, refused) of one reader fed these pieces in turn."""
    reader, replies = RespReader(MAX_BULK), []
    for piece in pieces:
        try:
            replies += reader.feed(piece)
        except ProtocolError:
            return replies, True
        assert len(reader.buffer) <= MAX_BULK + 64, "the buffer grew past its bound"
    return replies, False


def same(a, b) -> bool:
    if isinstance(a, RespError) or isinstance(b, RespError):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def fuzz(data: bytes) -> None:
    if not data:
        return
    step, wire = data[0] % 64 + 1, data[1:]
    pieces = [wire[i:i + step] for i in range(0, len(wire), step)]
    replies, refused = read(pieces)
    for reply in replies:
        bounded(reply)
    whole, wholeRefused = read([wire])
    if not refused and not wholeRefused:
        assert same(replies, whole), "split pieces read otherwise than one piece"
    elif not wholeRefused:
        # Refused in pieces only when an unfinished reply outgrew the buffer.
        assert len(wire) > MAX_BULK, "refused in pieces, read whole"

    messages, lost, results = [], [], []
    protocol = RespProtocol(MAX_BULK, onMessage=messages.append, onLost=lost.append)
    protocol.makeConnection(StringTransport())
    for _ in range(3):
        protocol.send("PING").addBoth(results.append)
    for piece in pieces:
        protocol.dataReceived(piece)
        if protocol.transport.disconnecting:
            break
    for message in messages:
        assert isinstance(message, bytes) and len(message) <= MAX_BULK
    if protocol.transport.disconnecting:  # refused: everything pending failed
        assert len(results) == 3 and not protocol.pending
