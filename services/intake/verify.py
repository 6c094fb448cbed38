"""Verifying the payment of an order: the pure checks, then the chain reads they need."""

import asyncio
from dataclasses import dataclass

from services.intake.errors import BadRequest, PaymentRejected, PaymentReplayed
from services.intake.onchain import ChainReader
from services.intake.orders import Order
from services.intake.payments import PaymentTerms, check_authorization
from services.intake.transfers import payment_transfer


@dataclass(frozen=True)
class Verified:
    payer: str
    amount: int
    # The payer's USDC balance, for payments settled later from it (EIP-3009 authorizations).
    balance: int | None


async def verify(
    order: Order, terms: PaymentTerms, chain: ChainReader, now: int, confirmations: int
) -> Verified:
    auth = order.authorization
    if auth is not None:
        check_authorization(auth, terms, now)
        used, balance = await chain.payer_state(auth.payer, auth.nonce)
        if used:
            raise PaymentReplayed("this authorization's nonce is already used or canceled on-chain")
        if balance < auth.value:
            raise PaymentRejected(
                "insufficient_balance",
                f"{auth.payer} holds {balance} USDC units; the authorization is for {auth.value}",
            )
        return Verified(auth.payer, auth.value, balance)
    assert order.tx_hash is not None
    receipt, latest = await asyncio.gather(chain.receipt(order.tx_hash), chain.block_number())
    transfer = payment_transfer(receipt, terms, latest, confirmations)
    if order.claimed_payer is not None and order.claimed_payer != transfer.payer:
        raise BadRequest(
            "payer_mismatch", f"the transfer was sent by {transfer.payer}, not {order.claimed_payer}"
        )
    return Verified(transfer.payer, transfer.amount, None)
