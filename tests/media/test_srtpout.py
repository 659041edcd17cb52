"""wcs.media.srtpout: the hot path's protect gives pylibsrtp's bytes."""

import pylibsrtp
import pytest

from wcs.media import rtp
from wcs.media.srtpout import Protector, Unprotector

KEY = bytes(range(30))  # 16-byte master key + 14-byte salt


def _session(direction=pylibsrtp.Policy.SSRC_ANY_OUTBOUND) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=KEY, ssrc_type=direction,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return pylibsrtp.Session(policy)


def test_sameBytesAsSessionProtect():
    """
    Header and payload given apart come out as pylibsrtp's protect of the
    joined packet, packet after packet (the rollover state advances alike),
    and the payload given is left as it was.
    """
    reference, protector = _session(), Protector(_session())
    for seq in (65533, 65534, 65535, 0, 1):  # across the wrap: ROC 0 -> 1
        header = rtp.HEADER.pack(0x80, 96, seq, 1000 + seq, 0x1234)
        payload = bytes((seq + i) & 0xFF for i in range(1100))
        assert protector.protect(header, payload) == reference.protect(header + payload)
        assert payload == bytes((seq + i) & 0xFF for i in range(1100))


def test_tooLongAndReplay():
    """pylibsrtp's errors: a packet too long for its buffer, a replay."""
    protector = Protector(_session())
    header = rtp.HEADER.pack(0x80, 96, 7, 1, 0x1234)
    with pytest.raises(ValueError):
        protector.protect(header, bytes(1500))
    protector.protect(header, b"x" * 100)
    with pytest.raises(pylibsrtp.Error):
        protector.protect(header, b"x" * 100)  # the same sequence number again


def test_unprotectGivesSessionUnprotectsBytes():
    """
    RTP and RTCP come back as pylibsrtp's unprotect gives them; a replayed,
    forged or too long packet is None, and the next good one still passes.
    """
    sender = _session()
    reference = _session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    unprotector = Unprotector(_session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    for seq in (65534, 65535, 0, 1):
        packet = rtp.HEADER.pack(0x80, 96, seq, 90 * seq, 0x1234) + bytes(range(200))
        protected = sender.protect(packet)
        assert unprotector.unprotect(protected) == reference.unprotect(protected) == packet
        assert unprotector.unprotect(protected) is None  # a replay
    report = bytes.fromhex("81c90007") + (0x1234).to_bytes(4, "big") + bytes(24)
    protected = sender.protect_rtcp(report)
    assert unprotector.unprotectRtcp(protected) == reference.unprotect_rtcp(protected) == report
    forged = sender.protect(rtp.HEADER.pack(0x80, 96, 2, 180, 0x1234) + bytes(50))
    assert unprotector.unprotect(forged[:-1] + bytes([forged[-1] ^ 1])) is None
    assert unprotector.unprotect(bytes(5000)) is None
    assert unprotector.unprotect(forged) == rtp.HEADER.pack(0x80, 96, 2, 180, 0x1234) + bytes(50)
