"""
wcs on impaired networks: the network lab (tests/netlab, docs/networks.md).

For each profile: a fresh lab (private network namespace, NFQUEUE impairer),
the UDP probe that proves the profile is in force (its figures printed, the
run marked when they stray), then for each --server (wcs, Janus's VideoRoom)
a fresh server inside the lab and for each codec one room: an aiortc publisher of a stamped 640x480@30 picture (~1
Mbit/s) and N decoding aiortc players, measured over --seconds. Prints one
row per player: fps, freezes (no new frame for 500 ms) per minute, seconds
frozen and the longest freeze, glass-to-glass delay p50/p95, the publisher's uplink and the
player's downlink (kbit/s offered to the link: media and retransmissions),
tail drops at a rate limit, keyframes decoded; then issue 16's "done means"
table (tests/netlab/targets.py): per profile, codec and server, the figures
and which targets are met. Needs root. Figures only; it
exits non-zero when a probe did not prove its profile or a run failed.

A B A B in one lab: a --server entry `wcs:KEY=VALUE[:KEY=VALUE]` runs wcs
with those settings on top of --set, and --rounds N runs the --server list N
times, in order, per profile (`--server wcs,wcs:media_player_reorder_wait=0,janus
--rounds 2`: A B Janus A B Janus); each wcs row is judged against the Janus run
of its round.

    .venv/bin/python bench/network.py [--profile all|wifi,lossy] [--codec h264,vp8]
                                      [--server wcs,janus] [--players 4] [--seconds 30]
                                      [--size 640x480] [--json out.jsonl] [--no-rtx]
                                      [--workdir DIR] [--set room_max_bitrate=500 ...]
                                      [--player aiortc|chromium]
                                      [--narrow-link transcode|drop] [--rounds 2]

--player chromium: the players are headless Chromium pages, each in its own
namespace: the SDK's Room API for wcs (tests/netlab/chromium.py), a page of
Janus's WebSocket API for Janus (tests/netlab/janus_chromium.py); a second
table prints their getStats() figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netlab.lab import NetLab, netemAvailable  # noqa: E402
from tests.netlab.janus import JanusRoom, JanusServer  # noqa: E402
from tests.netlab.chromium import (  # noqa: E402
    STATS_COLUMNS, ChromiumRoomRun, sdpSummary, statsRows)
from tests.netlab.janus_chromium import JanusChromiumRoomRun  # noqa: E402
from tests.netlab.media import BITRATE, CODECS, RoomRun, WcsRoom, clients  # noqa: E402
from tests.netlab.profiles import PROFILES, proveInLab  # noqa: E402
from tests.netlab.serverlog import feedback  # noqa: E402
from tests.netlab.targets import markdown  # noqa: E402
from tests.support.rooms import MEDIA  # noqa: E402
from tests.support.server import startServer  # noqa: E402

COLUMNS = ("server", "profile", "codec", "player", "pub fps", "fps", "freezes/min", "frozen s",
           "longest s",
           "delay p50 ms", "p95 ms", "uplink kbit/s", "pub media kbit/s", "uplink/media",
           "downlink kbit/s", "tail drops", "keyframes", "load")


def runProfile(profile, args, workdir: Path) -> tuple[list[dict], list[str]]:
    labClients = clients(args.players)
    results, failures = [], []
    with NetLab() as lab:
        lab.setLinks(profile.links(labClients))
        report, problems = proveInLab(lab, profile, labClients)
        links = report["links"]
        print(f"# {profile.name}: probe " + ", ".join(
            f"{name} loss {f['loss']:.3f} delay {f['p50']}/{f['p95']} ms"
            + (f" {f['rateKbit']} kbit/s" if "rateKbit" in f else "")
            for name, f in links.items()), flush=True)
        if problems:
            failures += [f"{profile.name} probe: {p}" for p in problems]
        for turn in range(args.rounds):
            for index, spec in enumerate(args.servers):
                results += runServer(spec, profile, report, lab, args,
                                     workdir / f"{turn}-{index}", failures)
                for result in results:
                    result.setdefault("round", turn)
    return results, failures


# The publisher is told 1 Mbit/s by both servers: Janus's room bitrate
# (tests/netlab/janus.py), and wcs's REMB to a publisher without transport-cc
# and without a cap (default 1 500); --set media_remb_uncapped=1500 for that.
LAB_RATE = {"media_remb_uncapped": "1000"}
NARROW_WARMUP = 8.0  # s after the first frames: NarrowWatch moves the player within ~4 s


def runServer(spec, profile, report, lab, args, workdir: Path, failures) -> list[dict]:
    """Every codec's room on a fresh server of C{spec} (wcs[:K=V...] or janus) in C{lab}."""
    results = []
    kind, *extra = spec.split(":")
    variant = dict(item.split("=", 1) for item in extra)
    try:
        with lab.entered():
            if kind == "wcs":
                server = startServer(workdir / profile.name,
                                     settings={**MEDIA, **LAB_RATE, **profileSettings(profile, args),
                                               **variant},
                                     enable=("ws", "http", "rest"))  # http: the SDK for Chromium; rest: /metrics
            else:
                server = JanusServer(workdir / f"janus-{profile.name}").start()
    except Exception as e:  # a busy machine: report and go on with the next arm
        failures.append(f"{spec} {profile.name}: not started: {type(e).__name__}: {e}")
        return results
    try:
        for codec in args.codecs:
            def newRun(codec=codec):
                common = dict(width=args.width, height=args.height, rtx=not args.no_rtx,
                              slice=args.slice)
                if profile.name == "narrow":
                    # The window starts once the narrow player was moved to
                    # the lower rendition (2-4 s after it joins, docs/networks.md):
                    # like a player's join, the move's one keyframe is start-up.
                    common["warmup"] = NARROW_WARMUP
                if args.player == "chromium" and kind == "janus":
                    return JanusChromiumRoomRun(codec, args.players, args.seconds, **common)
                if args.player == "chromium":
                    return ChromiumRoomRun(codec, args.players, args.seconds, **common,
                                           httpURL=f"http://127.0.0.1:{server.ports['http']}")
                return RoomRun(codec, args.players, args.seconds, **common)

            async def measure(codec=codec):
                run = newRun()
                room = (WcsRoom(server) if kind == "wcs"
                        else await JanusRoom(server, codec, BITRATE).open())
                result = await run.run(room, lab)
                if kind == "wcs":
                    result["stream"] = room.stream  # for its feedback lines in the log
                return result
            result = None
            for attempt in range(1 + args.retries):
                try:
                    with lab.entered():
                        result = asyncio.run(asyncio.wait_for(measure(), args.seconds + 180))
                    break
                except Exception as e:  # report, try again or go on with the next run
                    failure = f"{kind} {profile.name} {codec}: {type(e).__name__}: {e}"
                    print(f"# attempt {attempt + 1} failed: {failure}", flush=True)
                    if attempt == args.retries:
                        failures.append(failure)
            if result is None:
                continue
            result.update(server=kind, profile=profile.name, probe=report,
                          load=os.getloadavg()[0])
            if variant:
                result["variant"] = ":".join(extra)
            if "cpuCores" in result:
                print(f"# {kind} {profile.name} {codec}: CPU cores used in the window "
                      f"(of {result['cpuCores']['cores']}): " + ", ".join(
                          f"{k} {v}" for k, v in result["cpuCores"].items() if k != "cores")
                      + f"; load {result['load']:.1f}", flush=True)
            if result.get("serverMB"):
                print(f"# {kind} {profile.name} {codec}: server memory (s: MB): " + ", ".join(
                    f"{at}: {mb}" for at, mb in result["serverMB"]), flush=True)
            if any((result.get("kernelUdp") or {}).values()):
                print(f"# {kind} {profile.name} {codec}: the lab's kernel dropped datagrams at "
                      f"sockets: {result['kernelUdp']}", flush=True)
            for player in result.get("perPlayer", [])[:1]:
                told = sdpSummary((player.get("stats") or {}).get("remoteSdp"))
                if told:
                    print(f"# {kind} {profile.name} {codec}: to Chromium: {told}", flush=True)
            if kind == "wcs" and profile.name == "narrow":
                result["setting"] = f"{args.narrow_link}"
            results.append(result)
    finally:
        server.stop()
        if kind == "wcs":
            # wcs's own per-player counters, logged as each session ends.
            log = server.log()
            for result in results:
                result["serverFeedback"] = feedback(log, result.get("stream"))
                printFeedback(result)
    return results


