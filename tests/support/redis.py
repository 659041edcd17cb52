"""
A real `redis-server` for the cluster tests, on a free loopback port, with
nothing saved to disk.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import freePort

START_TIMEOUT = 10.0


@dataclass
class RunningRedis:
    proc: subprocess.Popen
    port: int
    logPath: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=5)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def redisAvailable() -> bool:
    return shutil.which("redis-server") is not None


def startRedis(workdir: Path, port: int | None = None) -> RunningRedis:
    """Start redis-server on C{port} (a free one when None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or freePort()
    logPath = workdir / "redis.log"
    with open(logPath, "wb") as log:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT)
    running = RunningRedis(proc, port, logPath)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited:\n{logPath.read_text()}")
        try:
            if running.client().ping():
                return running
        except Exception:
            if time.monotonic() > deadline:
                running.stop()
                raise RuntimeError(f"redis-server did not answer:\n{logPath.read_text()}")
            time.sleep(0.05)
