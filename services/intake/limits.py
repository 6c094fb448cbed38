"""The rate limits as a request meets them: who its client is, and the payer's bucket for a paid request
(the client's bucket is taken by the `limit_clients` middleware). The buckets are in ratelimit.py."""

from aiohttp import web

from services.intake.errors import RateLimited
from services.intake.payments import Authorization, PaymentTerms, check_authorization
from services.intake.ratelimit import client_address, client_key, exempt, retry_after
from services.intake.resources import PAYER_LIMITS, SETTINGS


def limited_client(request: web.Request) -> str | None:
    """The key the client of this request is limited by (its address; an IPv6 client's /64), or None
    for a client in INTAKE_RATE_EXEMPT_NETWORKS."""
    settings = request.app[SETTINGS]
    address = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.trusted_proxies
    )
    if exempt(address, settings.rate_exempt_networks):
        return None
    return client_key(address)


def limit_payer(
    app: web.Application,
    terms: PaymentTerms,
    authorization: Authorization | None,
    claimed_payer: str | None,
    now: int,
) -> None:
    """Takes a token from the payer's bucket before anything is read for an order (database, chain):
    the signer of its authorization, else the payer a custom payment claims.

    An authorization counts for its payer only once its signature is checked (pure, no chain read), so
    a forgery cannot spend an honest payer's bucket. A custom payment's `payer` is a claim until the
    receipt is read: it counts in a bucket of its own, so claims in someone's name cannot hold up
    their signed payments. A custom payment claiming no payer is limited per client only.
    """
    if authorization is not None:
        check_authorization(authorization, terms, now)
        payer, bucket = authorization.payer, authorization.payer
    elif claimed_payer is not None:
        payer, bucket = claimed_payer, f"claimed:{claimed_payer}"
    else:
        return
    wait = app[PAYER_LIMITS].take(bucket)
    if wait > 0:
        seconds = retry_after(wait)
        raise RateLimited("rate_limited", f"too many requests paid by {payer}; retry in {seconds} s", seconds)
