"""
A client's RTMP byte stream through the sans-I/O server connection:
handshake, chunk stream, protocol control, AMF commands and data. Each
command is answered the way the server answers it, so that replies are
made from what the client sent.
"""

from wcs.rtmp.connection import Command, ServerConnection
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)
MAX_LEN = 16384


def fuzz(data: bytes) -> None:
    conn = ServerConnection(maxMessageSize=1 << 16, maxChunkSize=1 << 16)
    # Two reads, cut where the input's length says: state kept across reads.
    cut = len(data) * 7 // 16
    for piece in (data[:cut], data[cut:]):
        for event in conn.receive(piece):
            if isinstance(event, Command):
                if event.name == "connect":
                    conn.acceptConnect(event.transactionId)
                else:
                    conn.result(event.transactionId, None, 1.0)
                    conn.onStatus(event.streamId, "NetStream.Publish.Start", event.name)
        conn.dataToSend()
