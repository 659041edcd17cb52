"""
Capture what ffmpeg sends as an RTMP publisher and as a player, and write it
as seeds of the RTMP, AMF0 and FLV fuzz targets (tests/fuzz/corpus/).

A loopback listener answers with wcs's own sans-I/O ServerConnection (just
enough for ffmpeg to go on: connect, createStream, publish, play) and keeps
the client's bytes. Each seed is trimmed to a few KB: the handshake, the
commands, the metadata, the sequence headers and the first frames.

    .venv/bin/python -m tests.fuzz.capture_rtmp
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import subprocess

from tests.fuzz.runner import CORPUS
from wcs.rtmp.chunks import AUDIO, COMMAND_AMF0, DATA_AMF0, VIDEO, ChunkReader
from wcs.rtmp.connection import Command, ServerConnection
from wcs.rtmp.handshake import SIZE

SESSION_BYTES = 6144  # per captured session seed
CAPTURE_BYTES = 32768  # read for the FLV tags
FLV_FILES, FLV_BYTES = 4, 4096  # FLV seeds: how many, how large
TIMEOUT = 20.0


async def capture(ffmpegArgs: list[str], limit: int) -> bytes:
    """The first C{limit} bytes an ffmpeg with C{ffmpegArgs} (URL: {url}) sends."""
    received = bytearray()
    done = asyncio.Event()

    async def serve(reader, writer):
        conn = ServerConnection()
        while len(received) < limit:
            data = await reader.read(65536)
            if not data:
                break
            received.extend(data)
            for event in conn.receive(data):
                if isinstance(event, Command):
                    answer(conn, event)
            writer.write(conn.dataToSend())
        done.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"rtmp://127.0.0.1:{port}/live/fuzzseed"
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error",
        *[url if a == "{url}" else a for a in ffmpegArgs],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        pass  # a player gets no media: what it sent until now is the session
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        server.close()
    return bytes(received[:limit])


def answer(conn: ServerConnection, command: Command) -> None:
    if command.name == "connect":
        conn.acceptConnect(command.transactionId)
    elif command.name == "createStream":
        conn.result(command.transactionId, None, 1.0)
    elif command.name == "publish":
        conn.streamBegin(command.streamId)
        conn.onStatus(command.streamId, "NetStream.Publish.Start", "publishing")
    elif command.name == "play":
        conn.streamBegin(command.streamId)
        conn.onStatus(command.streamId, "NetStream.Play.Start", "playing")
    elif command.transactionId:
        conn.result(command.transactionId, None)


def messages(session: bytes):
    """The RTMP messages of a client session, its handshake skipped."""
    # Whole messages only: the one the trim cut is left out.
    return ChunkReader().receive(session[1 + 2 * SIZE:])


def write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    print(f"{directory / name}: {len(data)} bytes")


PUBLISH = ["-re", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=15",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", "5", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-profile:v", "baseline",
           "-tune", "zerolatency", "-g", "15", "-b:v", "50k", "-c:a", "aac", "-b:a", "32k",
           "-f", "flv", "{url}"]
PLAY = ["-rw_timeout", "3000000", "-i", "{url}", "-t", "1", "-f", "null", "-"]


async def main() -> None:
    sessions = {
        "ffmpeg-publish": await capture(PUBLISH, CAPTURE_BYTES),
        "ffmpeg-play": await capture(PLAY, SESSION_BYTES),
    }
    for name, session in sessions.items():
        for target in ("rtmp_connection", "rtmp_protocol"):
            write(target, name, session[:SESSION_BYTES])
    tags = []
    for message in messages(sessions["ffmpeg-publish"]) + messages(sessions["ffmpeg-play"]):
        if message.type in (COMMAND_AMF0, DATA_AMF0):
            digest = hashlib.sha1(message.payload).hexdigest()[:12]
            write("amf0", f"ffmpeg-{digest}", message.payload)
            write("amf_reencode", f"ffmpeg-{digest}", b"\x00" + message.payload)
        elif message.type in (AUDIO, VIDEO):
            tags.append(bytes([message.type]) + struct.pack(">H", len(message.payload))
                        + message.payload)
    # The FLV target reads [type][u16 length][body] tags. Every seed starts
    # with the sequence headers, then as many whole tags as fit.
    headers = [t for t in tags if len(t) > 4 and t[4] == 0]
    rest = [t for t in tags if t not in headers]
    for number in range(FLV_FILES):
        seed = b"".join(headers)
        while rest and len(seed) + len(rest[0]) <= FLV_BYTES:
            seed += rest.pop(0)
        write("flv", f"ffmpeg-publish-{number}", seed)


if __name__ == "__main__":
    asyncio.run(main())