def printFeedback(result) -> None:
    """One line per session: wcs's feedback counters (whole sessions, warm-up included)."""
    got = result["serverFeedback"]
    head = f"# {label(result)} {result['profile']} {result['codec']}"
    if got["publisher"]:
        print(f"{head} publisher leg: " + ", ".join(f"{k} {v}" for k, v in got["publisher"].items()))
    for index, player in enumerate(got["players"]):
        print(f"{head} player {index} leg: " + ", ".join(f"{k} {v}" for k, v in player.items()))
    narrow = got.get("narrow") or {}
    if any(narrow.values()):
        print(f"{head} narrow link: {narrow['moved']} moves to the lower rendition, "
              f"{narrow['back']} back on the stream (whole sessions)")


def profileSettings(profile, args) -> dict:
    """wcs's settings for C{profile}: issue 16's C{narrow} target is for C{--narrow-link}."""
    if profile.name == "narrow":
        return {"player_narrow_link": args.narrow_link, **args.settings}
    return args.settings


def label(result: dict) -> str:
    """The server, and the settings of its A/B arm if any."""
    variant = result.get("variant")
    return result["server"] + (f" ({variant})" if variant else "")


def rows(result: dict):
    for index, player in enumerate(result["perPlayer"]):
        yield (label(result), result["profile"], result["codec"], index, result["publisherFps"],
               player["fps"], player["freezesPerMin"], player["frozenS"],
               player.get("longestFreezeS"), player["delayP50"],
               player["delayP95"], result["uplinkKbit"], result["publisherMediaKbit"],
               _ratio(result["uplinkKbit"], result["publisherMediaKbit"]), player["downlinkKbit"],
               player["tailDropped"], player["keyframes"], round(result["load"], 1))


