"""
RTMP without I/O: handshake, chunk stream, AMF0/AMF3 and FLV tag bodies.
L{wcs.rtmp.connection.ServerConnection} takes bytes and gives events;
L{wcs.transports.rtmp} is the thin Twisted adapter around it.
"""
