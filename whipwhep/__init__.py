"""
WHIP (RFC 9725, WebRTC-HTTP ingestion) and WHEP (WebRTC-HTTP egress): a
transport written only against L{wcs.interfaces}, served on the web
server's ports through L{wcs.interfaces.IWebResource}. The plugin module that
the server finds is C{wcs_plugins/whip.py}; docs/transports.md walks through it.

Each HTTP session is one core client session (C{IRoomServer.openSession}),
driven with the SDK's messages (C{connection}, C{sendData} join,
C{publishStream} or C{playStream}) as a browser would; the server's replies
arrive on our L{ISignallingChannel} and become the HTTP answer.
"""
