"""The soak's meters, on their own: buckets, ffmpeg's -progress, the table."""

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
