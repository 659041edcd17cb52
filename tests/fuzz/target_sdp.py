"""
An SDP offer as publishStream/playStream carry it: parsed, planned as a
publisher's and as a player's offer, answered (buildAnswer, with ICE agents
that have a host candidate but no socket), and the answer must parse again.
"""

from aioice import Candidate
from aiortc import sdp
from aiortc.rtcdtlstransport import RTCCertificate

from wcs.errors import StreamError
from wcs.media import negotiate
from wcs.media.ice import IceConnection, PortRange

EXPECTED = (StreamError,)
MAX_LEN = 8192
PREFERENCES = {"video": negotiate.preferences("H264,VP8", "video"),
               "audio": negotiate.preferences("opus,PCMU,PCMA", "audio")}
SOURCE_TRACKS = {"video": "VP8", "audio": "opus"}
FINGERPRINTS = RTCCertificate.generateCertificate().getFingerprints()
PORTS = PortRange(0, 0)


def iceAgent() -> IceConnection:
    """An agent as gather_candidates leaves it, minus the socket."""
    agent = IceConnection(PORTS, [("127.0.0.1", "127.0.0.1")])
    agent._local_candidates.append(Candidate(
        foundation="1", component=1, transport="udp", priority=2130706431,
        host="127.0.0.1", port=9, type="host"))
    return agent


def answer(offer, sections) -> None:
    transports = {}
    for group in negotiate.transportGroups(offer, sections):
        agent = iceAgent()
        for section in group:
            transports[id(section)] = agent
    text = negotiate.buildAnswer(offer, sections, transports, FINGERPRINTS,
                                 negotiate.dtlsRole(offer), "cname", "stream")
    sdp.SessionDescription.parse(text)  # what we send must parse


def fuzz(data: bytes) -> None:
    offer = negotiate.parseOffer(data.decode("utf-8", "replace"))
    for plan in (lambda: negotiate.planPublish(offer, PREFERENCES),
                 lambda: negotiate.planPlay(offer, SOURCE_TRACKS, PREFERENCES)):
        try:
            sections = plan()
        except StreamError:
            continue
        answer(offer, sections)
