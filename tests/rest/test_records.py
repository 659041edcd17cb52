"""
L{wcs.rest.api.Recordings} on a records directory whose files come and go
under it, without a server.
"""

from pathlib import Path

from wcs.rest.api import Records, Recordings


class ListingAdmin:
    """An admin whose recordings are the paths it was given, existing or not."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def recordings(self) -> list[Path]:
        return list(self.paths)


def test_fileGoneAfterListingIsLeftOut(tmp_path):
    """
    A file deleted between the listing and its C{stat} (a remux's TS) is left
    out, not a 500 for the whole list.
    """
    kept = tmp_path / "stream-a.mp4"
    kept.write_bytes(b"x" * 10)
    gone = tmp_path / "stream-b.ts"
    admin = ListingAdmin([kept, gone])
    found = Recordings(admin, Records(admin)).findAll({})
    assert [(r["fileName"], r["size"], r["url"]) for r in found] == \
        [("stream-a.mp4", 10, "/records/stream-a.mp4")]