def _ratio(total, media):
    return round(total / media, 2) if total and media else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--profile", default="all", help="all, or names: " + ",".join(PROFILES))
    parser.add_argument("--codec", default="h264,vp8", help="h264, vp8 or both")
    parser.add_argument("--players", type=int, default=4)
    parser.add_argument("--server", default="wcs", help="wcs, janus or both: wcs,janus")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--json", help="append one JSON line per run here")
    parser.add_argument("--no-rtx", action="store_true",
                        help="clients offer no RTX (retransmissions on the media SSRC)")
    parser.add_argument("--retries", type=int, default=1,
                        help="run a room that failed (did not start, no first frame) again "
                             "up to this many times (Janus's rooms sometimes do not start on "
                             "impaired links)")
    parser.add_argument("--workdir", help="keep the servers' folders (their logs) here")
    parser.add_argument("--narrow-link", default="transcode", choices=("drop", "transcode"),
                        help="wcs's player_narrow_link on the narrow profile (default transcode, "
                             "as issue 16's target)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a wcs setting for the runs (repeatable)")
    parser.add_argument("--player", choices=("aiortc", "chromium"), default="aiortc",
                        help="the players: aiortc, or headless Chromium pages of the SDK")
    parser.add_argument("--slice", type=float, default=0.0, metavar="SECONDS",
                        help="also each player's figures per slice of the window this long "
                             "(in the --json line, 'slices'; Chromium players: what the page "
                             "painted) and the server's memory after each: a long run's drift "
                             "(aiortc players: and 3 s after the room emptied)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the --server list this many times per profile (A B A B)")
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE")
    args.settings = dict(item.split("=", 1) for item in args.set)
    names = list(PROFILES) if args.profile == "all" else args.profile.split(",")
    unknown = [n for n in names if n not in PROFILES]
    args.codecs = args.codec.split(",")
    args.servers = args.server.split(",")
    if any(s.split(":")[0] not in ("wcs", "janus") or (s.startswith("janus:"))
           or any("=" not in kv for kv in s.split(":")[1:]) for s in args.servers):
        parser.error(f"unknown server in {args.server}")
    if unknown or any(c not in CODECS for c in args.codecs):
        parser.error(f"unknown profile or codec: {unknown or args.codecs}")
    args.width, args.height = (int(v) for v in args.size.split("x"))
    print(f"{args.players} {args.player} players, {args.seconds:.0f} s per run, {args.size}, "
          f"wcs settings {({**LAB_RATE, **args.settings})}, "
          f"load average {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M:%S')}; kernel netem "
          f"{'present' if netemAvailable() else 'absent'}, links shaped by the NFQUEUE impairer",
          flush=True)
    table, failures, allResults = [], [], []
    with (contextlib.nullcontext(args.workdir) if args.workdir
          else tempfile.TemporaryDirectory(prefix="netlab-")) as workdir:
        for name in names:
            results, failed = runProfile(PROFILES[name], args, Path(workdir))
            failures += failed
            allResults += results
            for result in results:
                table += rows(result)
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps(result) + "\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in table:
        print("| " + " | ".join("-" if v is None else str(v) for v in row) + " |")
    if args.player == "chromium":
        print("\nChromium's getStats() over the window, per player:")
        print("| " + " | ".join(STATS_COLUMNS) + " |")
        print("|" + "---|" * len(STATS_COLUMNS))
        for row in statsRows(allResults):
            print("| " + " | ".join("-" if v is None else str(v) for v in row) + " |")
    print(f"\n## Issue 16's targets ({args.players} players, {args.size}, "
          f"{args.seconds:.0f} s, load at the end of each run)\n")
    print(markdown(allResults))
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
