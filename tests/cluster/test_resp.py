"""
The bus's own RESP2 (wcs/cluster/resp.py): the parser on bytes as they
come, and the protocol on a StringTransport: replies in order, pushes of a
subscription to onMessage, a lost connection fails what is pending.
"""

import pytest
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from wcs.cluster.resp import (
    ProtocolError, RespError, RespProtocol, RespReader, command, parseUrl)


def test_a_command_is_an_array_of_bulk_strings():
    assert command("PUBLISH", "wcs:to:a", "hé") == \
        b"*3\r\n$7\r\nPUBLISH\r\n$8\r\nwcs:to:a\r\n$3\r\nh\xc3\xa9\r\n"
    assert command("SELECT", 2) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"


def test_every_kind_of_reply_byte_by_byte():
    wire = (b"+OK\r\n-ERR wrong\r\n:42\r\n$5\r\nhe\r\no\r\n$-1\r\n"
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n*-1\r\n")
    reader, replies = RespReader(), []
    for i in range(len(wire)):
        replies += reader.feed(wire[i:i + 1])
    assert replies[0] == "OK"
    assert isinstance(replies[1], RespError) and str(replies[1]) == "ERR wrong"
    assert replies[2:] == [42, b"he\r\no", None, [b"message", b"c", b""], None]
    assert reader.buffer == b""


def test_one_feed_of_many_replies_and_a_partial_one():
    reader = RespReader()
    assert reader.feed(b":1\r\n:2\r\n$3\r\nab") == [1, 2]
    assert reader.feed(b"c\r\n") == [b"abc"]


@pytest.mark.parametrize("wire", [b"$2000\r\n", b"*2000\r\n", b"!3\r\nabc\r\n",
                                  b"*1\r\n" * 20 + b":1\r\n", b":x\r\n", b":--5\r\n",
                                  b"$-5\r\n", b": 7\r\n", b":1_0\r\n", b"$\r\n",
                                  b":" + b"9" * 30 + b"\r\n"])
def test_oversized_nested_or_foreign_bytes_are_refused(wire):
    with pytest.raises(ProtocolError):
        RespReader(maxBulk=1000).feed(wire)


def connected(**kwargs):
    messages = []
    protocol = RespProtocol(1 << 16, onMessage=messages.append, **kwargs)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, messages


def test_replies_fire_commands_in_order_and_pushes_go_to_on_message():
    protocol, transport, messages = connected()
    results = []
    first = protocol.send("SUBSCRIBE", "wcs:to:a")
    first.addCallback(results.append)
    a, b = protocol.sendMany([("PUBLISH", "x", "1"), ("PUBLISH", "y", "2")])
    a.addCallback(results.append)
    b.addErrback(lambda f: results.append(f.value))
    assert transport.value() == command("SUBSCRIBE", "wcs:to:a") + \
        command("PUBLISH", "x", "1") + command("PUBLISH", "y", "2")
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$8\r\nwcs:to:a\r\n:1\r\n"
                          b"*3\r\n$7\r\nmessage\r\n$8\r\nwcs:to:a\r\n$2\r\nhi\r\n:1\r\n-ERR no\r\n")
    assert results[:2] == [[b"subscribe", b"wcs:to:a", 1], 1]
    assert isinstance(results[2], RespError)
    assert messages == [b"hi"]


def test_a_lost_connection_fails_the_pending_commands_then_tells():
    lost = []
    protocol, transport, _ = connected(onLost=lost.append)
    failures = []
    protocol.send("PUBLISH", "x", "1").addErrback(lambda f: failures.append(f.value))
    protocol.connectionLost(Failure(ConnectionLost("gone")))
    assert isinstance(failures[0], ConnectionLost) and len(lost) == 1
    assert not protocol.connected


def test_bad_bytes_close_the_connection_and_fail_the_pending():
    protocol, transport, _ = connected()
    failures = []
    protocol.send("PING").addErrback(lambda f: failures.append(f.value))
    protocol.dataReceived(b"?what\r\n")
    assert transport.disconnecting
    assert isinstance(failures[0], ProtocolError)


def test_urls_the_bus_speaks():
    parts, db = parseUrl("redis://:secret@127.0.0.1:6390/2")
    assert (parts.hostname, parts.port, parts.password, db) == ("127.0.0.1", 6390, "secret", "2")
    parts, db = parseUrl("unix:///run/redis.sock?db=3")
    assert (parts.path, db) == ("/run/redis.sock", "3")
    with pytest.raises(ValueError, match="rediss:// is not supported"):
        parseUrl("rediss://host:6380")


def test_a_message_push_without_a_bulk_payload_drops_the_connection():
    protocol, transport, messages = connected()
    failures = []
    protocol.send("PING").addErrback(lambda f: failures.append(f.value))
    protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*1\r\n:1\r\n")
    assert transport.disconnecting and messages == []
    assert isinstance(failures[0], ProtocolError)


def test_nagle_is_off_on_a_tcp_connection():
    """A PUBLISH must not wait for the ACK of the one before (docs/cluster.md)."""

    class TCPTransport(StringTransport):
        noDelay = False

        def setTcpNoDelay(self, enabled):
            self.noDelay = enabled

    transport = TCPTransport()
    RespProtocol(1 << 16).makeConnection(transport)
    assert transport.noDelay is True
    RespProtocol(1 << 16).makeConnection(StringTransport())  # a UNIX socket has none


def test_an_unfinished_array_is_bounded_by_what_it_has_read_so_far():
    """Its items are parsed as they come (not again at every piece) and count."""
    reader = RespReader(maxBulk=100)
    assert reader.feed(b"*50\r\n" + b":1\r\n" * 30) == []
    assert reader.buffer == b"" and reader.held == 125
    with pytest.raises(ProtocolError):
        reader.feed(b":1\r\n" * 11)


def test_an_array_in_one_byte_pieces_is_the_same_reply():
    wire = b"*3\r\n*2\r\n:1\r\n$3\r\na\r\n\r\n+OK\r\n*0\r\n:7\r\n"
    reader, replies = RespReader(), []
    for i in range(len(wire)):
        replies += reader.feed(wire[i:i + 1])
    assert replies == [[[1, b"a\r\n"], "OK", []], 7]
    assert reader.buffer == b"" and reader.stack == [] and reader.held == 0
