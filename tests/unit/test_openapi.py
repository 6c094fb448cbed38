"""The API description (GET /openapi.json): it describes exactly the routes the app registers, so a new
route cannot be forgotten, and it is valid OpenAPI 3.1."""

import json

from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from services.intake import openapi
from services.intake.routes import setup_routes

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def registered() -> set[tuple[str, str]]:
    app = web.Application()
    setup_routes(app)
    # aiohttp registers a HEAD beside each GET: described by the GET.
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def described(document: dict) -> set[tuple[str, str]]:
    return {
        (method, path) for path, item in document["paths"].items() for method in item if method in METHODS
    }


def test_every_registered_route_is_described_and_nothing_else() -> None:
    document = openapi.build()

    assert registered() - described(document) == set(), "routes missing from services/intake/openapi.py"
    assert described(document) - registered() == set(), "described routes the app does not have"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.build()

    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"] == "3.1.0"


def test_served_bytes_are_the_built_document() -> None:
    assert json.loads(openapi.document()) == openapi.build()


def test_every_operation_documents_its_errors_as_json() -> None:
    document = openapi.build()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]["$ref"]
                    assert schema.rsplit("/", 1)[1] in {"ApiErrorBody", "PaymentRequiredBody", "Unhealthy"}, (
                        method,
                        path,
                        status,
                    )


def test_request_bodies_are_the_validating_models() -> None:
    schemas = openapi.build()["components"]["schemas"]

    assert schemas["MintOrder"]["discriminator"]["propertyName"] == "paymentType"
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["MintOrder"]["oneOf"]] == [
        "X402Body",
        "GaslessBody",
        "CustomBody",
    ]
    for body in ("X402Render", "GaslessRender", "CustomRender"):
        assert schemas[body]["properties"]["render"] == {"$ref": "#/components/schemas/RenderSettings"}
    assert schemas["RenderSettings"]["properties"]["frameCount"]["maximum"] == 128
