"""
Hostile HTTP clients against the real web server while two bystanders keep
a room going: request bodies, long request lines and headers, connection
floods. Attackers connect from 127.0.0.x other than the bystanders' 127.0.0.1.
"""

import asyncio
import time

import pytest

from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA
from tests.support.server import startServer

PER_ADDRESS = 4
RSS_GROWTH = 48 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("hostile-http"), enable=("ws", "http"),
                          settings=dict(MEDIA, http_max_connections_per_address=str(PER_ADDRESS)))
    yield running
    running.stop()


async def connect(server, host: str):
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", server.ports["http"], local_addr=(host, 0)), 5)


async def response(reader) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one response that ends with the connection."""
    data = await asyncio.wait_for(reader.read(65536), 5)
    while b"\r\n\r\n" not in data:
        more = await asyncio.wait_for(reader.read(65536), 5)
        assert more, data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def request(server, host: str, raw: bytes) -> tuple[int, bytes, bytes]:
    reader, writer = await connect(server, host)
    try:
        writer.write(raw)
        await writer.drain()
        return await response(reader)
    finally:
        writer.close()


async def test_request_body_gets_413_without_being_read(server):
    async with Bystanders(server) as room:
        before = server.rss()
        reader, writer = await connect(server, "127.0.0.2")
        started = time.monotonic()
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        await writer.drain()
        status, head, body = await response(reader)
        assert (status, body) == (413, b"this server takes no request bodies\n")
        assert b"Connection: close" in head
        # The body is not taken: the connection ends long before 100 MB went.
        sent = 0
        with pytest.raises((ConnectionError, asyncio.TimeoutError)):
            while sent < 100_000_000:
                writer.write(b"x" * (1 << 20))
                await asyncio.wait_for(writer.drain(), 5)
                sent += 1 << 20
        writer.close()
        assert sent < 32 << 20, sent
        assert time.monotonic() - started < 10  # not after a 100 MB upload
        # Chunked bodies too, and a GET with a body.
        for head in (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"):
            assert (await request(server, "127.0.0.2", head))[0] == 413
        await room.assertHealthy()
        assert server.rss() - before < RSS_GROWTH
        assert server.log().count("HTTP 413") == 1  # three refusals, one line


OVERSIZED = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /" + b"a" * (1 << 20), 414),  # never ends: refused after 8 KiB all the same
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(65)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: " % i + b"m" * 4000 + b"\r\n" for i in range(5))
     + b"\r\n", 431),
]


async def test_long_request_line_and_headers_are_refused(server):
    async with Bystanders(server) as room:
        for raw, status in OVERSIZED:
            got, head, body = await request(server, "127.0.0.3", raw)
            assert got == status, (raw[:40], head, body)
            assert b"Connection: close" in head and body
        ok, _, page = await request(server, "127.0.0.3", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok == 200 and b"wcs demos" in page
        await room.assertHealthy()


async def test_connection_flood_from_one_address_is_capped(server):
    async with Bystanders(server) as room:
        before = server.rss()
        held = [await connect(server, "127.0.0.4") for _ in range(PER_ADDRESS)]
        status, _, body = await request(server, "127.0.0.4", b"GET / HTTP/1.1\r\n\r\n")
        assert (status, body) == (503, f"too many connections from your address: at most "
                                       f"{PER_ADDRESS}\n".encode())
        # Connections held open: up to twice the cap they get the 503, beyond
        # it they are closed without a word (or even reset before connect()
        # returns).
        flood = []
        for _ in range(5 * PER_ADDRESS):
            try:
                flood.append(await connect(server, "127.0.0.4"))
            except ConnectionError:
                flood.append(None)
        answers = []
        for pair in flood:
            try:
                answers.append(pair and await asyncio.wait_for(pair[0].read(), 5))
            except ConnectionError:
                answers.append(None)
        for pair in filter(None, flood):
            pair[1].close()
        refused = [a for a in answers if a and a.startswith(b"HTTP/1.1 503 ")]
        assert len(refused) == PER_ADDRESS
        assert answers.count(None) + answers.count(b"") == 4 * PER_ADDRESS
        # Another address is served; this one again once it let go.
        assert (await request(server, "127.0.0.5", b"GET / HTTP/1.1\r\n\r\n"))[0] == 200
        for _, writer in held:
            writer.close()
        for _ in range(50):
            status = (await request(server, "127.0.0.4", b"GET / HTTP/1.1\r\n\r\n"))[0]
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        await room.assertHealthy()
        assert server.rss() - before < RSS_GROWTH
        assert server.log().count("too many connections from your address") <= 2
