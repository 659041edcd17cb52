"""
WHIP and WHEP on the web server's ports (the package C{whipwhep}): what
L{twisted.plugin.getPlugins} finds for L{wcs.interfaces.IWebResource}.
"""

from whipwhep.resource import Plugin, WHEPEndpoint, WHIPEndpoint

whip = Plugin("whip", WHIPEndpoint)
whep = Plugin("whep", WHEPEndpoint)
