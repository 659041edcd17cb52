"""
Hand-made offers, shaped as a hostile client would send them: as many
m-lines or attributes as fit in one signalling message.
"""

from __future__ import annotations

FINGERPRINT = ":".join(["AB"] * 32)


def craftedOffer(mlines: int, bundle: bool = False, direction: str = "sendonly",
                 kinds: tuple[str, ...] = ("video",), session: str = "",
                 media: str = "") -> str:
    """
    An offer of C{mlines} m-lines (cycling through C{kinds}), each with an
    H.264 or Opus codec, ICE credentials and a fingerprint; one BUNDLE group
    of them all when C{bundle}. C{session} and C{media} are extra lines
    (CRLF-terminated) for the session part and for every m-line.
    """
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=ice-ufrag:hostile", "a=ice-pwd:hostilehostilehostile12",
             f"a=fingerprint:sha-256 {FINGERPRINT}", "a=setup:actpass"]
    if bundle:
        lines.append("a=group:BUNDLE " + " ".join(str(i) for i in range(mlines)))
    text = "\r\n".join(lines) + "\r\n" + session
    for index in range(mlines):
        kind = kinds[index % len(kinds)]
        codec = ("102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f"
                 if kind == "video" else "111 opus/48000/2")
        pt = codec.split(" ", 1)[0]
        text += (f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\n"
                 f"a=mid:{index}\r\na={direction}\r\na=rtcp-mux\r\na=rtpmap:{codec}\r\n" + media)
    return text


def answeredPorts(answer: str) -> list[int]:
    """The port of each m-line of an answer."""
    return [int(line.split()[1]) for line in answer.splitlines() if line.startswith("m=")]
