"""
The C reader of C{bench/chat_latency.py} (C{--reader c}): C{bench/chat_reader.c}
built with gcc at bench time into C{state/} (no binary in the tree), and the
reader process's side of it: it starts the program for its share of the
participants and relays between it and the coordinator (the joined report,
the start, the window's figures), in the form L{bench.chat_readers.reader}
reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "bench" / "chat_reader.c"


def available() -> bool:
    return shutil.which("gcc") is not None


def build(directory: Path = ROOT / "state") -> str:
    """The program, compiled once per version of its source."""
    source = SOURCE.read_bytes()
    binary = directory / f"chat_reader-{hashlib.sha256(source).hexdigest()[:12]}"
    if not binary.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(f"{binary.name}.{os.getpid()}")
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(partial), str(SOURCE)], check=True)
        partial.replace(binary)
    return str(binary)


def cReader(conn, spec: dict) -> dict:
    """Run the C program for C{spec["mine"]}; the report of the window."""
    logins = spec["logins"]
    index = {login: i for i, login in enumerate(logins)}
    host, port = spec["address"]
    proc = subprocess.Popen(
        [spec["binary"], host, str(port), spec["room"], str(spec["total"]),
         repr(spec["interval"]), repr(spec["seconds"]), repr(spec["drain"]),
         repr(spec["joinTimeout"]), ",".join(str(index[m]) for m in spec["mine"]), *logins],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        head = proc.stdout.readline().split(" ", 3)
        if len(head) < 4 or head[0] != "joined":
            error = f"chat_reader: {' '.join(head).strip() or 'no output'} (exit {proc.poll()})"
            conn.send({"joined": 0, "errors": [error]})
            return {"error": error}
        failed = int(head[2])
        errors = [head[3].strip()] if failed else []
        conn.send({"joined": int(head[1]), "errors": errors})
        if errors:
            return {"error": errors[0]}
        go = conn.recv() if conn.poll(600) else None
        if not go:
            return {"error": "no start from the coordinator"}
        proc.stdin.write(f"go {go['t0']!r} {go['window']}\n")
        proc.stdin.flush()
        fields = proc.stdout.readline().split()
        if not fields or fields[0] != "result":
            return {"error": f"chat_reader: no result (exit {proc.wait(10)})"}
        (sent, late, cpu, wall, echo, stale, refused, statuses, odd, count, wakeups, reads,
         system) = fields[1:]
        latencies, worst = [], {}
        for _ in range(int(count)):
            k, latency = proc.stdout.readline().split()
            k, latency = int(k), float(latency)
            latencies.append(latency)
            if latency > worst.get(k, 0.0):
                worst[k] = latency
        return {"sent": int(sent), "latencies": latencies, "worst": worst, "rejoined": 0,
                "rejoin_sample": [], "echo": int(echo), "stale": int(stale) + int(odd),
                "refused": int(refused), "statuses": int(statuses), "cpu": float(cpu),
                "wall": float(wall), "late": float(late), "wakeups": int(wakeups),
                "reads": int(reads), "system": float(system)}
    finally:
        proc.stdin.close()  # it then closes its connections and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
