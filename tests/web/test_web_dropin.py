"""A drop-in IWebResource from a `wcs_plugins/` folder on the path: its path is served, its key known."""

import asyncio
import os
import textwrap

from tests.support import whip
from tests.support.server import startServer

DROPIN = textwrap.dedent('''
    from twisted.web.resource import Resource
    from zope.interface import implementer
    from wcs.config import Key, declare
    from wcs.interfaces import IWebResource

    declare(Key("hello_text", "str", "hello", "what /hello/ says"))

    class Hello(Resource):
        isLeaf = True
        def __init__(self, text):
            super().__init__()
            self.text = text
        def render_GET(self, request):
            return self.text.encode()
        def render_POST(self, request):
            return b"got %d bytes" % len(request.content.read())

    @implementer(IWebResource)
    class HelloPlugin:
        name = path = "hello"
        maxBodySize = 100
        def makeResource(self, server, settings):
            return Hello(settings.hello_text)

    @implementer(IWebResource)
    class Squatter:
        name = "squatter"
        path = "client2"
        maxBodySize = 100
        def makeResource(self, server, settings):
            raise AssertionError("a taken path is not mounted")

    hello = HelloPlugin()
    squatter = Squatter()
''')


async def test_dropin_web_resource_is_mounted(tmp_path):
    extra = tmp_path / "extra"
    (extra / "wcs_plugins").mkdir(parents=True)
    (extra / "wcs_plugins" / "hello_dropin.py").write_text(DROPIN)
    env = dict(os.environ, PYTHONPATH=str(extra))
    server = await asyncio.to_thread(startServer, tmp_path / "run", {"hello_text": "bonjour"},
                                     ("http",), (), env)
    try:
        assert (await whip.request(server, "GET", "/hello/")).text == "bonjour"
        assert (await whip.request(server, "POST", "/hello/", b"x" * 100)).text == "got 100 bytes"
        assert (await whip.request(server, "POST", "/hello/", b"x" * 101)).status == 413
        # The built-in page keeps its path; the operator is told why the
        # drop-in is not mounted (that warning is the behaviour).
        page = await whip.request(server, "GET", "/client2/flashphoner-room-api.js")
        assert page.status == 200 and "squatter" not in page.text
        assert "web resource squatter: path /client2/ is taken" in server.log()
        # The other drop-in, WHIP, answers at its path (a CORS preflight).
        assert (await whip.request(server, "OPTIONS", "/whip/room/login")).status == 204
    finally:
        server.stop()
