"""The PayerState call's arguments and answer, written out by hand in services/intake/onchain.py: the
same bytes as eth_abi's encoder and decoder, and a clear refusal of an answer that is not one."""

import os

import pytest
from eth_abi import decode, encode

from services.intake.onchain import payer_state_arguments, read_payer_state

USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.mark.parametrize("count", [0, 1, 2, 64])
def test_the_arguments_are_what_eth_abi_encodes(count: int) -> None:
    nonces = ["0x" + os.urandom(32).hex() for _ in range(count)]
    expected = encode(
        ["address", "address", "bytes32[]"], [USDC, PAYER, [bytes.fromhex(n[2:]) for n in nonces]]
    )
    assert payer_state_arguments(USDC, PAYER, nonces) == expected.hex()
    assert decode(["address", "address", "bytes32[]"], expected)[2] == tuple(
        bytes.fromhex(n[2:]) for n in nonces
    )


@pytest.mark.parametrize("used", [[], [True], [False, True, True, False]])
def test_the_answer_is_read_as_eth_abi_decodes_it(used: list[bool]) -> None:
    answer = "0x" + encode(["uint256", "uint256", "bool[]"], [19_000_123, 2**200 + 5, used]).hex()
    state = read_payer_state(answer, len(used))
    assert (state.block, state.balance, list(state.used)) == (19_000_123, 2**200 + 5, used)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "0x",
        "nothex",
        "0x" + encode(["uint256", "uint256", "bool[]"], [1, 2, [True]]).hex(),  # one flag, two asked for
        "0x" + encode(["uint256", "uint256", "uint256[]"], [1, 2, [1, 7]]).hex(),  # 7 is no bool
        "0x" + encode(["uint256", "uint256", "bool[]"], [1, 2, [True, False]]).hex() + "00",
    ],
)
def test_an_answer_that_is_no_payer_state_is_refused(answer: object) -> None:
    with pytest.raises(ValueError):
        read_payer_state(answer, 2)
