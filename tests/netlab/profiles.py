"""
The lab's network profiles, the impairer links they make for a set of
clients, and the probe run that proves a profile is in force.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass

from tests.netlab.probe import delayProblems, echoProbe, lossTolerance, rateProbe
from tests.netlab.lab import REALTIME, ROOT, SERVER


@dataclass(frozen=True)
class Profile:
    """
    Impairment of each client's link, each direction (uplink: client to
    server; downlink: server to client), unless C{firstPlayerDownlinkOnly}:
    then only the first player's downlink is impaired and the rest is clean.
    """

    name: str
    loss: float = 0.0
    delayMs: float = 0.0
    jitterMs: float = 0.0
    rateKbit: float = 0.0
    firstPlayerDownlinkOnly: bool = False

    def impairment(self) -> dict:
        return {"loss": self.loss, "delayMs": self.delayMs, "jitterMs": self.jitterMs,
                "rateKbit": self.rateKbit}

    def links(self, clients: list[tuple[str, str]]) -> list[dict]:
        """
        Impairer link specs for C{clients}, (name, address) pairs, players
        named "player..." in order. Every client gets an up and a down link,
        impaired or not, so that bytes are counted per leg.
        """
        players = [name for name, _ in clients if name.startswith("player")]
        specs = []
        for name, address in clients:
            for direction, match in (("up", {"src": address}), ("down", {"dst": address})):
                spec = {"name": f"{name}.{direction}", **match}
                if (not self.firstPlayerDownlinkOnly
                        or (players and name == players[0] and direction == "down")):
                    spec.update(self.impairment())
                specs.append(spec)
        return specs


PROFILES = {p.name: p for p in (
    Profile("clean"),
    Profile("wifi", loss=0.01, delayMs=30, jitterMs=10),
    Profile("lossy", loss=0.03, delayMs=50, jitterMs=20),
    Profile("mobile", loss=0.05, delayMs=100, jitterMs=40, rateKbit=2000),
    Profile("narrow", loss=0.005, delayMs=20, rateKbit=600, firstPlayerDownlinkOnly=True),
)}


async def prove(profile: Profile, clients: list[tuple[str, str]], count: int = 500,
                interval: float = 0.004, rateLinks: int = 2) -> tuple[dict, list[str]]:
    """
    Probe every client's link at once (small packets, well under any rate
    limit), then the first C{rateLinks} rate-limited links one at a time (all
    are configured alike); returns the report and the
    list of what does not match the profile (empty when it is in force).
    """
    specs = {spec["name"]: spec for spec in profile.links(clients)}
    results = await asyncio.gather(*(echoProbe(address, SERVER, count, interval)
                                     for _, address in clients))
    report, problems = {"links": {}}, []
    pooled: dict[float, list[int]] = {}  # expected loss -> [sent, lost]
    for (name, _), directions in zip(clients, results):
        for direction, measured in directions.items():
            spec = specs[f"{name}.{direction}"]
            expected = spec.get("loss", 0.0)
            report["links"][spec["name"]] = measured.summary()
            problems += delayProblems(spec["name"], measured, spec.get("delayMs", 0),
                                      spec.get("jitterMs", 0))
            if abs(measured.loss - expected) > lossTolerance(expected, measured.sent):
                problems.append(f"{spec['name']}: loss {measured.loss:.3f}, expected {expected}")
            total = pooled.setdefault(expected, [0, 0])
            total[0] += measured.sent
            total[1] += measured.sent - len(measured.delays)
    # The per-link check is loose at 1% loss; all the links with one loss
    # together must show it within 4 sigma (a lab that applied no loss fails).
    report["pooledLoss"] = {}
    for expected, (sent, lost) in pooled.items():
        measured = lost / sent if sent else 0.0
        report["pooledLoss"][str(expected)] = {"sent": sent, "loss": round(measured, 4)}
        if abs(measured - expected) > 4 * (expected * (1 - expected) / max(sent, 1)) ** 0.5 + 0.002:
            problems.append(f"loss over all links at {expected}: {measured:.4f} of {sent}")
    limited = [(name, address, direction) for name, address in clients
               for direction in ("down", "up") if specs[f"{name}.{direction}"].get("rateKbit")]
    for name, address, direction in limited[:rateLinks]:
        spec = specs[f"{name}.{direction}"]
        source, destination = (address, SERVER) if direction == "up" else (SERVER, address)
        rate = await rateProbe(source, destination, spec["rateKbit"])
        report["links"][spec["name"]]["rateKbit"] = round(rate)
        # Loss on the link thins what arrives a little more.
        if not 0.8 * spec["rateKbit"] <= rate <= 1.1 * spec["rateKbit"]:
            problems.append(f"{spec['name']}: {rate:.0f} kbit/s through a "
                            f"{spec['rateKbit']} kbit/s limit")
    return report, problems


def proveInLab(lab, profile: Profile, clients: list[tuple[str, str]],
               timeout: float = 60.0) -> tuple[dict, list[str]]:
    """
    L{prove} in a process of its own in C{lab}, at real-time priority like
    the impairer: on a loaded machine the probe then measures the links,
    not the scheduler's delays of a busy test process.
    """
    with lab.entered():
        done = subprocess.run(
            REALTIME + [sys.executable, "-m", "tests.netlab.profiles", profile.name,
                        json.dumps(clients)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"probe failed: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout)
    return answer["report"], answer["problems"]


if __name__ == "__main__":
    report, problems = asyncio.run(prove(PROFILES[sys.argv[1]], json.loads(sys.argv[2])))
    print(json.dumps({"report": report, "problems": problems}))
