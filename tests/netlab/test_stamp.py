"""
The stamp survives lossy compression by both codecs at a low bitrate, and a
picture without one is not read as one.
"""

import fractions

import av
import numpy as np
import pytest

from tests.netlab import stamp
from tests.netlab.media import StampedVideo


@pytest.mark.parametrize("codec, decoderName", [("libx264", "h264"), ("libvpx", "vp8")])
async def test_stamps_read_back_after_encoding_and_decoding(codec, decoderName):
    track = StampedVideo(320, 240, loop=10)
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.bit_rate = 300_000
    encoder.time_base = fractions.Fraction(1, 30)
    decoder = av.CodecContext.create(decoderName, "r")
    sent, read = [], []
    for _ in range(20):
        frame = await track.recv()
        sent.append(stamp.read(frame.to_ndarray(format="yuv420p")[:240]))
        for packet in encoder.encode(frame):
            for picture in decoder.decode(packet):
                read.append(stamp.read(picture.to_ndarray(format="yuv420p")[:240]))
    for packet in list(encoder.encode(None)) + [None]:  # flush both
        for picture in decoder.decode(packet):
            read.append(stamp.read(picture.to_ndarray(format="yuv420p")[:240]))
    assert [s[0] for s in sent] == list(range(20))
    assert read == sent


def test_a_picture_without_a_stamp_is_not_read_as_one():
    assert stamp.read(np.full((240, 320), 16, dtype=np.uint8)) is None
    assert stamp.read(np.full((240, 320), 235, dtype=np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)
    assert stamp.read(noise) is None


def test_delay_wraps_with_the_clock():
    assert stamp.delayMs(stamp.TIME_MODULO - 5, 10) == 15
