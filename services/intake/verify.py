"""Verifying the payment of an order: the pure checks, then the chain reads they need."""

from dataclasses import dataclass

from services.intake.errors import PaymentRejected, PaymentReplayed
from services.intake.onchain import ChainReader
from services.intake.orders import Order
from services.intake.payments import PaymentTerms, check_authorization
from services.intake.transfers import payment_transfer, transfer_payment_id


@dataclass(frozen=True)
class Verified:
    payer: str
    amount: int
    payment_id: str
    # The block the chain state was read in.
    block: int
    # The payer's USDC balance, for payments settled later from it (EIP-3009 authorizations).
    balance: int | None = None
    # Which of the payer's other queued authorizations (nonces) the chain has executed already: their
    # USDC has left `balance`, so they no longer reserve any of it.
    debited: frozenset[str] = frozenset()
    # A custom payment: the transfer log it claims.
    log_index: int | None = None


async def verify(
    order: Order,
    terms: PaymentTerms,
    chain: ChainReader,
    now: int,
    confirmations: int,
    *,
    queued_nonces: tuple[str, ...] = (),
    checked: bool = False,
) -> Verified:
    """`queued_nonces`: the payer's other queued, unsettled authorizations, whose state is read in the
    same block as the balance. `checked`: the authorization passed check_authorization at `now`
    already (the per-payer rate limit checks it first)."""
    auth = order.authorization
    if auth is not None:
        # Before any chain read: a bad signature costs the node nothing.
        if not checked:
            check_authorization(auth, terms, now)
        state = await chain.payer_state(auth.payer, [auth.nonce, *queued_nonces])
        if state.used[0]:
            raise PaymentReplayed("this authorization's nonce is already used or canceled on-chain")
        debited = frozenset(n for n, used in zip(queued_nonces, state.used[1:], strict=True) if used)
        if state.balance < auth.value:
            raise PaymentRejected(
                "insufficient_balance",
                f"{auth.payer} holds {state.balance} USDC units; the authorization is for {auth.value}",
            )
        return Verified(auth.payer, auth.value, auth.payment_id, state.block, state.balance, debited)
    assert order.claim is not None
    receipt, latest = await chain.receipt_and_head(order.claim.tx_hash)
    transfer = payment_transfer(receipt, terms, latest, confirmations, order.claim)
    return Verified(
        transfer.payer,
        transfer.amount,
        transfer_payment_id(order.claim.tx_hash, transfer.log_index),
        latest,
        log_index=transfer.log_index,
    )
