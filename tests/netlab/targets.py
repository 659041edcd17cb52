"""
Issue 16's "done means" as a markdown table, from the results of
L{tests.netlab.media.RoomRun} runs (bench/network.py, docs/networks.md).

One row per profile, codec and server (on C{narrow}: the narrow player,
the first, and the others apart), with the figures the issue names and a
column saying which of its targets the row meets. Targets:
  - C{wifi}, C{lossy}: every player >= 25 fps and <= 1 freeze per minute;
  - C{mobile}: every player >= 20 fps and <= 2 freezes per 30 s, the
    publisher's uplink <= 1.3x its media;
  - C{narrow}: the narrow player >= 20 fps; the others the full stream
    (their fps >= 90% of what the publisher made) and no more keyframes
    than on C{clean} with the same codec and server (when it ran too), or,
    with more, no more asked of the publisher in the window than on
    C{clean} (L{_keyframeCheck});
  - with Janus in the same results: wcs at least as good on each figure
    (fps, freezes, delay p50 and p95, uplink/media); a figure within a
    tenth (fps within 1) counts as equal, as the machine's noise is larger,
    and fps above what the publisher made (a stall's backlog played out)
    counts as the publisher's.
"""

from __future__ import annotations

COLUMNS = ("profile", "codec", "server", "players", "pub fps", "fps", "freezes/min",
           "freezes per 30 s", "frozen s", "delay p50 / p95 ms", "uplink kbit/s",
           "pub media kbit/s", "uplink/media", "downlink kbit/s", "tail drops", "keyframes",
           "load", "targets")

FLOOR = {"wifi": 25, "lossy": 25, "mobile": 20}  # fps, every player


def _span(values, digits=1) -> str:
    values = [v for v in values if v is not None]  # Chromium players may lack a figure
    if not values:
        return "-"
    low, high = min(values), max(values)
    fmt = (lambda v: f"{v:.{digits}f}".rstrip("0").rstrip(".")) if digits else str
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def _ratio(result: dict):
    total, media = result.get("uplinkKbit"), result.get("publisherMediaKbit")
    return round(total / media, 2) if total and media else None


def groups(result: dict) -> list[tuple[str, list[dict]]]:
    """The players of a run as the table splits them: (label, players)."""
    players = result["perPlayer"]
    if result["profile"] == "narrow" and len(players) > 1:
        return [("narrow (1)", players[:1]), (f"others ({len(players) - 1})", players[1:])]
    return [(f"all ({len(players)})", players)]


def _summary(result: dict, players: list[dict]) -> dict:
    delays50 = [p["delayP50"] for p in players if p.get("delayP50") is not None]
    delays95 = [p["delayP95"] for p in players if p.get("delayP95") is not None]
    keyframes = [p["keyframes"] for p in players if p.get("keyframes") is not None]
    return {
        "fps": min((p["fps"] for p in players if p.get("fps") is not None), default=0),
        "freezesPerMin": max(p.get("freezesPerMin") or 0 for p in players),
        "p50": max(delays50) if delays50 else None,
        "p95": max(delays95) if delays95 else None,
        "ratio": _ratio(result),
        "keyframes": max(keyframes) if keyframes else None,
        "freezes30": max(p.get("freezesPerMin") or 0 for p in players) / 2,
    }


