"""Refusals as real nodes word them (anvil 1.x as printed by it here; geth, Hardhat 2, Nethermind,
Erigon and hosted providers from their sources and documentation), and one verdict across endpoints."""

import pytest

from services.batcher.send_errors import Classified, Refusal, classify, decide

NODE_MESSAGES = [
    # anvil (printed by anvil here)
    ("intrinsic gas too high -- tx.gas_limit > env.cfg.tx_gas_limit_cap", Refusal.TOO_LARGE),
    ("max fee per gas less than block base fee", Refusal.FEES),
    ("Insufficient funds for gas * price + value", Refusal.FUNDS),
    ("invalid chain id for signer", Refusal.WRONG_CHAIN),
    ("nonce too low", Refusal.NONCE_USED),
    # geth
    ("already known", Refusal.KNOWN),
    ("replacement transaction underpriced", Refusal.KNOWN),
    ("nonce too low: next nonce 5, tx nonce 3", Refusal.NONCE_USED),
    ("insufficient funds for gas * price + value: balance 0, tx cost 21000, overshot 21000", Refusal.FUNDS),
    ("max fee per gas less than block base fee: address 0xab, maxFeePerGas: 1, baseFee: 7", Refusal.FEES),
    ("transaction underpriced: tip needed 1, tip permitted 0", Refusal.FEES),
    ("tx fee (1.10 ether) exceeds the configured cap (1.00 ether)", Refusal.FEES),
    ("exceeds block gas limit", Refusal.TOO_LARGE),
    ("transaction gas limit too high (cap: 16777216, tx: 20000000)", Refusal.TOO_LARGE),
    ("intrinsic gas too low", Refusal.TOO_LARGE),
    ("oversized data", Refusal.TOO_LARGE),
    ("invalid sender", Refusal.WRONG_CHAIN),
    ("txpool is full", Refusal.TRANSIENT),
    # Hardhat 2
    ("Known transaction: 0x5de3c29b336bc146098381d614b6c0895cc093131864f6666ddd557aee322518", Refusal.KNOWN),
    ("Nonce too low. Expected nonce to be 5 but got 3.", Refusal.NONCE_USED),
    ("Transaction gas limit is 40000000 and exceeds block gas limit of 30000000", Refusal.TOO_LARGE),
    (
        "Sender doesn't have enough funds to send tx. The max upfront cost is: 5",
        Refusal.FUNDS,
    ),
    (
        "Transaction maxFeePerGas (1) is too low for the next block, which has a baseFeePerGas of 7",
        Refusal.FEES,
    ),
    ("Trying to send an incompatible EIP-155 transaction, signed for another chain.", Refusal.WRONG_CHAIN),
    ("Replacement transaction underpriced. A gasPrice/maxFeePerGas of at least 2 is needed", Refusal.KNOWN),
    # Nethermind, Erigon
    ("AlreadyKnown", Refusal.KNOWN),
    ("OldNonce, Current nonce: 5, nonce of rejected tx: 3", Refusal.NONCE_USED),
    ("fee cap less than block base fee", Refusal.FEES),
    # hosted providers
    ("Your app has exceeded its compute units per second capacity", Refusal.TRANSIENT),
    ("project ID request rate exceeded", Refusal.TRANSIENT),
    ("limit exceeded", Refusal.TRANSIENT),
    ("nonce too high", Refusal.TRANSIENT),
    # unknown: refused, but not known to be permanent
    ("something nobody has seen before", Refusal.REJECTED),
]


@pytest.mark.parametrize(("message", "refusal"), NODE_MESSAGES)
def test_a_node_refusal_is_read_by_what_it_means(message: str, refusal: Refusal) -> None:
    assert classify(message, reached=True).refusal is refusal


def test_an_endpoint_that_could_not_be_reached_is_transient_whatever_the_text() -> None:
    down = "eth_sendRawTransaction: the node answered HTTP 503, 5 times"
    assert classify(down, reached=False) == Classified(Refusal.TRANSIENT, down, reached=False)


def test_one_endpoint_that_took_the_transaction_is_enough() -> None:
    refused = classify("Insufficient funds for gas * price + value", reached=True)
    assert decide([refused, None]) is None
    assert decide([]) is None


def test_a_reachable_node_s_reason_beats_an_endpoint_that_is_down() -> None:
    down = classify("did not answer", reached=False)
    too_large = classify("intrinsic gas too high", reached=True)
    assert decide([down, too_large]) == too_large
    assert decide([down]) == down


def test_among_reasons_the_one_that_keeps_the_nonce_safest_wins() -> None:
    known = classify("already known", reached=True)
    used = classify("nonce too low", reached=True)
    too_large = classify("exceeds block gas limit", reached=True)
    assert decide([too_large, known]) == known
    assert decide([too_large, used]) == used
