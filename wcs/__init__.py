"""wcs: a room server for real-time video."""

__version__ = "0.1.0"
