"""What POST /nft/render accepts: bounds, the messages a buyer sees on a 422, and the metadata traits."""

from typing import get_args

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.render_settings import MAX_PIXELS, PALETTES, PaletteName, RenderSettings

BODY = {
    "name": "Sunset Star #1",
    "palette": "sunset",
    "shape": "star",
    "seed": 42,
    "frameCount": 64,
    "size": 512,
    "frameDurationMs": 80,
}


def errors_of(body: dict) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as caught:
        RenderSettings.model_validate(body)
    return caught.value.errors(include_url=False)


def test_camel_case_json_is_accepted_and_round_trips() -> None:
    settings = RenderSettings.model_validate_json(
        '{"name": "  Sunset Star #1 ", "palette": "sunset", "shape": "star", "seed": 42,'
        ' "frameCount": 64, "frameDurationMs": 80}'
    )

    assert settings.name == "Sunset Star #1"
    assert (settings.frames, settings.size, settings.frame_duration_ms) == (64, 512, 80)
    assert settings.model_dump(mode="json") == BODY
    assert RenderSettings.model_validate(settings.model_dump(mode="json")) == settings


def test_python_names_are_accepted_too() -> None:
    settings = RenderSettings(name="n", palette="ocean", shape="ring", seed=0, frames=2, frame_duration_ms=20)

    assert settings.frames == 2 and settings.frame_duration_ms == 20


def test_too_many_pixels_states_the_limit_and_the_request() -> None:
    [error] = errors_of({**BODY, "frameCount": 64, "size": 1024})

    assert error["type"] == "render_too_large"
    assert str(MAX_PIXELS) in error["msg"] and str(64 * 1024 * 1024) in error["msg"]
    assert error["ctx"]["limit"] == MAX_PIXELS == 128 * 512 * 512
    assert error["ctx"]["requested"] == 64 * 1024 * 1024


def test_the_largest_allowed_render_is_128_frames_of_512() -> None:
    settings = RenderSettings.model_validate({**BODY, "frameCount": 128, "size": 512})

    assert settings.total_pixels() == MAX_PIXELS
    assert errors_of({**BODY, "frameCount": 128, "size": 513})[0]["type"] == "render_too_large"


def test_an_unknown_palette_lists_the_choices() -> None:
    [error] = errors_of({**BODY, "palette": "plaid"})

    assert error["loc"] == ("palette",)
    for name in get_args(PaletteName):
        assert f"'{name}'" in error["msg"]


def test_every_palette_name_has_four_to_six_colours() -> None:
    assert set(PALETTES) == set(get_args(PaletteName))
    assert all(4 <= len(colours) <= 6 for colours in PALETTES.values())


@pytest.mark.parametrize("name", ["bad\x07bell", "tab\tinside", "bidi\u202eoverride", "zero\u200bwidth"])
def test_a_name_with_control_or_invisible_characters_is_refused(name: str) -> None:
    [error] = errors_of({**BODY, "name": name})

    assert error["loc"] == ("name",)
    assert "printable" in error["msg"] and "U+" in error["msg"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
def test_a_name_is_1_to_64_characters_after_stripping(name: str) -> None:
    [error] = errors_of({**BODY, "name": name})

    assert error["loc"] == ("name",)


def test_an_extra_field_is_forbidden() -> None:
    [error] = errors_of({**BODY, "background": "red"})

    assert (error["type"], error["loc"]) == ("extra_forbidden", ("background",))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("seed", 2**32),
        ("frameCount", 1),
        ("frameCount", 129),
        ("size", 31),
        ("size", 1025),
        ("frameDurationMs", 10),
        ("frameDurationMs", 1010),
        ("frameDurationMs", 25),  # GIF delays are in hundredths of a second
        ("seed", "42"),  # numbers are JSON numbers
        ("frameCount", 64.0),
        ("size", True),
        ("shape", "hexagon"),
    ],
)
def test_out_of_bounds_values_are_refused_at_their_field(field: str, value: object) -> None:
    errors = errors_of({**BODY, field: value})

    assert [error["loc"] for error in errors] == [(field,)]


def test_the_memory_estimate_grows_with_the_work() -> None:
    small = RenderSettings.model_validate({**BODY, "frameCount": 2, "size": 32})
    large = RenderSettings.model_validate({**BODY, "frameCount": 128, "size": 512})

    assert large.estimated_memory_bytes() >= MAX_PIXELS  # at least one byte per pixel
    assert small.estimated_memory_bytes() < large.estimated_memory_bytes()


def test_attributes_are_erc721_traits() -> None:
    settings = RenderSettings.model_validate(BODY)

    assert settings.attributes() == [
        {"trait_type": "Palette", "value": "sunset"},
        {"trait_type": "Shape", "value": "star"},
        {"trait_type": "Seed", "value": 42, "display_type": "number"},
        {"trait_type": "Frames", "value": 64, "display_type": "number"},
        {"trait_type": "Size", "value": 512, "display_type": "number"},
        {"trait_type": "Frame duration (ms)", "value": 80, "display_type": "number"},
    ]


def test_settings_are_frozen() -> None:
    settings = RenderSettings.model_validate(BODY)

    with pytest.raises(ValidationError):
        settings.seed = 1  # type: ignore[misc]
