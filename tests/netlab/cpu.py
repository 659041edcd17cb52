"""
The lab's own CPU over a window: how many of the machine's cores the
harness (this process: the aiortc publisher and players), the server
(twistd or Janus), each kind of Chromium process and the impairer used,
against what the whole machine used. Read from /proc (utime + stime of
this process and every descendant), no psutil. A run whose lab uses most
of the cores measures the machine, not the server: issue 16 asks for 4
players, and this says whether 4 Chromiums fit on this machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.server import residentBytes

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu s) of C{pid}, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields after the last ')'.
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def group(comm: str, pid: int, root: int) -> str:
    """The column a process counts in."""
    if pid == root:
        return "harness"
    if comm.startswith("chrom"):
        return "chromium"
    if comm in ("node", "playwright"):
        return "playwright"
    if comm.startswith("janus"):
        return "janus"
    if comm.startswith("twistd") or comm.startswith("python"):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return "other"
        return "impairer" if b"tests.netlab" in command else "server"
    return "other"


def snapshot(root: int | None = None) -> dict[int, tuple[str, float]]:
    """pid -> (group, cpu s) of C{root} (this process) and all its descendants."""
    root = os.getpid() if root is None else root
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            comm, _, cpu = table[pid]
            out[pid] = (group(comm, pid, root), cpu)
            todo += children.get(pid, [])
    return out


def machineBusy() -> float:
    """CPU s the whole machine was busy so far (every core, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


def residentMB(groups=("server", "janus"), root: int | None = None) -> float | None:
    """
    Resident memory (VmRSS, MB) of the processes of C{groups} (L{group})
    under C{root}: the server's (wcs's or Janus's) over a long run. None
    when there is none.
    """
    total, found = 0, False
    for pid, (kind, _) in snapshot(root).items():
        if kind not in groups:
            continue
        try:
            resident = residentBytes(pid)
        except OSError:  # gone meanwhile
            continue
        if resident is not None:
            total, found = total + resident, True
    return round(total / 2**20, 1) if found else None


class CpuMeter:
    """C{start()}, then C{stop()}: cores used per group over the window."""

    def start(self) -> "CpuMeter":
        self.began, self.before, self.machine = time.monotonic(), snapshot(), machineBusy()
        return self

    def stop(self) -> dict:
        seconds = time.monotonic() - self.began
        after, machine = snapshot(), machineBusy()
        used: dict[str, float] = {}
        for pid, (name, cpu) in after.items():
            # A process born in the window counts from 0.
            used[name] = used.get(name, 0.0) + cpu - self.before.get(pid, (name, 0.0))[1]
        cores = {name: round(value / seconds, 2) for name, value in sorted(used.items())}
        cores["lab"] = round(sum(used.values()) / seconds, 2)
        cores["machine"] = round((machine - self.machine) / seconds, 2)
        cores["cores"] = CORES
        return cores
