"""
The SDK's C{STREAM_STATUS_INFO} strings the media engine reports, verbatim.
"""

ICE_TIMEOUT = "Failed by ICE timeout"
ICE_ERROR = "Failed by ICE error"
KEEP_ALIVE = "Failed by ICE keep alive"  # the SDK: "ICE refresh failed on session"
DTLS_ERROR = "Failed by DTLS error"
RTP_ACTIVITY = "Failed by RTP activity"
NO_COMMON_CODECS = "No common codecs"
ERROR = "Failed by error"
