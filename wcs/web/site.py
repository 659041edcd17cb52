"""
Resources of the web server.
"""

from __future__ import annotations

import html
from pathlib import Path

from twisted.python.filepath import FilePath, InsecurePath
from twisted.web import resource, static

from dataclasses import dataclass


@dataclass(frozen=True)
class Demo:
    path: str
    title: str
    about: str
    maxParticipants: int
    screenShare: bool = False
    record: bool = False

    def render(self, template: str) -> bytes:
        return template.format(
            title=html.escape(self.title), maxParticipants=self.maxParticipants,
            screenShare=str(self.screenShare).lower(),
            screenClass="" if self.screenShare else "hidden",
            recordClass="" if self.record else "hidden",
        ).encode("utf-8")


DEMOS = [
    Demo("conference", "Conference", "Several participants: video tiles, chat, recording", 8,
         record=True),
    Demo("video-chat", "Two Way Video Chat", "Two participants, video and chat", 1),
    Demo("video-chat-and-screen-sharing", "Video Chat and Screen Sharing",
         "Camera, screen share and chat", 1, screenShare=True),
]
DEMO_ROOT = "/client2/examples/demo/streaming"
# Our pages are made from one template; the SDK's own example pages keep
# their file names (conference/conference.html, ...) in the same folders.
TEMPLATE = ("examples", "demo", "streaming", "wcs", "room.html")


class Layered(resource.Resource):
    """
    Files from the first of several folders that has them: our own pages
    over the SDK's package. No directory listings; a folder serves its
    C{index.html}; nothing outside the folders.
    """

    isLeaf = True

    def __init__(self, *folders: Path | None):
        super().__init__()
        self.folders = [FilePath(str(f)) for f in folders if f is not None]
        self.demos = {("examples", "demo", "streaming", demo.path, index): demo
                      for demo in DEMOS for index in ("", "index.html")}

    def render_GET(self, request):
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        if any(s in ("..", ".") or "/" in s or "\\" in s or "\0" in s for s in segments):
            return resource.ForbiddenResource().render(request)
        if not _public(segments):
            return resource.NoResource("No such file.").render(request)
        demo = self.demos.get(tuple(segments))
        if demo is not None:
            template = self.folders[0].descendant(TEMPLATE).getContent().decode("utf-8")
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return demo.render(template)
        for folder in self.folders:
            target = folder
            try:
                for segment in segments:
                    if segment:
                        target = target.child(segment)
            except InsecurePath:
                return resource.ForbiddenResource().render(request)
            if target.isdir():
                if segments and segments[-1] != "":
                    # A folder without its trailing slash: relative links
                    # in its index would break.
                    query = request.uri.partition(b"?")[2]
                    request.redirect(request.path + b"/" + (b"?" + query if query else b""))
                    return b""
                target = target.child("index.html")
            if target.isfile():
                return static.File(target.path).render(request)
        return resource.NoResource("No such file.").render(request)

    render_HEAD = render_GET


def _public(segments: list[str]) -> bool:
    """
    What /client2/ serves of the SDK's package: its built scripts at the top
    and the example pages with their dependencies, not its sources or build
    files; and not our page template, which only makes sense filled in.
    """
    if not segments or segments[0] == "":
        return False
    if len(segments) == 1:
        return segments[0].startswith("flashphoner") and segments[0].endswith(".js")
    return segments[0] == "examples" and tuple(segments) != TEMPLATE


class Index(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        items = "".join(
            f'<li><a href="{DEMO_ROOT}/{d.path}/">{html.escape(d.title)}</a> — '
            f"{html.escape(d.about)} (<a href=\"{DEMO_ROOT}/{d.path}/{d.path}.html\">the SDK's "
            f"own example</a>)</li>" for d in DEMOS)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            "<title>wcs demos</title></head><body><h1>wcs demos</h1><ul>"
            f"{items}</ul><p>Pages written for Web Call Server work at their usual paths "
            f"under <code>/client2/</code>.</p></body></html>"
        ).encode("utf-8")


class Root(resource.Resource):
    def __init__(self, client2: resource.Resource, records: resource.Resource | None = None):
        super().__init__()
        self.putChild(b"client2", client2)
        if records is not None:
            # Listed and downloadable, with ranges, behind wcs.access.records.
            self.putChild(b"records", records)
        self.index = Index()

    def getChild(self, name, request):
        if name == b"":
            return self.index
        return resource.NoResource("No such page.")


def makeRoot(staticDir: Path, sdkDir: Path | None, settings, busy=None) -> resource.Resource:
    from wcs.access.records import Records

    folder = settings.recordDirectory()
    folder.mkdir(parents=True, exist_ok=True)
    records = Records(folder, settings, **({"busy": busy} if busy else {}))
    return Root(Layered(staticDir / "client2", sdkDir), records)
