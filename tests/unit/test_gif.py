"""The rendered GIF: a real looping animation of the asked size and timing, the same bytes for the same
settings in any process, and different bytes for a different seed."""

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from PIL import GifImagePlugin, Image, ImageChops, ImageSequence

from services.renderer.gif import build_palette, render_gif
from shared.render_settings import PALETTES, RGB, RenderSettings, ShapeName

REPO = Path(__file__).resolve().parents[2]


def settings(**overrides: object) -> RenderSettings:
    body: dict[str, object] = {
        "name": "Test",
        "palette": "neon",
        "shape": "star",
        "seed": 7,
        "frameCount": 12,
        "size": 96,
        "frameDurationMs": 60,
    }
    return RenderSettings.model_validate({**body, **overrides})


def composed_frames(gif: bytes) -> list[Image.Image]:
    with Image.open(io.BytesIO(gif)) as image:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]


def test_the_output_is_a_looping_animated_gif_of_the_asked_size_and_timing() -> None:
    gif = render_gif(settings(frameCount=24, size=200, frameDurationMs=120))

    with Image.open(io.BytesIO(gif)) as image:
        assert isinstance(image, GifImagePlugin.GifImageFile)
        assert image.is_animated
        assert image.n_frames == 24
        assert image.size == (200, 200)
        assert image.info["loop"] == 0
        durations = []
        for frame in ImageSequence.Iterator(image):
            assert frame.size == (200, 200)
            durations.append(frame.info["duration"])
    assert durations == [120] * 24


@pytest.mark.parametrize("shape", get_args(ShapeName))
def test_every_frame_survives_even_at_the_smallest_size_and_most_frames(shape: str) -> None:
    # Pillow folds a frame identical to the one before into it, which would lose frames.
    gif = render_gif(settings(shape=shape, frameCount=128, size=32, frameDurationMs=20))

    with Image.open(io.BytesIO(gif)) as image:
        assert isinstance(image, GifImagePlugin.GifImageFile)
        assert image.n_frames == 128


def test_it_animates_every_frame_differs_from_the_one_before() -> None:
    frames = composed_frames(render_gif(settings(shape="circle")))

    for before, after in zip(frames, frames[1:], strict=False):
        assert ImageChops.difference(before, after).getbbox() is not None


def test_the_same_settings_give_the_same_bytes() -> None:
    assert render_gif(settings()) == render_gif(settings())


def test_the_same_settings_give_the_same_bytes_in_another_process() -> None:
    script = (
        "import sys\n"
        "from services.renderer.gif import render_gif\n"
        "from shared.render_settings import RenderSettings\n"
        "sys.stdout.buffer.write(render_gif(RenderSettings.model_validate_json(sys.stdin.read())))\n"
    )
    body = settings().model_dump_json()
    # A different hash seed: nothing in the drawing may depend on set or dict iteration order.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run(
        [sys.executable, "-c", script],
        input=body.encode(),
        capture_output=True,
        cwd=REPO,
        env=env,
        check=True,
    )

    assert child.stdout == render_gif(settings())


def test_a_different_seed_or_palette_gives_a_different_gif() -> None:
    reference = render_gif(settings())

    assert render_gif(settings(seed=8)) != reference
    assert render_gif(settings(palette="ocean")) != reference
    assert render_gif(settings(shape="square")) != reference


def test_frames_use_only_the_chosen_palette_colours() -> None:
    allowed = set(build_palette(PALETTES["forest"]))

    for frame in composed_frames(render_gif(settings(palette="forest"))):
        colours = frame.getcolors(maxcolors=256)
        assert colours is not None
        assert {colour for _, colour in colours} <= allowed


@pytest.mark.parametrize("colours", PALETTES.values(), ids=PALETTES.keys())
def test_each_palette_expands_to_256_distinct_colours(colours: tuple[RGB, ...]) -> None:
    # The encoder maps frames onto the palette by colour; a repeat would merge two indices.
    expanded = build_palette(colours)

    assert len(expanded) == len(set(expanded)) == 256
