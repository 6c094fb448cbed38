"""Draw an NFT as an animated GIF: a shape that orbits, spins, pulses and cycles colour over a gradient.

Frames are drawn straight into palette ("P") images, one byte per pixel, with a fixed 256-colour palette
built from the chosen palette, so no RGB frame exists and nothing needs quantising. Every choice comes from
`random.Random(seed)`, so the same settings give the same bytes (with the same Pillow version).
"""

import io
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from shared.render_settings import PALETTES, RGB, RenderSettings

# Palette layout: indices 0..127 cycle through the palette's colours, 128..255 are the same cycle darkened
# for the background, so the shape always stands out.
RAMP = 128
DARK = RAMP
TWO_PI = 2 * math.pi


def build_palette(colours: Sequence[RGB]) -> list[RGB]:
    """256 distinct colours: the palette's colours blended in a cycle, then that cycle at 40% brightness."""
    count = len(colours)
    bright: list[RGB] = []
    for index in range(RAMP):
        position = index * count  # in 1/RAMP of one colour step; integers keep the output exact
        start, end = colours[position // RAMP], colours[(position // RAMP + 1) % count]
        blend = position % RAMP
        r, g, b = ((a * (RAMP - blend) + z * blend) // RAMP for a, z in zip(start, end, strict=True))
        bright.append((r, g, b))
    dark = [(r * 2 // 5, g * 2 // 5, b * 2 // 5) for r, g, b in bright]
    return _distinct(bright + dark)


def _distinct(colours: list[RGB]) -> list[RGB]:
    # Pillow maps a frame onto the save palette by colour, so a repeated colour would merge two indices.
    # A nudge of one blue step is invisible.
    seen: set[RGB] = set()
    unique: list[RGB] = []
    for r, g, b in colours:
        while (r, g, b) in seen:
            b = (b + 1) % 256
        seen.add((r, g, b))
        unique.append((r, g, b))
    return unique


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything the seed decides; frame `index` of `frames` is drawn at phase 2*pi*index/frames."""

    size: int
    shape: str
    gradient_angle: float
    gradient_start: int
    dot_spacing: int
    dot_offset: tuple[int, int]
    orbit: tuple[float, float]  # amplitudes of the Lissajous path, in pixels
    orbit_speed: tuple[int, int]  # whole cycles per loop, so the last frame leads back to the first
    orbit_phase: tuple[float, float]
    radius: float
    pulse: float
    pulse_speed: int
    turn: float
    turns: int
    colour_start: int
    satellites: int
    satellite_turns: int

    @classmethod
    def from_settings(cls, settings: RenderSettings) -> "Scene":
        rng = random.Random(settings.seed)
        size = settings.size
        return cls(
            size=size,
            shape=settings.shape,
            gradient_angle=rng.uniform(0, TWO_PI),
            gradient_start=rng.randrange(RAMP),
            dot_spacing=max(8, size // rng.randint(8, 16)),
            dot_offset=(rng.randrange(size // 8), rng.randrange(size // 8)),
            orbit=(size * rng.uniform(0.06, 0.16), size * rng.uniform(0.06, 0.16)),
            orbit_speed=(rng.randint(1, 2), rng.randint(1, 2)),
            orbit_phase=(rng.uniform(0, TWO_PI), rng.uniform(0, TWO_PI)),
            radius=size * rng.uniform(0.16, 0.22),
            pulse=rng.uniform(0.06, 0.14),
            pulse_speed=rng.randint(1, 3),
            turn=rng.uniform(0, TWO_PI),
            turns=rng.choice((-2, -1, 1, 2)),
            colour_start=rng.randrange(RAMP),
            satellites=rng.randint(2, 5),
            satellite_turns=rng.choice((-3, -2, 2, 3)),
        )


def background(scene: Scene, palette: bytes) -> Image.Image:
    """A dark gradient at the seed's angle over half the colour cycle, with a grid of dots."""
    size = scene.size
    cos, sin = math.cos(scene.gradient_angle), math.sin(scene.gradient_angle)
    corners = [x * cos + y * sin for x in (0, size) for y in (0, size)]
    low, high = min(corners), max(corners)
    scale = 255 / (high - low)
    # Sample a 0..255 ramp along the gradient's direction; the lookup table turns ramp values into
    # dark palette indices, and attaching the palette makes the "L" image a "P" image.
    ramp = Image.frombytes("L", (256, 1), bytes(range(256)))
    affine = (cos * scale, sin * scale, -low * scale, 0.0, 0.0, 0.5)
    levels = ramp.transform((size, size), Image.Transform.AFFINE, affine, Image.Resampling.NEAREST)
    lookup = [DARK + (scene.gradient_start + level // 4) % RAMP for level in range(256)]
    image = levels.point(lookup)
    image.putpalette(palette)

    draw = ImageDraw.Draw(image)
    dot = max(1, size // 128)
    dot_colour = DARK + (scene.gradient_start + RAMP // 2 + RAMP // 4) % RAMP
    for x in range(scene.dot_offset[0], size, scene.dot_spacing):
        for y in range(scene.dot_offset[1], size, scene.dot_spacing):
            draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=dot_colour)
    return image


def outline_points(
    shape: str, centre: tuple[float, float], radius: float, angle: float
) -> list[tuple[int, int]]:
    """The polygon for a shape; whole pixels so drawing never depends on float rounding inside Pillow."""
    if shape == "triangle":
        corners = [(radius, angle + TWO_PI * k / 3) for k in range(3)]
    elif shape == "square":
        corners = [(radius, angle + math.pi / 4 + TWO_PI * k / 4) for k in range(4)]
    elif shape == "star":
        corners = [(radius if k % 2 == 0 else radius * 0.45, angle + math.pi * k / 5) for k in range(10)]
    elif shape == "diamond":
        # A rhombus: long axis along `angle`, short axis 60% of it.
        corners = [(radius * (1.0 if k % 2 == 0 else 0.6), angle + math.pi * k / 2) for k in range(4)]
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    cx, cy = centre
    return [(round(cx + r * math.cos(a)), round(cy + r * math.sin(a))) for r, a in corners]


def draw_frame(image: Image.Image, scene: Scene, index: int, frames: int) -> None:
    phase = TWO_PI * index / frames
    size = scene.size
    cx = size / 2 + scene.orbit[0] * math.sin(scene.orbit_speed[0] * phase + scene.orbit_phase[0])
    cy = size / 2 + scene.orbit[1] * math.sin(scene.orbit_speed[1] * phase + scene.orbit_phase[1])
    radius = scene.radius * (1 + scene.pulse * math.sin(scene.pulse_speed * phase))
    angle = scene.turn + scene.turns * phase
    # One or more ramp steps per frame (frames <= RAMP), so consecutive frames always differ and Pillow
    # never merges two of them into one.
    fill = (scene.colour_start + index * RAMP // frames) % RAMP
    edge = (fill + RAMP // 2) % RAMP
    width = max(1, size // 96)
    draw = ImageDraw.Draw(image)

    if scene.shape in ("circle", "ring"):
        box = (round(cx - radius), round(cy - radius), round(cx + radius), round(cy + radius))
        if scene.shape == "circle":
            draw.ellipse(box, fill=fill, outline=edge, width=width)
        else:
            draw.ellipse(box, outline=fill, width=max(2, round(radius * 0.3)))
        # A notch on the rim shows the spin, which a circle alone would hide.
        notch_x, notch_y = cx + radius * 0.8 * math.cos(angle), cy + radius * 0.8 * math.sin(angle)
        notch = max(2, round(radius * 0.12))
        draw.ellipse(
            (round(notch_x) - notch, round(notch_y) - notch, round(notch_x) + notch, round(notch_y) + notch),
            fill=edge,
        )
    else:
        draw.polygon(
            outline_points(scene.shape, (cx, cy), radius, angle), fill=fill, outline=edge, width=width
        )

    moon = max(2, round(scene.radius * 0.12))
    moon_colour = (fill + RAMP // 4) % RAMP
    for k in range(scene.satellites):
        moon_angle = scene.satellite_turns * phase + TWO_PI * k / scene.satellites
        mx = round(cx + radius * 1.45 * math.cos(moon_angle))
        my = round(cy + radius * 1.45 * math.sin(moon_angle))
        draw.ellipse((mx - moon, my - moon, mx + moon, my + moon), fill=moon_colour)


def frames(settings: RenderSettings, palette: bytes) -> Iterator[Image.Image]:
    """Frames one at a time: the GIF encoder keeps its own copy, so only one is drawn at a time."""
    scene = Scene.from_settings(settings)
    backdrop = background(scene, palette)
    for index in range(settings.frames):
        frame = backdrop.copy()
        draw_frame(frame, scene, index, settings.frames)
        yield frame


def render_gif(settings: RenderSettings) -> bytes:
    """The animated GIF for `settings`: loops forever, every frame shown for `frame_duration_ms`."""
    palette = bytes(channel for colour in build_palette(PALETTES[settings.palette]) for channel in colour)
    sequence = frames(settings, palette)
    first = next(sequence)
    out = io.BytesIO()
    first.save(
        out,
        format="GIF",
        save_all=True,
        append_images=sequence,
        loop=0,
        duration=settings.frame_duration_ms,
        optimize=True,
        # One global colour table instead of one per frame.
        palette=palette,
        # Keep each frame in place: later frames only store the rectangle that changed.
        disposal=1,
    )
    return out.getvalue()
