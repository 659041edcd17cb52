"""
Transports speak only wcs/interfaces.py (docs/transports.md): what they
import, that every provider of an interface verifies, and that wcs has no
import cycle and each of its modules imports on its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.support.channels import RecordingChannel
from tests.support.contract import (
    CONTRACT, ROOT, cycles, importGraph, importsOf, moduleName, wcsModules)
from wcs import interfaces
from wcs.config import Settings


def transportFiles():
    """Built-in transports, the RTMP transport's own package, and every drop-in."""
    yield from sorted((ROOT / "wcs" / "transports").glob("*.py"))
    yield from sorted((ROOT / "wcs" / "rtmp").glob("*.py"))
    yield from sorted((ROOT / "wcs_plugins").rglob("*.py"))
    yield from sorted((ROOT / "whipwhep").glob("*.py"))  # wcs_plugins/whip.py's package


def ownPackages(path) -> tuple[str, ...]:
    """What a transport module may import besides the contract."""
    name = moduleName(path)
    if name.startswith("wcs.transports."):
        # wcs/transports/rtmp.py owns wcs.rtmp; the built-ins share wcs.transports.
        return ("wcs.transports", "wcs." + name.rsplit(".", 1)[1])
    if name.startswith("wcs."):
        return (".".join(name.split(".")[:2]),)
    return ()


def allowed(module: str, own: tuple[str, ...]) -> bool:
    if module != "wcs" and not module.startswith("wcs."):
        return True  # not ours: twisted, autobahn, wcs_plugins.*...
    return module in CONTRACT or any(module == p or module.startswith(p + ".") for p in own)


def violations(path, source=None) -> list[str]:
    own = ownPackages(path)
    # `from wcs import x` is checked as wcs.x; the bare package name adds nothing.
    return sorted(m for m in importsOf(path, source=source) - {"wcs"} if not allowed(m, own))


@pytest.mark.parametrize("path", list(transportFiles()), ids=lambda p: str(p.relative_to(ROOT)))
def test_transports_import_only_the_contract(path):
    bad = violations(path)
    assert bad == [], f"{path.name} imports {bad} beyond the contract {sorted(CONTRACT)}"


def test_the_import_check_sees_violations():
    """The check above would catch each way of importing the core."""
    source = textwrap.dedent("""
        from wcs import session
        import wcs.streams
        def later():
            from wcs.server import RoomServer
        from wcs.interfaces import IClientSession
    """)
    assert violations(ROOT / "wcs_plugins" / "probe.py", source) == \
        ["wcs.server", "wcs.session", "wcs.streams"]
    assert violations(ROOT / "wcs" / "transports" / "probe.py", source) == \
        ["wcs.server", "wcs.session", "wcs.streams"]


def test_wcs_has_no_import_cycle():
    graph = importGraph()
    assert "wcs.session" in graph and "wcs.media.engine" in graph
    assert cycles(graph) == []


def test_cycle_detection_works():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_each_module_imports_alone():
    """
    Each wcs module imports in a fresh interpreter (a child forked before
    any wcs module was loaded): no module works only because another was
    imported first.
    """
    script = textwrap.dedent("""
        import importlib, os, sys, traceback
        import twisted.internet.defer, twisted.web.server, autobahn.twisted.websocket  # noqa
        import aiortc, av  # noqa: shared, slow third-party imports, loaded once
        failed = []
        for name in sys.argv[1:]:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failed.append(name)
        print("FAILED", " ".join(failed))
    """)
    # The last one cannot import: it shows that a failure is seen.
    modules = sorted(wcsModules()) + ["wcs._no_such_module"]
    result = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["FAILED", "wcs._no_such_module"], result.stderr[-3000:]


# Every provider of the contract verifies against its interface.

@pytest.fixture
def server():
    from wcs.server import RoomServer

    return RoomServer(Settings(), Clock())


def test_server_and_session_provide_the_contract(server):
    verifyObject(interfaces.IRoomServer, server)
    session = server.openSession(RecordingChannel())
    verifyObject(interfaces.IClientSession, session)
    session.identify("rtmp", "alice")
    from wcs.rtmp.relay import RTMPSource

    stream = session.publish("room-alice", RTMPSource("room-alice"), "RTMP", room="room")
    verifyObject(interfaces.IStream, stream)
    assert server.liveSource("room-alice") is not None


def test_media_engine_provides_the_contract():
    from wcs.media.engine import WebRTCEngine

    verifyObject(interfaces.IMediaEngine, WebRTCEngine(Settings(), Clock()))


def test_sources_and_sinks_provide_the_contract(tmp_path):
    from wcs.media.source import WebRTCSource
    from wcs.recording.transcoding import Transcoding
    from wcs.recording.writer import StreamWriter
    from wcs.rtmp.relay import FLVFeed, RTMPSource

    rtmp = RTMPSource("s")
    verifyObject(interfaces.IMediaSource, rtmp)
    verifyObject(interfaces.IMediaSource, WebRTCSource("w"))
    feed = FLVFeed(rtmp, "s", lambda kind, codec: None, lambda feed: None)
    verifyObject(interfaces.IMediaSource, feed)
    verifyObject(interfaces.IMediaSink, feed)
    writer = StreamWriter(tmp_path / "s.ts", {"video": "H264"})
    verifyObject(interfaces.IMediaSink, writer)
    verifyObject(interfaces.IMediaSink,
                 Transcoding(writer, {"video": "H264"}, {"video": "H264"}))


def test_transports_provide_the_contract():
    from wcs.server import findTransports

    transports = findTransports()
    assert {"websocket", "rtmp"} <= {t.name for t in transports}
    for transport in transports:
        verifyObject(interfaces.ITransport, transport)


def test_a_strict_server_refuses_what_its_interface_does_not_declare(server):
    from tests.support.contract import ContractViolation, strictServer

    strict = strictServer(server)
    assert strict.settings is server.settings
    with pytest.raises(ContractViolation):
        strict.streams  # the registry is the core's own
    session = strict.openSession(RecordingChannel())
    session.identify("rtmp", "alice")
    assert session.login == "alice"
    with pytest.raises(ContractViolation):
        getattr(session, "participants", None)
