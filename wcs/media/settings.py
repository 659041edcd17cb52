"""
Settings of the WebRTC media engine, declared when the package is imported.
"""

from wcs.config import Key, declare

declare(
    Key("media_port_from", "port", 31000,
        "first UDP port for WebRTC media; 0 with media_port_to 0: any free port"),
    Key("media_port_to", "port", 32000, "last UDP port for WebRTC media"),
    Key("ice_public_ip", "str", "",
        "address announced in ICE candidates; empty: every interface address"),
    Key("ice_timeout", "int", 15000,
        "ms to wait for the peer's ICE and DTLS handshake before 'Failed by ICE timeout'"),
    Key("media_inactivity_timeout", "int", 10000,
        "ms without RTP from a publisher before 'Failed by RTP activity'; 0: never"),
    Key("media_player_timeout", "int", 10000,
        "ms without RTCP or STUN from a player before 'Failed by ICE keep alive'; 0: never"),
    Key("media_video_codecs", "str", "H264,VP8",
        "video codecs accepted from publishers and offered to players, preferred first"),
    Key("media_audio_codecs", "str", "opus,PCMU,PCMA",
        "audio codecs accepted from publishers and offered to players, preferred first"),
)
