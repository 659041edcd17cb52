"""log_format json: one JSON object per line, from twistd's own start to its stop."""

import json
import os
import signal
import subprocess
import time

import pytest

from twisted.logger import Logger, eventFromJSON

from tests.support.server import TWISTD, freePort
from wcs.config import ConfigError, parseProperties
from wcs.logs import jsonLinesObserver


def test_observer_writes_json_lines_to_the_logfile(tmp_path):
    path = tmp_path / "wcs.log"
    observer = jsonLinesObserver({"logfile": str(path), "nodaemon": True})
    log = Logger(namespace="wcs.test", observer=observer)
    log.info("room {room} started", room="lobby\nFORGED")
    log.warn("second")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["room"] == "lobby\nFORGED" and first["log_namespace"] == "wcs.test"
    assert first["log_text"] == "room lobby\nFORGED started"
    assert eventFromJSON(lines[1])["log_level"].name == "warn"


def waitForLine(path, predicate, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines()
        if any(predicate(json.loads(line)) for line in lines if line.endswith("}")):
            return
        assert proc.poll() is None, path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"no such line in {timeout}s:\n{path.read_text()}")


def test_server_logs_json_lines_on_stdout(tmp_path):
    port = freePort()
    out = tmp_path / "stdout"
    args = TWISTD + ["-n", "--pidfile=", "wcs", "--listen", "127.0.0.1",
                     "--state-dir", str(tmp_path / "state"), "--ws-port", str(port),
                     "--wss-port", "0", "--http-port", "0", "--https-port", "0",
                     "--rtmp-port", "0", "--log-format", "json"]
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=stdout, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        # Structured fields survive (the transport's name), and Twisted's
        # legacy lines come through the same observer.
        waitForLine(out, lambda e: e.get("name") == "websocket"
                    and e["log_format"] == "transport {name} enabled"
                    and e["log_text"] == "transport websocket enabled", proc)
        waitForLine(out, lambda e: e["log_text"].endswith(f"starting on {port}"), proc)
        # The ports open before the reactor runs, the signal handlers once it
        # runs: a SIGTERM in between kills the process before it logs its end.
        # The gc line is logged once it runs (wcs.gctune, callWhenRunning).
        waitForLine(out, lambda e: e.get("log_namespace") == "wcs.gctune", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    lines = out.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line, start to stop
    assert any(e["log_text"].startswith("twistd ") for e in events)
    assert any(e["log_text"] == "Server Shut Down." for e in events)


def test_log_format_is_text_or_json():
    assert parseProperties(["log_format=JSON"]).log_format == "json"
    assert parseProperties([]).log_format == "text"
    with pytest.raises(ConfigError, match="log_format: expected one of text, json, got 'xml'"):
        parseProperties(["log_format=xml"])
