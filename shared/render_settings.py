"""What a buyer may ask the NFT renderer for: intake validates POST /nft/render bodies with it, the renderer
renders from it. JSON names are camelCase (`frameCount`, `frameDurationMs`); Python names are snake_case.
"""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

RGB = tuple[int, int, int]
PaletteName = Literal["sunset", "ocean", "forest", "mono", "neon", "candy"]
ShapeName = Literal["circle", "square", "triangle", "star", "ring", "diamond"]

PALETTES: dict[PaletteName, tuple[RGB, ...]] = {
    "sunset": ((255, 94, 77), (255, 154, 0), (255, 206, 84), (237, 85, 101), (120, 40, 120)),
    "ocean": ((0, 63, 92), (0, 119, 182), (0, 180, 216), (144, 224, 239), (202, 240, 248)),
    "forest": ((27, 67, 50), (45, 106, 79), (82, 183, 136), (149, 213, 178), (216, 243, 220)),
    "mono": ((16, 16, 16), (80, 80, 80), (160, 160, 160), (240, 240, 240)),
    "neon": ((255, 0, 110), (251, 86, 7), (255, 190, 11), (58, 134, 255), (131, 56, 236), (6, 214, 160)),
    "candy": ((255, 173, 173), (255, 214, 165), (253, 255, 182), (202, 255, 191), (155, 246, 255)),
}

# 128 frames of 512x512: about 33.5 million pixels, the most one job may draw and hold.
MAX_PIXELS = 128 * 512 * 512
# What a job holds per pixel of the whole animation: Pillow's copy of every palette frame (1 byte) while it
# encodes, then the GIF and its pickled copy for the parent process; flat drawings compress far below
# 1 byte per pixel. Measured: 128 frames of 512x512 grow the process by about 37 MiB, this says 64.
_BYTES_PER_ANIMATION_PIXEL = 2
# Per pixel of one frame: the few whole-frame images alive at a time (background, the frame being drawn,
# its normalised copy, the diff against the previous frame and its mask).
_BYTES_PER_FRAME_PIXEL = 8

# Browsers treat frame delays under 20 ms as 100 ms, and GIF stores delays in hundredths of a second.
MIN_FRAME_DURATION_MS = 20
MAX_FRAME_DURATION_MS = 1000

NftName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class RenderSettings(BaseModel):
    # strict: JSON numbers must be integers (no "64", 64.0 or true) and strings must be strings.
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    name: NftName
    palette: PaletteName
    shape: ShapeName
    seed: int = Field(ge=0, le=2**32 - 1)
    frames: int = Field(alias="frameCount", ge=2, le=128)
    size: int = Field(default=512, ge=32, le=1024, description="width and height in pixels")
    frame_duration_ms: int = Field(
        default=80,
        alias="frameDurationMs",
        ge=MIN_FRAME_DURATION_MS,
        le=MAX_FRAME_DURATION_MS,
        multiple_of=10,
        description="how long each frame shows",
    )

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        # The name goes into ERC-721 metadata and wallet UIs: no control, format or bidi characters.
        for position, char in enumerate(name):
            if not char.isprintable():
                raise ValueError(
                    f"name must be printable text; U+{ord(char):04X} at position {position} is not"
                )
        return name

    @model_validator(mode="after")
    def _bounded_work(self) -> Self:
        requested = self.total_pixels()
        if requested > MAX_PIXELS:
            raise PydanticCustomError(
                "render_too_large",
                "frameCount x size x size must be at most {limit} pixels (e.g. 128 frames of 512x512);"
                " {frames} frames of {size}x{size} is {requested}",
                {"limit": MAX_PIXELS, "requested": requested, "frames": self.frames, "size": self.size},
            )
        return self

    def total_pixels(self) -> int:
        return self.frames * self.size * self.size

    def estimated_memory_bytes(self) -> int:
        """Working memory one render needs on top of the interpreter (the renderer's budget adds margin)."""
        return (
            self.total_pixels() * _BYTES_PER_ANIMATION_PIXEL + self.size * self.size * _BYTES_PER_FRAME_PIXEL
        )

    def attributes(self) -> list[dict[str, Any]]:
        """The ERC-721 metadata `attributes` (OpenSea's trait_type / value / display_type)."""
        return [
            {"trait_type": "Palette", "value": self.palette},
            {"trait_type": "Shape", "value": self.shape},
            {"trait_type": "Seed", "value": self.seed, "display_type": "number"},
            {"trait_type": "Frames", "value": self.frames, "display_type": "number"},
            {"trait_type": "Size", "value": self.size, "display_type": "number"},
            {"trait_type": "Frame duration (ms)", "value": self.frame_duration_ms, "display_type": "number"},
        ]
