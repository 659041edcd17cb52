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
    Key("media_idle_read_interval", "int", 200,
        "ms between two reads of a publisher's sockets while nobody plays, records or "
        "relays its stream and no transport-wide feedback times its packets (one wake-up "
        "per interval instead of one per frame); 0: read every packet as it comes"),
    Key("media_video_codecs", "str", "H264,VP8",
        "video codecs accepted from publishers and offered to players, preferred first"),
    Key("media_audio_codecs", "str", "opus,PCMU,PCMA",
        "audio codecs accepted from publishers and offered to players, preferred first"),
    # Hostile offers and clients (wcs/media/limits.py, docs/security.md).
    Key("media_max_mlines", "int", 16,
        "m-lines of an offer given a transport; the ones past it are refused with port 0"),
    Key("media_max_offer_mlines", "int", 256, "m-lines an offer may have at all"),
    Key("media_max_transports", "int", 4,
        "transports (socket sets) per media session; m-lines past it are refused with port 0"),
    Key("media_max_codecs", "int", 256, "a=rtpmap (and a=fmtp) lines an offer may have"),
    Key("media_max_feedback", "int", 1024,
        "a=rtcp-fb entries an offer may have; a '*' line counts once per codec of its m-line"),
    Key("media_max_sdp_attributes", "int", 64,
        "lines of each of a=ssrc, a=ssrc-group, a=fingerprint, a=group an offer may have"),
    Key("media_max_sessions", "int", 1000, "media sessions (publish and play) of the server"),
    Key("media_max_sessions_per_address", "int", 200,
        "media sessions of the clients of one address"),
    Key("media_port_share_connection", "int", 10,
        "percent of the media port range one connection may hold (at least one transport)"),
    Key("media_port_share_address", "int", 50,
        "percent of the media port range the clients of one address may hold"),
)
