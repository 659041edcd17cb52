"""
The WebRTC media engine: a selective forwarding unit on aiortc's transports.

See C{docs/media.md}. Importing the package declares its settings; the
engine is L{wcs.media.engine.WebRTCEngine}. The package imports none of its
other modules, which import each other: importing one of them (C{rtp}, say)
does not pull in the engine, and there is no import cycle through here.
"""

from wcs.media import settings  # noqa: F401  (declares the settings keys)
