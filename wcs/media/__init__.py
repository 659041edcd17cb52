"""
The WebRTC media engine: a selective forwarding unit on aiortc's transports.

See C{docs/media.md}. Importing the package declares its settings.
"""

from wcs.media import settings  # noqa: F401  (declares the settings keys)
from wcs.media.engine import WebRTCEngine

__all__ = ["WebRTCEngine"]
