"""
Issue 16's done-means table (tests/netlab/targets.py) from run results of
the shape RoomRun gives: which targets a row meets, and Janus side by side.
"""

from tests.netlab.targets import markdown


def player(fps=30.0, freezes=0.0, p50=100, p95=200, keyframes=2, down=1000):
    return {"fps": fps, "freezesPerMin": freezes, "frozenS": 0.0, "delayP50": p50,
            "delayP95": p95, "unreadable": 0, "keyframes": keyframes, "downlinkKbit": down,
            "tailDropped": 0}


def run(server, profile, players, uplink=1100, media=1000, codec="h264"):
    return {"server": server, "profile": profile, "codec": codec, "seconds": 30.0,
            "publisherFps": 30.0, "uplinkKbit": uplink, "publisherMediaKbit": media,
            "perPlayer": players, "load": 1.5}


def rowsOf(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_mobile_targets_met_and_missed():
    table = markdown([
        run("wcs", "mobile", [player(fps=25, freezes=4), player(fps=24, freezes=2)]),
        run("wcs", "mobile", [player(fps=25, freezes=6), player(fps=19)], uplink=1400,
            codec="vp8"),
    ])
    good, bad = rowsOf(table)
    assert good[5] == "24–25" and good[7] == "1–2"
    assert "NOT met" not in good[-1]
    assert "fps >= 20" in good[-1] and "<= 2 freezes/30 s" in good[-1]
    missed = bad[-1].split("met:")[1]
    assert "fps >= 20" in missed and "<= 2 freezes/30 s" in missed and "1.3x" in missed
    assert bad[12] == "1.4"


def test_narrow_splits_the_narrow_player_and_compares_keyframes_with_clean():
    table = markdown([
        run("wcs", "clean", [player(keyframes=2)] * 3),
        run("wcs", "narrow", [player(fps=18, keyframes=9), player(keyframes=2),
                              player(keyframes=3)]),
    ])
    clean, narrow, others = rowsOf(table)
    assert clean[-1] == "(reference)"
    assert narrow[3] == "narrow (1)" and "NOT met:** fps >= 20" in narrow[-1]
    assert others[3] == "others (2)"
    assert "full stream" in others[-1].split("met:")[-1]
    assert "NOT met:** keyframes <= clean's 2" in others[-1]


def test_wcs_against_janus_names_the_worse_figures():
    table = markdown([
        run("wcs", "lossy", [player(fps=30, p50=300)]),
        run("janus", "lossy", [player(fps=30, p50=200)], uplink=1250),
    ])
    wcs, janus = rowsOf(table)
    assert "as good as Janus (worse: p50)" in wcs[-1].split("met:")[1]
    assert "Janus" not in janus[-1]
    # Within the noise margins (a tenth, 1 fps) a figure counts as equal.
    table = markdown([
        run("wcs", "lossy", [player(fps=29.5, p50=105)]),
        run("janus", "lossy", [player(fps=30, p50=100)]),
    ])
    assert "NOT met" not in rowsOf(table)[0][-1]


def test_rounds_judge_each_arm_against_the_janus_run_of_its_round():
    """bench/network.py --rounds: A B Janus A B Janus, each wcs row against its round's Janus."""
    results = []
    for turn, janusP50 in ((0, 200), (1, 300)):
        for variant in ("media_player_reorder_wait=0", None):
            results.append({**run("wcs", "lossy", [player(p50=250)]), "round": turn,
                            **({"variant": variant} if variant else {})})
        results.append({**run("janus", "lossy", [player(p50=janusP50)]), "round": turn})
    rows = rowsOf(markdown(results))
    assert [r[2] for r in rows] == ["wcs (media_player_reorder_wait=0)", "wcs", "janus"] * 2
    assert all("worse: p50" in r[-1] for r in rows[:2])
    assert not any("worse" in r[-1] for r in rows[3:5])


def test_fps_above_what_the_publisher_made_counts_as_the_publishers():
    """A player playing out a stall's backlog decodes more than was made: no better picture."""
    table = markdown([
        run("wcs", "lossy", [player(fps=30)]),
        run("janus", "lossy", [player(fps=32.9)]),
    ])
    assert "NOT met" not in rowsOf(table)[0][-1]
    table = markdown([
        run("wcs", "lossy", [player(fps=28.5)]),
        run("janus", "lossy", [player(fps=32.9)]),
    ])
    assert "as good as Janus (worse: fps)" in rowsOf(table)[0][-1]


def test_keyframes_above_cleans_are_the_encoders_own_when_none_more_were_asked():
    """The encoder's own keyframes vary with the window; what a narrow player causes is asked."""
    def narrow(asked):
        return {**run("wcs", "narrow", [player(keyframes=9), player(keyframes=6)]),
                "publisherKeyframeRequests": asked}
    clean = {**run("wcs", "clean", [player(keyframes=4)]), "publisherKeyframeRequests": 0}
    others = rowsOf(markdown([clean, narrow(0)]))[2]
    assert "NOT met" not in others[-1]
    assert "6: the encoder's own, 0 asked in the window, clean 0" in others[-1]
    others = rowsOf(markdown([clean, narrow(3)]))[2]
    assert "NOT met:** keyframes <= clean's 4 or none more asked" in others[-1]
    # Without the counts (Janus, Chromium runs) only the keyframes decide.
    others = rowsOf(markdown([run("wcs", "clean", [player(keyframes=4)]), narrow(None)]))[2]
    assert "NOT met:** keyframes <= clean's 4" in others[-1]
