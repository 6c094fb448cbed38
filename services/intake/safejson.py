"""json.loads for what clients send, its nesting bounded before it is parsed.

The C decoder recurses once per nesting level, and py_ecc (imported with eth_account) raises Python's
recursion limit to 100,000, so a body of 100,000 nested arrays would overflow the C stack and kill the
process rather than raise RecursionError. Orders nest a few levels; deeper is refused as invalid.
"""

import json
import re
from typing import Any

MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_OPENING = b"[{"


class TooDeep(ValueError):
    pass


def loads(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads(raw), or ValueError (TooDeep) when it nests deeper than `max_depth`."""
    # Fewer opening brackets than the limit cannot nest past it: the usual order skips the scan.
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        depth = 0
        for byte in _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw)):
            depth += 1 if byte in _OPENING else -1
            if depth > max_depth:
                raise TooDeep(f"it nests deeper than {max_depth} levels")
    return json.loads(raw)
