# The aiortc peers here need loopback host candidates, as in tests/media.
from tests.media.conftest import loopbackOnly  # noqa: F401
