"""bench/fanout.py: where a packet's fan-out to its players waited, from a trace."""

import pytest

from bench.fanout import fanouts, waits

# time event stream numbers: a packet in, its sends (with the CPU µs), a collection.
TRACE = """\
10.0000 in 7 100
10.0001 fwd 1 500 100 7 1000
10.0002 fwd 2 600 100 7 1100
10.0100 fwd 3 700 100 7 1200
10.0200 in 7 101
10.0201 fwd 1 501 101 7 2000
10.0300 fwd 2 601 101 7 11000
10.0400 in 7 102
10.0401 fwd 1 502 102 7 12000
10.0440 gc 0 3900 12
10.0450 fwd 2 602 102 7 16000
10.0500 in 7 103
10.0501 nack 1 400
10.0502 fwd 1 503 103 7 17000
"""


def test_eachWaitHasItsReason(tmp_path):
    path = tmp_path / "t"
    path.write_text(TRACE)
    packets, collections = fanouts(str(path))
    assert collections == [(10.044, 0, 3900)]
    f = waits(packets, collections, 0.002)
    # The last packet's sends follow a NACK: not a plain fan-out.
    assert f["counted"] == 3
    assert f["toNth"][2] == [pytest.approx(0.01)]
    assert f["byPlace"] == {1: 2, 2: 1}
    assert f["reasons"] == {"not running (CPU time still)": 1,
                            "our work (CPU time grew)": 1, "a garbage collection": 1}
