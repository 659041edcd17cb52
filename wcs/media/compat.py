"""
The check behind L{wcs.media.internals}: every private piece of aiortc and
aioice the engine relies on (L{NEEDS}), looked up by name so that a missing
one is named in one line (L{IncompatibleMediaLibrary}) instead of failing
in a traceback, or not at all. Nothing here imports the libraries with an
import statement: L{wcs.media.internals} stays the only module that does.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from wcs.errors import IncompatibleLibrary

TESTED = "aiortc 1.16.x and aioice 0.13.x"


class IncompatibleMediaLibrary(IncompatibleLibrary):
    """An aiortc/aioice piece wcs.media relies on is missing or changed."""


@dataclass(frozen=True)
class Need:
    """
    One piece: C{name} in C{module} (dotted; a C{Cls()} step stands for a
    fresh instance, to find attributes set in C{__init__}). C{params}: the
    parameter names after C{self}; C{exact} when aiortc calls our override
    (its arguments must match ours), else a prefix with the rest optional.
    C{isAsync}: whether the library awaits it (or we do). C{calls}: what
    its source must still contain, for hooks the library calls on us.
    """

    module: str
    name: str
    params: tuple[str, ...] | None = None
    exact: bool = False
    isAsync: bool | None = None
    calls: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


_DTLS = "aiortc.rtcdtlstransport"
_ICE = "aioice.ice"

NEEDS: tuple[Need, ...] = (
    # DTLS: our receive routing, state and synchronous SRTP send.
    Need(_DTLS, "RTCDtlsTransport._handle_rtp_data", ("data", "arrival_time_ms"), True, True),
    Need(_DTLS, "RTCDtlsTransport._handle_rtcp_data", ("data",), True, True),
    Need(_DTLS, "RTCDtlsTransport._set_state", ("state",), True, False),
    Need(_DTLS, "RTCDtlsTransport._set_role", ("role",), True, False),
    Need(_DTLS, "RTCDtlsTransport.start", ("remoteParameters",), isAsync=True),
    Need(_DTLS, "RTCDtlsTransport.stop", (), isAsync=True),
    Need(_DTLS, "RTCDtlsTransport()._state"),
    Need(_DTLS, "RTCDtlsTransport()._tx_srtp"),
    Need(_DTLS, "RTCDtlsTransport()._rx_srtp"),
    Need(_DTLS, "State.CONNECTED"),
    Need(_DTLS, "State.CLOSED"),
    Need(_DTLS, "State.FAILED"),
    Need(_DTLS, "RTCCertificate.generateCertificate", ()),
    Need(_DTLS, "RTCDtlsParameters"),
    # ICE: our sockets, consent, STUN requests, the selected pair.
    Need(_ICE, "Connection.get_component_candidates", ("component", "addresses", "timeout"),
         True, True),
    Need(_ICE, "Connection.query_consent", (), True, True),
    Need(_ICE, "Connection.build_request", ("pair", "nominate")),
    Need(_ICE, "Connection()._query_consent_task"),
    Need(_ICE, "StunProtocol.send_stun", ("message", "addr")),
    Need("aioice.stun", "Message.add_message_integrity", ("key",)),
    Need("aioice.stun", "Class.RESPONSE"),
    Need(_ICE, "Connection.request_received", ("message", "addr", "protocol"), True, False),
    Need(_ICE, "Connection.connect", (), isAsync=True),
    Need(_ICE, "Connection.close", (), isAsync=True),
    Need(_ICE, "Connection.recv", (), isAsync=True),
    Need(_ICE, "Connection.send", ("data",), isAsync=True),
    Need(_ICE, "Connection()._protocols"),
    Need(_ICE, "Connection()._nominated"),
    Need(_ICE, "StunProtocol", ("receiver",)),
    Need(_ICE, "StunProtocol.datagram_received", ("data", "addr"), True,
         calls=("receiver.request_received(", "receiver.data_received(",
                "self.transactions[message.transaction_id]", ".response_received(")),
    Need(_ICE, "get_host_addresses", ("use_ipv4", "use_ipv6")),
    Need("aioice.candidate", "candidate_foundation",
         ("candidate_type", "candidate_transport", "base_address")),
    Need("aioice.candidate", "candidate_priority", ("candidate_component", "candidate_type")),
    Need("aioice.stun", "Message.check_message_integrity", ("key",)),
    Need("aioice", "Candidate"),
    # What RTCDtlsTransport asks of its ICE transport (our IceTransport).
    Need(_DTLS, "RTCDtlsTransport._recv_next",
         calls=("transport._recv()", "_handle_rtp_data(", "_handle_rtcp_data(")),
    Need(_DTLS, "RTCDtlsTransport._write_ssl", calls=("transport._send(",)),
    Need("aiortc.rtcicetransport", "RTCIceTransport.role"),
    Need("aiortc.rtcicetransport", "RTCIceParameters"),
    # Frames for sinks: aiortc's jitter buffer and depayloaders.
    Need("aiortc.jitterbuffer", "JitterBuffer", ("capacity", "prefetch", "is_video")),
    Need("aiortc.jitterbuffer", "JitterBuffer.add", ("packet",)),
    Need("aiortc.jitterbuffer", "JitterBuffer._remove_frame", calls=("._data",)),
    Need("aiortc.jitterbuffer", "JitterFrame", ("data", "timestamp")),
    # What is still held at a stream's end (wcs.media.source.heldFrames).
    Need("aiortc.jitterbuffer", "JitterBuffer()._origin"),
    Need("aiortc.jitterbuffer", "JitterBuffer()._packets"),
    Need("aiortc.jitterbuffer", "JitterBuffer.remove", ("count",)),
    Need("aiortc.codecs", "h264_depayload", ("payload",)),
    Need("aiortc.codecs", "vp8_depayload", ("payload",)),
    Need("aiortc.codecs", "get_decoder", ("codec",)),
    Need("aiortc.codecs", "get_encoder", ("codec",)),
    Need("aiortc.codecs.base", "Encoder.encode", ("frame", "force_keyframe")),
    Need("aiortc.codecs.base", "Encoder.pack", ("packet",)),
    Need("aiortc.codecs.base", "Decoder.decode", ("encoded_frame",)),
    # SDP.
    Need("aiortc.rtcicetransport", "candidate_from_aioice", ("x",)),
    Need("aiortc.rtcpeerconnection", "and_direction", ("a", "b")),
    Need("aiortc.rtcpeerconnection", "reverse_direction", ("direction",)),
    Need("aiortc.sdp", "SessionDescription.parse", ("sdp",)),
    Need("aiortc.sdp", "parse_h264_profile_level_id", ("profile_str",)),
    Need("aiortc.rtp", "RtpPacket", ("payload_type", "marker", "sequence_number", "timestamp")),
    Need("aiortc.rtp", "RtcpPacket.parse", ("data",)),
)

# Arguments for the C{Cls()} steps: instances made only to look at them.
_PROBES = {
    "RTCDtlsTransport": lambda cls: cls(None, [None]),
    "Connection": lambda cls: cls(ice_controlling=False),
    "JitterBuffer": lambda cls: cls(capacity=16),
}


def _resolve(need: Need, importModule=importlib.import_module):
    obj = importModule(need.module)
    for step in need.name.split("."):
        if step.endswith("()"):
            cls = getattr(obj, step[:-2])
            obj = _PROBES[step[:-2]](cls)
        else:
            obj = getattr(obj, step)
    return obj


def _signatureProblem(need: Need, obj) -> str | None:
    if need.calls:
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = None  # installed without sources: nothing more to see
        for call in need.calls if source is not None else ():
            if call not in source:
                return f"no longer calls {call.rstrip('(')}"
    if need.isAsync is not None and inspect.iscoroutinefunction(obj) != need.isAsync:
        return "is no longer a coroutine" if need.isAsync else "became a coroutine"
    if need.params is None:
        return None
    try:
        parameters = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None  # a builtin without a signature: existence is all we can check
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    names = tuple(p.name for p in parameters
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    expected = need.params
    rest = parameters[len(expected):]
    if names[:len(expected)] != expected or (need.exact and names != expected) or \
            any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                for p in rest):
        return f"has signature ({', '.join(names)}), expected ({', '.join(expected)})"
    return None


def problems(needs=NEEDS, importModule=importlib.import_module) -> list[str]:
    """What is missing or changed, one phrase per piece; empty when all is well."""
    found = []
    for need in needs:
        try:
            obj = _resolve(need, importModule)
        except (ImportError, AttributeError, KeyError):
            found.append(f"{need} is missing")
            continue
        problem = _signatureProblem(need, obj)
        if problem is not None:
            found.append(f"{need} {problem}")
    return found


def _installed() -> str:
    versions = []
    for name in ("aiortc", "aioice"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ", ".join(versions)


def verify(needs=NEEDS, importModule=importlib.import_module) -> None:
    """Raise L{IncompatibleMediaLibrary} with one line if a piece is missing."""
    found = problems(needs, importModule)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise IncompatibleMediaLibrary(
            f"wcs.media cannot use the installed {_installed()}: {found[0]}{more}; "
            f"it is tested with {TESTED}")
