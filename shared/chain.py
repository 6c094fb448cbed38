"""Chain helpers shared by the services: signature splitting."""


def split_signature(signature: str) -> tuple[int, bytes, bytes]:
    """A 65-byte r||s||v signature as the (v, r, s) a contract call takes."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if len(raw) != 65:
        raise ValueError(f"signature must be 65 bytes, got {len(raw)}")
    v = raw[64]
    return (v + 27 if v < 27 else v), raw[:32], raw[32:64]
