"""
The SDK's C{STREAM_STATUS_INFO} strings the media engine reports, verbatim.
"""

ICE_TIMEOUT = "Failed by ICE timeout"
ICE_ERROR = "Failed by ICE error"
DTLS_ERROR = "Failed by DTLS error"
RTP_ACTIVITY = "Failed by RTP activity"
NO_COMMON_CODECS = "No common codecs"
ERROR = "Failed by error"
