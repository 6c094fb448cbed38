"""The console's /openapi.json (admin/console/openapi.py) describes every route it serves, no more,
with schemas from the models the handlers use; every action body refuses unknown fields."""

from typing import get_args

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from admin.console import openapi, schemas
from admin.console.app import create_app
from admin.console.settings import ConsoleSettings
from shared import keys


@pytest.fixture(scope="module")
def spec() -> dict:
    return openapi.build()


def served() -> set[tuple[str, str]]:
    settings = ConsoleSettings.model_construct(token=SecretStr("t" * 32))
    app = create_app(settings)
    return {
        (route.method.lower(), route.resource.canonical)  # type: ignore[union-attr]
        for route in app.router.routes()
        if route.method != "HEAD"
    }


def test_every_route_is_described_and_nothing_else(spec: dict) -> None:
    described = {(method, path) for path, methods in spec["paths"].items() for method in methods}
    assert described == served()


def test_only_health_is_public(spec: dict) -> None:
    assert spec["security"] == [{"basic": []}, {"bearer": []}]
    public = [
        path for path, methods in spec["paths"].items() for o in methods.values() if o.get("security") == []
    ]
    assert public == ["/health"]
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            if path != "/health":
                assert "401" in operation["responses"], path


def test_every_action_has_its_body_and_its_errors(spec: dict) -> None:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method in ("post", "put"):
                assert operation["requestBody"]["content"]["application/json"]["schema"], path
                assert {"400", "401", "403", "415"} <= set(operation["responses"]), path


def test_the_schemas_resolve(spec: dict) -> None:
    text = str(spec)
    for name in spec["components"]["schemas"]:
        assert f"#/components/schemas/{name}" in text or name in ("ApiErrorBody",)
    for ref in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in spec["components"]["schemas"], ref


def test_the_stream_names_are_the_streams() -> None:
    assert set(get_args(schemas.StreamName)) == set(keys.STREAMS)


@pytest.mark.parametrize(
    "body", [schemas.RetryFailedBody, schemas.ResetStuckBody, schemas.ReplayBody, schemas.RequeueDeadBody]
)
def test_action_bodies_refuse_unknown_fields(body: type[BaseModel]) -> None:
    body.model_validate({})
    with pytest.raises(ValidationError):
        body.model_validate({"dry_run_typo": True})


def test_a_setting_value_is_text_or_a_number_or_null() -> None:
    assert schemas.SettingBody.model_validate({"value": 5}).value == 5
    assert schemas.SettingBody.model_validate({"value": "0.5"}).value == "0.5"
    assert schemas.SettingBody.model_validate({"value": None}).value is None
    for bad in ({"value": True}, {"value": [1]}, {}, {"value": "x" * 201}):
        with pytest.raises(ValidationError):
            schemas.SettingBody.model_validate(bad)
