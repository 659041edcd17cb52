"""
wcs.media.internals: every aiortc/aioice piece the engine relies on is
checked at import, and a missing one stops `twistd wcs` with one line.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aioice import Connection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport

from tests.support.server import TWISTD
from wcs.media import internals
from wcs.media.internals import NEEDS, IncompatibleMediaLibrary, verify

ROOT = Path(__file__).resolve().parents[2]


class Hiding:
    """
    A view of C{obj} in which the attribute at the end of C{steps} (the
    dotted name of a L{internals.Need}) does not exist.
    """

    def __init__(self, obj, steps: list[str]):
        self._obj = obj
        self._steps = steps

    def __getattr__(self, name: str):
        value = getattr(self._obj, name)
        step = self._steps[0] if self._steps else None
        if step is None or name != step.removesuffix("()"):
            return value
        if len(self._steps) == 1 and not step.endswith("()"):
            raise AttributeError(name)
        return Hiding(value, self._steps if step.endswith("()") else self._steps[1:])

    def __call__(self, *args, **kwargs):
        # A "Cls()" step: the instance is looked at with the next step hidden.
        return Hiding(self._obj(*args, **kwargs), self._steps[1:])


def withoutPiece(need):
    def importModule(name):
        module = importlib.import_module(name)
        return Hiding(module, need.name.split(".")) if name == need.module else module
    return importModule


def test_installedLibrariesHaveEveryPiece():
    assert internals.problems() == []


@pytest.mark.parametrize("need", NEEDS, ids=str)
def test_eachMissingPieceIsNamed(need):
    """Against a namespace with just that piece removed, the check names it."""
    with pytest.raises(IncompatibleMediaLibrary) as raised:
        verify(needs=[need], importModule=withoutPiece(need))
    message = str(raised.value)
    assert "\n" not in message
    assert f"{need} is missing" in message
    assert "tested with aiortc 1.16.x and aioice 0.13.x" in message
    assert "aiortc 1.16" in message.split(":")[0]  # the installed versions


def test_instanceAttributeRemoved(monkeypatch):
    """An attribute aioice sets in __init__ (renamed upstream) is found missing."""
    original = Connection.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        del self._nominated

    monkeypatch.setattr(Connection, "__init__", init)
    assert internals.problems() == ["aioice.ice.Connection()._nominated is missing"]


def test_hookSignatureChanged(monkeypatch):
    """aiortc calling our override with other arguments is a problem."""
    async def handle(self, data, arrival_time_ms, extensions):
        pass

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", handle)
    assert internals.problems() == [
        "aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data has signature "
        "(data, arrival_time_ms, extensions), expected (data, arrival_time_ms)"]


def test_hookNoLongerAwaited(monkeypatch):
    def queryConsent(self):
        pass

    monkeypatch.setattr(Connection, "query_consent", queryConsent)
    assert internals.problems() == [
        "aioice.ice.Connection.query_consent is no longer a coroutine"]


def test_hookNoLongerCalled(monkeypatch):
    """The jitter buffer joining another attribute than RtpPacket._data."""
    def removeFrame(self, sequence_number):
        return None

    monkeypatch.setattr(JitterBuffer, "_remove_frame", removeFrame)
    assert internals.problems() == [
        "aiortc.jitterbuffer.JitterBuffer._remove_frame no longer calls ._data"]


def test_onlyTheAdapterImportsAiortcOrAioice():
    """The rest of wcs uses the libraries through wcs.media.internals only."""
    offenders = []
    for path in sorted((ROOT / "wcs").rglob("*.py")):
        if path.name == "internals.py" and path.parent.name == "media":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name.split(".")[0] in ("aiortc", "aioice")]
    assert offenders == []


def test_serverRefusesToStartWithOneLine(tmp_path):
    """
    `twistd wcs` with one aiortc internal deleted before wcs imports it
    (sitecustomize) exits non-zero with the one line, no traceback.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        from aiortc.rtcdtlstransport import RTCDtlsTransport
        del RTCDtlsTransport._set_role
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        TWISTD + ["-n", "--pidfile=", "wcs", "--listen", "127.0.0.1",
                  "--state-dir", str(tmp_path / "state"), "--ws-port", "0",
                  "--wss-port", "0", "--http-port", "0", "--https-port", "0",
                  "--rtmp-port", "0", "--rest-port", "0", "--rest-https-port", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [
        f"wcs.media cannot use the installed aiortc {internals.version('aiortc')}, "
        f"aioice {internals.version('aioice')}: "
        "aiortc.rtcdtlstransport.RTCDtlsTransport._set_role is missing; "
        "it is tested with aiortc 1.16.x and aioice 0.13.x"]
    assert sys.modules.get("wcs.media.internals") is internals  # ours untouched
