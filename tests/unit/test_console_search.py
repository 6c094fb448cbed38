"""The console lists' query parameters (admin/console/search.py): what a search box holds decides what
it searches; anything else is a 400 naming the parameter."""

import uuid
from datetime import UTC, datetime

import pytest

from admin.console.middleware import ApiError
from admin.console.search import batch_search, render_search, request_search

PAYER = "0x" + "ab" * 20
CHECKSUMMED = "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"  # EIP-55 of PAYER
TX = "0x" + "CD" * 32


def test_one_box_finds_a_request_by_id_payer_or_hash() -> None:
    request_id = uuid.uuid4()
    assert request_search({"q": f" {request_id} "}).request_id == request_id
    assert request_search({"q": PAYER}).payer == CHECKSUMMED
    assert request_search({"q": TX}).tx_hash == TX.lower()
    terms = request_search({"status": "failed", "payer": PAYER, "before": "42", "limit": "10"})
    assert (terms.status, terms.payer, terms.before, terms.limit) == ("failed", CHECKSUMMED, 42, 10)
    assert request_search({}).limit == 50


def test_one_box_finds_a_batch_by_id_wallet_or_hash() -> None:
    assert batch_search({"q": "17"}).batch_id == 17
    assert batch_search({"q": PAYER}).wallet == CHECKSUMMED
    assert batch_search({"q": TX}).tx_hash == TX.lower()
    assert batch_search({"status": "reverted"}).status == "reverted"


def test_render_jobs_page_by_time() -> None:
    assert render_search({"before": "2026-01-02T03:04:05Z"}).before == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    assert render_search({"status": "active"}).status == "active"


@pytest.mark.parametrize(
    ("search", "query", "named"),
    [
        (request_search, {"status": "done"}, "status"),
        (request_search, {"payer": "0x12"}, "payer"),
        (request_search, {"tx": "0x" + "zz" * 32}, "tx"),
        (request_search, {"id": "nope"}, "id"),
        (request_search, {"q": "hello"}, "q"),
        (request_search, {"limit": "0"}, "limit"),
        (request_search, {"limit": "201"}, "limit"),
        (request_search, {"limit": "ten"}, "limit"),
        (request_search, {"before": "-5"}, "before"),
        (batch_search, {"q": "0"}, "q"),
        (batch_search, {"q": "abc"}, "q"),
        (batch_search, {"id": "99999999999999999999"}, "id"),
        (batch_search, {"wallet": "me"}, "wallet"),
        (batch_search, {"status": "pending"}, "status"),
        (render_search, {"before": "yesterday"}, "before"),
        (render_search, {"before": "2026-01-02T03:04:05"}, "before"),  # no offset
        (render_search, {"status": "rendering"}, "status"),
    ],
)
def test_bad_parameters_are_named(search, query: dict[str, str], named: str) -> None:
    with pytest.raises(ApiError) as refused:
        search(query)
    assert (refused.value.status, refused.value.code) == (400, "invalid_query")
    assert refused.value.message.startswith(f"{named}")
