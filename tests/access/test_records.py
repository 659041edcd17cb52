"""
/records/ behind wcs.access.records, on the real server: anonymous listing
and download refused, the admin key and a signed link accepted, an expired
or forged link refused, files being written neither listed nor served.
"""

import asyncio
import http.client
import time

from tests.recording.test_recording import publishRecorded
from tests.support.rooms import MEDIA, status
from wcs.access.records import signature

KEY = "admin-key-for-the-test"


def get(server, path, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


async def test_records_need_the_key_or_a_signed_link(serverFactory):
    server = serverFactory(settings=dict(MEDIA, admin_api_key=KEY), enable=("ws", "http"))
    admin = {"Authorization": f"Bearer {KEY}"}
    alice, publisher, request, publishing = await publishRecorded(server, 2)
    name, link = publishing["recordName"], publishing["recordUrl"]
    assert link.startswith(f"/records/{name}?expires=")

    # Being written: the key lists nothing of it, the link serves nothing yet.
    assert name.encode() not in get(server, "/records/", admin)[1]
    assert get(server, link)[0] == 404
    assert get(server, f"/records/{name[:-4]}.ts", admin)[0] == 404

    await alice.send("unPublishStream", {"mediaSessionId": request["mediaSessionId"],
                                         "name": request["name"]})
    await status(alice, request["mediaSessionId"], "UNPUBLISHED")
    path = server.workdir / "state" / "records" / name
    deadline = time.monotonic() + 15
    # Listed once the recorder has finished the file (remuxed and renamed).
    while name.encode() not in get(server, "/records/", admin)[1]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert path.exists()

    assert get(server, "/records/")[0] == 401
    assert get(server, f"/records/{name}")[0] == 401
    assert get(server, "/records/", {"Authorization": "Bearer wrong"})[0] == 401
    code, listing = get(server, "/records/", admin)
    assert code == 200 and name.encode() in listing
    code, body = get(server, f"/records/{name}", admin)
    assert code == 200 and body == path.read_bytes()
    code, body = get(server, link)
    assert code == 200 and body == path.read_bytes()
    # A signed link opens its file only, not the listing.
    assert get(server, "/records/" + link.partition("?")[1] + link.partition("?")[2])[0] == 401

    secret = (server.workdir / "state" / "records_url_secret").read_bytes().strip()
    past = int(time.time()) - 10
    expired = f"/records/{name}?expires={past}&signature={signature(secret, name, past)}"
    assert get(server, expired)[0] == 401
    future = int(time.time()) + 600
    assert get(server, f"/records/{name}?expires={future}&signature={'0' * 64}")[0] == 401
    assert get(server, f"/records/{name}?expires={future}&signature="
                       f"{signature(secret, name, future)}")[0] == 200
    await publisher.close()
    await alice.close()
