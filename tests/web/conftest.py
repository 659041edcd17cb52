import pytest_asyncio
import pytest

from tests.support.server import startServer
from tests.web.browser import FLAGS, requireChromium


@pytest.fixture(scope="module")
def webServer(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("web"), enable=("ws", "http", "https"),
                          settings={"ice_public_ip": "127.0.0.1", "media_port_from": "0",
                                    "media_port_to": "0"})
    yield running
    running.stop()


@pytest_asyncio.fixture
async def browser():
    executable = requireChromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()
