"""The console page: one static document (no build step, no external resources) with its script, and
the status page's stylesheet, whose house style it follows."""

from pathlib import Path

from aiohttp import web

from admin.console.middleware import ApiError

STATIC_DIR = Path(__file__).with_name("static")
STATUS_CSS = Path(__file__).resolve().parents[2] / "services" / "intake" / "static" / "status.css"
# Listed once; nothing else is served from disk.
FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file() and path.name != "index.html"}
FILES["status.css"] = STATUS_CSS


async def console_page(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["filename"]
    if name not in FILES:
        raise ApiError("not_found", f"no static file {name[:100]!r}", 404)
    return web.FileResponse(FILES[name], headers={"Cache-Control": "no-cache"})