def verdict(result: dict, label: str, players: list[dict], clean: dict | None,
            janus: dict | None) -> list[str]:
    """What of issue 16's targets this row meets (C{met: ...}) or not (C{NOT met: ...})."""
    s, profile = _summary(result, players), result["profile"]
    checks: list[tuple[str, bool]] = []
    if profile in FLOOR:
        checks.append((f"fps >= {FLOOR[profile]}", s["fps"] >= FLOOR[profile]))
    if profile in ("wifi", "lossy"):
        checks.append(("<= 1 freeze/min", s["freezesPerMin"] <= 1))
    if profile == "mobile":
        checks.append(("<= 2 freezes/30 s", s["freezes30"] <= 2))
        if s["ratio"] is not None:
            checks.append(("uplink <= 1.3x media", s["ratio"] <= 1.3))
    if profile == "narrow" and label.startswith("narrow"):
        checks.append(("fps >= 20", s["fps"] >= 20))
    if profile == "narrow" and label.startswith("others"):
        checks.append(("full stream", s["fps"] >= 0.9 * result["publisherFps"]))
        if clean is not None and s["keyframes"] is not None:
            base = _summary(clean, clean["perPlayer"])["keyframes"]
            if base is not None:
                checks.append(_keyframeCheck(s["keyframes"], base, result, clean))
    if janus is not None and result["server"] == "wcs":
        j = _summary(janus, next(ps for lb, ps in groups(janus) if lb.split()[0] ==
                                 label.split()[0]))
        # More frames than the publisher made is a backlog played out after
        # a stall (aiortc decodes what it held), not a better picture.
        worse = [name for name, ours, theirs, higherIsBetter in (
            ("fps", min(s["fps"], result["publisherFps"]), min(j["fps"], janus["publisherFps"]),
             True),
            ("freezes", s["freezesPerMin"], j["freezesPerMin"], False),
            ("p50", s["p50"], j["p50"], False),
            ("p95", s["p95"], j["p95"], False),
            ("uplink/media", s["ratio"], j["ratio"], False),
        ) if ours is not None and theirs is not None and _worse(ours, theirs, higherIsBetter,
                                                                  name == "fps")]
        checks.append(("as good as Janus" + (f" (worse: {', '.join(worse)})" if worse else ""),
                       not worse))
    met = [name for name, ok in checks if ok]
    missed = [name for name, ok in checks if not ok]
    return ([f"**NOT met:** {'; '.join(missed)}"] if missed else []) + \
        ([f"met: {'; '.join(met)}"] if met else [])


def _keyframeCheck(keyframes: int, base: int, result: dict, clean: dict) -> tuple[str, bool]:
    """
    The others' keyframes against clean's. The publisher's encoder makes
    its own as well (the lab's aiortc H.264 every 5-8 s: 4 to 6 in a 30 s
    window of the same run's clean), so a count above clean's is the
    narrow player's doing only if more were asked of the publisher in the
    window than on clean (C{publisherKeyframeRequests}, from wcs's /metrics).
    """
    name = f"keyframes <= clean's {base}"
    if keyframes <= base:
        return name, True
    asked, askedClean = (result.get("publisherKeyframeRequests"),
                         clean.get("publisherKeyframeRequests"))
    if asked is None or askedClean is None:
        return name, False
    return (f"{name} or none more asked of the publisher ({keyframes}: the encoder's own, "
            f"{asked} asked in the window, clean {askedClean})", asked <= askedClean)


def _worse(ours, theirs, higherIsBetter: bool, absolute: bool) -> bool:
    margin = 1 if absolute else 0.1 * abs(theirs)
    return ours < theirs - margin if higherIsBetter else ours > theirs + margin


def markdown(results: list[dict]) -> str:
    """The table (header and one line per row) for C{results}, in their order."""
    def find(server, profile, codec, round=None):
        return next((r for r in results if (r["server"], r["profile"], r["codec"])
                     == (server, profile, codec) and round in (None, r.get("round"))), None)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        clean = find(result["server"], "clean", result["codec"])
        # (bench/network.py --rounds: the Janus run of the same round)
        janus = find("janus", result["profile"], result["codec"], result.get("round")) \
            or find("janus", result["profile"], result["codec"])
        for label, players in groups(result):
            targets = verdict(result, label, players, clean, janus) or ["(reference)"]
            p50 = _span([p.get("delayP50") for p in players], 0)
            p95 = _span([p.get("delayP95") for p in players], 0)
            cells = (
                result["profile"] + (f" ({result['setting']})" if result.get("setting") else ""),
                result["codec"], result["server"] + (
                    f" ({result['variant']})" if result.get("variant") else ""),
                label, result["publisherFps"],
                _span([p.get("fps") for p in players]),
                _span([p.get("freezesPerMin") for p in players]),
                _span([(p.get("freezesPerMin") or 0) / 2 for p in players]),
                _span([p.get("frozenS") for p in players]), f"{p50} / {p95}",
                result.get("uplinkKbit"), result.get("publisherMediaKbit"), _ratio(result),
                _span([p.get("downlinkKbit") for p in players], 0),
                _span([p.get("tailDropped") for p in players], 0),
                _span([p.get("keyframes") for p in players], 0),
                round(result["load"], 1) if "load" in result else None, "; ".join(targets))
            lines.append("| " + " | ".join("-" if v is None else str(v) for v in cells) + " |")
    return "\n".join(lines)
