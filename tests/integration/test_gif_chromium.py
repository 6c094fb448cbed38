"""A rendered GIF in a real browser: headless Chromium decodes every frame, at the asked size, looping.

The page is served from a local aiohttp server (127.0.0.1 is a secure context, which WebCodecs needs).
A screenshot of the page goes to test-artifacts/.
"""

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright

from services.renderer.gif import render_gif
from shared.render_settings import RenderSettings
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS

PAGE = """<!doctype html>
<html><body style="margin: 0; background: #111">
<img id="nft" src="/nft.gif" alt="rendered NFT">
</body></html>"""

# WebCodecs' ImageDecoder reads the GIF the way Chromium does for <img>, and says how many frames it holds.
DECODE = """async () => {
  const img = document.getElementById("nft");
  await img.decode();
  const data = await (await fetch("/nft.gif")).arrayBuffer();
  const decoder = new ImageDecoder({data, type: "image/gif"});
  try {
    await decoder.tracks.ready;
    await decoder.completed;
    const track = decoder.tracks.selectedTrack;
    const second = (await decoder.decode({frameIndex: 1})).image;
    const result = {
      frameCount: track.frameCount,
      animated: track.animated,
      repetitionCount: track.repetitionCount,
      width: second.displayWidth,
      height: second.displayHeight,
      durationMicros: second.duration,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    };
    second.close();
    return result;
  } finally {
    decoder.close();
  }
}"""


@asynccontextmanager
async def serve(gif: bytes) -> AsyncIterator[str]:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=gif, content_type="image/gif")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/nft.gif", image)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound before the server starts, so no other process can take the port
        site = web.SockSite(runner, sock)
        await site.start()
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
        finally:
            await runner.cleanup()


async def test_chromium_decodes_every_frame_at_the_asked_size(chromium: Path) -> None:
    settings = RenderSettings(
        name="Browser check",
        palette="sunset",
        shape="star",
        seed=2024,
        frames=24,
        size=320,
        frame_duration_ms=50,
    )
    gif = render_gif(settings)

    async with serve(gif) as url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 320, "height": 320})
            await page.goto(url)
            decoded = await page.evaluate(DECODE)
            await page.screenshot(path=ARTIFACTS / "nft-gif-chromium.png")
        finally:
            await browser.close()

    assert decoded["frameCount"] == 24
    assert decoded["animated"] is True
    assert decoded["repetitionCount"] == float("inf")  # loop=0: forever
    assert (decoded["width"], decoded["height"]) == (320, 320)
    assert decoded["durationMicros"] == 50_000
    assert (decoded["naturalWidth"], decoded["naturalHeight"]) == (320, 320)
