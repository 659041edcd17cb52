"""The one error the RTMP wire layer raises."""


class RTMPProtocolError(Exception):
    """Bytes that break the RTMP, AMF0 or AMF3 rules; the connection is closed."""
