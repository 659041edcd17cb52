"""
The soak's meters, on their own: buckets, ffmpeg's -progress, the table, the
host probe and its rule, a recording's packets.
"""

import subprocess

from tests.rtmp import ffmpeg
from tests.soak import meters


def test_frames_fall_in_10_s_buckets_from_the_start():
    counter = meters.BucketCounter()
    counter.add(5, when=99.0)  # before the start: in the total only
    counter.start = 100.0
    counter.add(when=100.0)
    counter.add(3, when=109.9)
    counter.add(when=110.0)
    assert counter.counts == {0: 4, 1: 1}
    assert counter.total == 10
    assert counter.fps(0) == 0.4 and counter.fps(7) == 0.0


def test_ffmpeg_progress_counts_every_frame(tmp_path):
    ffmpeg.requireFFmpeg()
    proc = meters.FFmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=15", "-t", "2",
                          "-f", "null", "-"], tmp_path / "ffmpeg.log")
    proc.frames.start = 0.0  # every report falls in some bucket
    assert proc.proc.wait(30) == 0
    proc.reader.join(5)
    assert proc.frames.total == 30 == sum(proc.frames.counts.values())
    assert abs(proc.outTime - 2.0) < 0.1


def test_the_table_has_a_row_per_bucket(tmp_path):
    counter = meters.BucketCounter()
    counter.start = 0.0
    counter.add(150, when=1.0)
    lines = []
    table = meters.Table({"bob": counter}, tmp_path / "table.txt", echo=lines.append)
    table.row(0, 100 * 2**20, 0.5)
    assert lines[0].split() == ["t", "(s)", "bob", "RSS", "MB", "CPU", "%"]
    assert lines[1].split() == ["10", "15.0", "100.0", "5.0"]
    assert (tmp_path / "table.txt").read_text().splitlines() == lines


def probeFed(lines):
    """A HostProbe that is given lines, with no probe process behind it."""
    probe = meters.HostProbe.__new__(meters.HostProbe)
    probe.start, probe.late = 100.0, {}
    for line in lines:
        probe.add(line)
    return probe


def test_the_host_probe_counts_each_slot_s_lateness_per_bucket():
    # Bucket 0: 990 slots on time, 10 of them 150 ms late (1%: not over it);
    # bucket 1: one more late slot than that, and one of 1.2 s.
    lines = [f"{100 + i * 0.01:.4f} 0.3" for i in range(990)]
    lines += [f"{109.9 + i * 0.01:.4f} 150.4" for i in range(10)]
    lines += [f"{110 + i * 0.01:.4f} 0.4" for i in range(988)]
    lines += [f"{119.8 + i * 0.01:.4f} 150.0" for i in range(11)] + ["119.99 1200.0"]
    probe = probeFed(["99.5 500.0"] + lines)  # before the start: not counted
    assert probe.slots(0) == 1000 and probe.slots(1) == 1000
    assert probe.percentile(0, 0.01) == 0 and probe.longest(0) == 150
    assert not probe.starved(0)
    assert probe.percentile(1, 0.01) == 150 and probe.longest(1) == 1200
    assert probe.starved(1)
    assert probe.slots(2) == 0 and not probe.starved(2) and probe.longest(2) == 0


def test_the_probe_process_reports_every_10_ms_slot(tmp_path):
    probe = meters.HostProbe(1.5)
    probe.start = 0.0
    assert probe.proc.wait(30) == 0
    probe.reader.join(5)
    slots = sum(probe.slots(i) for i in probe.late)
    assert 140 <= slots <= 151  # every slot, late or not, from its start to its end
    probe.stop()


def test_low_buckets_go_to_the_host_only_where_it_starved():
    verdict = meters.judge({"rtmp-src": [3, 7, 8], "obs-src": [7, 9], "bob": [2]},
                           starved={7, 8, 9, 20}, buckets=100)
    assert verdict.server == {"rtmp-src": [3], "bob": [2]}
    assert verdict.host == {"rtmp-src": [7, 8], "obs-src": [7, 9]}
    assert verdict.hostBuckets == [7, 8, 9]
    assert verdict.tolerated == 5 and not verdict.hostStarved


def test_more_host_explained_buckets_than_tolerated_is_host_starved():
    low = {"rtmp-src": list(range(0, 12, 2)), "obs-src": [1]}
    verdict = meters.judge(low, starved=set(range(100)), buckets=100)
    assert verdict.server == {}
    assert len(verdict.hostBuckets) == 7 > verdict.tolerated == 5
    assert verdict.hostStarved
    # A short run tolerates one such bucket, not two.
    assert not meters.judge({"obs-src": [4]}, {4}, buckets=15).hostStarved
    assert meters.judge({"obs-src": [4, 5]}, {4, 5}, buckets=15).hostStarved


def test_spans_name_the_seconds_of_runs_of_buckets():
    assert meters.spans([132, 227, 228, 5]) == "50-60 s, 1320-1330 s, 2270-2290 s"
    assert meters.spans([]) == ""


def test_packets_finds_a_recording_s_gaps(tmp_path):
    ffmpeg.requireFFmpeg()
    out = tmp_path / "gap.ts"
    # 30 frames at 15 fps, the 16th and those after it 0.5 s later; with
    # B-frames, so decoding order is not presentation order.
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=15",
                    "-frames:v", "30", "-vf", "setpts='PTS+if(gte(N,15),0.5/TB,0)'",
                    "-c:v", "libx264", "-y", str(out)], check=True, timeout=60)
    video = meters.packets(out)["video"]
    assert video["packets"] == 30
    assert len(video["gaps"]) == 1
    at, gap = video["gaps"][0]
    assert abs(at - video["first"] - 14 / 15) < 0.01 and 0.45 < gap < 0.6
    assert abs(video["end"] - video["first"] - (30 / 15 + 0.5)) < 0.1
