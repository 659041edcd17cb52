"""webrtc's freeze definition on frame times (tests/netlab/webrtcfreeze.py)."""

from tests.netlab.webrtcfreeze import freezes


def steady(count: int, start: float = 0.0, interval: float = 33.3) -> list[float]:
    return [start + i * interval for i in range(count)]


def test_a_stall_of_mean_plus_150_ms_is_a_freeze_and_a_shorter_one_is_not():
    times = steady(30)
    times += steady(30, times[-1] + 190)   # 190 ms >= 33.3 + 150
    times += steady(30, times[-1] + 170)   # 170 ms < 183.3
    assert [round(f) for f in freezes(times)] == [190]


def test_no_freeze_before_five_intervals_nor_at_a_steady_low_rate():
    assert freezes([0, 400, 800]) == []
    # 5 fps: 200 ms intervals are the mean, not a stall (3 x 200 = 600 needed).
    assert freezes(steady(40, interval=200) + [8000, 8700]) == [700]
