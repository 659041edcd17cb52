"""The properties file (conf/flashphoner.properties), every setting declared."""

from wcs.config import ConfigError, parseProperties
from wcs.tap import _loadTransportSettings

EXPECTED = (ConfigError,)

# As twistd does before reading the file: each module declares its keys.
_loadTransportSettings()


def fuzz(data: bytes) -> None:
    parseProperties(data.decode("utf-8", "replace").splitlines(), "fuzz.properties")
