"""bench/chromefreeze.py's publisher leg: what we did for a packet lost on the way in."""

from bench.chromefreeze import WayIn


def _leg(events):
    way = WayIn()
    for t, name, numbers in events:
        if name == "in":
            way.packet(t, numbers[0])
        elif name == "pnack":
            way.nack(t, numbers)
        elif name == "giveup":
            way.giveups.append(t)
    return way


def test_repairedOnTheSecondTry():
    way = _leg([(0.00, "in", [10]), (0.01, "in", [12]),  # 11 missing from 0.01
                (0.10, "pnack", [11]), (0.40, "pnack", [11]),
                (0.60, "in", [11]),
                (0.70, "in", [13]), (0.71, "in", [15]), (0.80, "pnack", [14]),
                (1.00, "in", [14])])  # 14 repaired on the first try: an RTT sample
    verdict, details = way.story(11, 0.3, 0.8)
    assert verdict == "repaired on try 2"
    assert "our NACKs at +90, +390 ms after it (2 tries)" in details
    assert "came at +590 ms" in details
    assert way.estimates and abs(way.estimates[0][1] - 0.2) < 1e-9
    assert "2 repaired (1 on the first try, 1 on the second, 0 later; 50 % first)" in way.summary()


def test_neverCameAndGivenUp():
    way = _leg([(0.00, "in", [65535]), (0.01, "in", [1]),  # 0 missing, across the wrap
                (0.10, "pnack", [0]), (1.20, "giveup", [1])])
    assert way.story(0, 0.2, 1.5)[0] == "given up"
    assert way.story(5, 0.2, 1.5)[0] == "not missing"
