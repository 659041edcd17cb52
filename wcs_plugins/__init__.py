"""
Drop-in transports.

Put a module here that defines an object providing
L{wcs.interfaces.ITransport}; the server finds it with
L{twisted.plugin.getPlugins} at start-up. Nothing in the room core changes.
"""
from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
