# The `twistd wcs` subcommand. Kept to one object: twistd imports every module
# in twisted/plugins to list subcommands, and wcs.tap (which installs the
# asyncio reactor) must only be imported when `wcs` is actually chosen.
from twisted.application.service import ServiceMaker

WCS = ServiceMaker(
    "wcs",
    "wcs.tap",
    "Room server for real-time video (WebRTC, RTMP and Flash clients)",
    "wcs",
)
