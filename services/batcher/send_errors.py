"""What a refused broadcast means, read from the node's answer (geth, anvil/reth, Hardhat, Erigon,
Nethermind and hosted providers word them differently; codes are not reliable across clients).

- KNOWN: the node (or one of the endpoints) already has this transaction, or an attempt of ours with
  this nonce and higher fees: nothing to resend.
- NONCE_USED: the nonce is mined already: by one of our attempts (the confirmer finds which) or by a
  transaction mintline did not sign (the confirmer retries the batch); the batcher's next nonce is
  resynchronised from the chain.
- TRANSIENT: the endpoint was unreachable, rate-limited or briefly broken: the same bytes go again
  later, with backoff.
- FEES: the fees no longer fit the chain (fee cap below the base fee, under the node's minimum, over
  the node's fee cap): re-signed with fees from the chain now.
- FUNDS: the wallet cannot pay for this transaction: waits for funds (an alert says so); a no-op fill is
  no cheaper to get in than a smaller batch, and the requests are safe where they are.
- TOO_LARGE: over a gas cap or a size limit: can never be included as signed; the nonce is filled with a
  no-op and the requests go back to the queue to be sent in smaller batches.
- WRONG_CHAIN: signed for another chain: a configuration error, the batcher stops.
- REJECTED: anything else the node refuses: after a few refusals, treated as TOO_LARGE (unsendable as
  signed), so no unknown error wedges the nonce sequence.
"""

import enum
from dataclasses import dataclass


class Refusal(enum.Enum):
    KNOWN = "known"
    NONCE_USED = "nonce_used"
    TRANSIENT = "transient"
    FEES = "fees"
    FUNDS = "funds"
    TOO_LARGE = "too_large"
    WRONG_CHAIN = "wrong_chain"
    REJECTED = "rejected"


# Lower-case fragments of node messages, checked in this order (the first match decides).
PATTERNS: tuple[tuple[Refusal, tuple[str, ...]], ...] = (
    (
        Refusal.KNOWN,
        (
            "already known",
            "already imported",
            "known transaction",
            "already exists",
            "already in the pool",
            "alreadyknown",
            "replacement transaction underpriced",
            "replacement fee too low",
            "same hash was already imported",
        ),
    ),
    (Refusal.NONCE_USED, ("nonce too low", "nonce has already been used", "oldnonce", "nonce is too low")),
    (
        Refusal.TRANSIENT,
        (
            "rate limit",
            "rate exceeded",
            "exceeded its",
            "request count exceeded",
            "too many requests",
            "limit exceeded",
            "capacity exceeded",
            "timeout",
            "timed out",
            "temporarily unavailable",
            "service unavailable",
            "bad gateway",
            "did not answer",
            "internal error",
            "txpool is full",
            "transaction pool is full",
            "header not found",
            "nonce too high",
            "nonce gap",
        ),
    ),
    (Refusal.WRONG_CHAIN, ("chain id", "chainid", "invalid sender", "incorrect chain", "another chain")),
    (Refusal.FUNDS, ("insufficient funds", "enough funds", "insufficient balance", "exceeds balance")),
    (
        Refusal.FEES,
        (
            "less than block base fee",
            "fee cap less than",
            "feecap too low",
            "fee cap too low",
            "too low for the next block",
            "max fee per gas less than",
            "transaction underpriced",
            "exceeds the configured cap",
            "fee exceeds",
            "gas price too low",
            "maxfeepergas",
        ),
    ),
    (
        Refusal.TOO_LARGE,
        (
            "intrinsic gas too",
            "gas limit",
            "exceeds block gas",
            "gas too high",
            "oversized",
            "too large",
            "size exceeds",
            "exceeds the transaction gas",
            "max initcode",
        ),
    ),
)


@dataclass(frozen=True)
class Classified:
    refusal: Refusal
    message: str
    # The node answered with a JSON-RPC error (False: it could not be reached, or answered no JSON-RPC).
    reached: bool = True


def classify(message: str, *, reached: bool) -> Classified:
    """The meaning of one endpoint's refusal; a failure to reach it is always transient."""
    if not reached:
        return Classified(Refusal.TRANSIENT, message, reached=False)
    text = message.lower()
    for refusal, fragments in PATTERNS:
        if any(fragment in text for fragment in fragments):
            return Classified(refusal, message)
    return Classified(Refusal.REJECTED, message)


def decide(answers: list[Classified | None]) -> Classified | None:
    """One verdict from every endpoint's answer (None in the list: that endpoint took it; None back:
    the transaction is out). A node's own reason beats a failure to reach another; among reasons, the
    one that keeps the nonce safest wins: already known, then nonce used, then transient, then the
    permanent ones. So one endpoint that is down never hides what a reachable one said."""
    if not answers or any(answer is None for answer in answers):
        return None
    refused = [answer for answer in answers if answer is not None]
    reached = [answer for answer in refused if answer.reached] or refused
    order = list(Refusal)
    return min(reached, key=lambda answer: order.index(answer.refusal))
