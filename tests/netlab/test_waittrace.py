"""bench/waittrace.py: what the publisher leg's reordering wait cost and bought, from a trace."""

import pytest

from bench.chromefreeze import WayIn
from bench.waittrace import figures


def test_lateRepairedAndNeverCame():
    way = WayIn()
    for t, name, numbers in [
            (0.000, "in", [10]), (0.010, "in", [12]),  # 11 missing from 0.010
            (0.040, "in", [11]),  # came by itself, 30 ms late
            (0.050, "in", [14]),  # 13 missing from 0.050
            (0.110, "pnack", [13]), (0.210, "pnack", [13]),
            (0.400, "in", [13]),  # repaired 350 ms after its gap, after 2 NACKs
            (0.410, "in", [17]),  # 15, 16 missing from 0.410
            (0.470, "pnack", [15]),
            (0.500, "in", [15]),  # the original after our NACK: a needless one
            (0.700, "in", [18])]:  # 16 never NACKed, never came
        if name == "in":
            way.packet(t, numbers[0])
        else:
            way.nack(t, numbers)
    f = figures(way, [0.02, 0.05])
    assert f["missing"] == 4 and f["late"] == [pytest.approx(0.03)]
    assert f["needless"] == 1 and f["repaired"] == [pytest.approx(0.35)]
    assert f["tries"][2] == 1 and f["entries"] == 3
    assert f["never"] == 1 and f["unasked"] == 1
    assert f["waited"] == [pytest.approx(0.06), pytest.approx(0.06)]
    # At a 20 ms wait both late packets (30 and 90 ms) would have been
    # NACKed; at 50 ms only the one 90 ms late; the repair 40 and 10 ms sooner.
    extra, saved, _ = f["fixed"][0.02]
    assert extra == 2 and saved == [pytest.approx(0.04)]
    extra, saved, _ = f["fixed"][0.05]
    assert extra == 1 and saved == [pytest.approx(0.01)]
