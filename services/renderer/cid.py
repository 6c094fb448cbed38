"""The IPFS CID `ipfs add` gives a byte string by default, computed here without an IPFS node.

Kubo's defaults: UnixFS file nodes in dag-pb (no raw leaves), fixed 256 KiB chunks, a balanced DAG with
at most 174 links per node, sha2-256. The same DAG is named by a CIDv0 ("Qm...") and a CIDv1 ("bafybei...").
Also here: strict parsing of CID strings, so a gateway never touches a path built from anything else.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass

CHUNK_SIZE = 262_144
MAX_LINKS = 174

DAG_PB = 0x70
SHA2_256 = 0x12
_UNIXFS_FILE = 2
# Longest CID string worth parsing: a CIDv1 with a 64-byte digest is about 110 characters.
_MAX_CID_LENGTH = 128
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class InvalidCid(ValueError):
    """The text is not a CIDv1 (base32 lower, "b...") or CIDv0 ("Qm...") string."""


@dataclass(frozen=True)
class DagNode:
    """What a parent needs of a child: its digest, its whole DAG's size (Tsize), the file bytes under it."""

    digest: bytes
    dag_size: int
    file_size: int

    @property
    def multihash(self) -> bytes:
        return bytes([SHA2_256, len(self.digest)]) + self.digest


def cid_v1(data: bytes | memoryview) -> str:
    """CIDv1 of `data` as `ipfs add --cid-version=1 --raw-leaves=false` names it: "bafybei..."."""
    return format_cid_v1(DAG_PB, file_dag(data).multihash)


def cid_v0(data: bytes | memoryview) -> str:
    """CIDv0 of `data` as plain `ipfs add` names it: "Qm..."."""
    return base58_encode(file_dag(data).multihash)


def file_dag(data: bytes | memoryview) -> DagNode:
    """Root of the UnixFS DAG for `data`, laid out like go-unixfs's balanced builder."""
    chunks = _Chunks(memoryview(data))
    if chunks.done:
        return _leaf(None)
    root = _leaf(chunks.next())
    depth = 1
    # A full tree becomes the first child of a tree one level deeper, which is then filled.
    while not chunks.done:
        root = _fill([root], depth, chunks)
        depth += 1
    return root


def canonical_cid(text: str) -> str:
    """The CIDv1 string naming the same content as `text` (a CIDv0 becomes its dag-pb CIDv1).

    Raises InvalidCid for anything else, so the result is safe to use as a file name.
    """
    if not 0 < len(text) <= _MAX_CID_LENGTH or not text.isascii():
        raise InvalidCid("not a CID")
    if text.startswith("Qm"):
        multihash = _parse_cid_v0(text)
        return format_cid_v1(DAG_PB, multihash)
    if text.startswith("b"):
        _parse_cid_v1(text)
        return text
    raise InvalidCid("a CID starts with 'b' (CIDv1, base32) or 'Qm' (CIDv0)")


def format_cid_v1(codec: int, multihash: bytes) -> str:
    raw = _varint(1) + _varint(codec) + multihash
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def base58_encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58[remainder])
    leading_zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        value = _BASE58.find(char)
        if value < 0:
            raise InvalidCid("not base58")
        number = number * 58 + value
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * leading_zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


class _Chunks:
    """Fixed-size chunks with one-chunk lookahead: the builder asks "done?" before taking the next."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._offset = 0

    @property
    def done(self) -> bool:
        return self._offset >= len(self._data)

    def next(self) -> memoryview:
        chunk = self._data[self._offset : self._offset + CHUNK_SIZE]
        self._offset += len(chunk)
        return chunk


def _fill(children: list[DagNode], depth: int, chunks: _Chunks) -> DagNode:
    while len(children) < MAX_LINKS and not chunks.done:
        children.append(_leaf(chunks.next()) if depth == 1 else _fill([], depth - 1, chunks))
    return _branch(children)


def _leaf(chunk: memoryview | None) -> DagNode:
    # The empty file's leaf has no Data field at all (go-unixfs leaves it nil); every other leaf has one.
    size = 0 if chunk is None else len(chunk)
    data_field = b"" if chunk is None else _tag(2, 2) + _varint(size)
    unixfs_head = _tag(1, 0) + _varint(_UNIXFS_FILE) + data_field
    unixfs_tail = _tag(3, 0) + _varint(size)
    unixfs_length = len(unixfs_head) + size + len(unixfs_tail)
    node_head = _tag(1, 2) + _varint(unixfs_length)
    # Hash the pieces in place rather than concatenating a copy of each 256 KiB chunk.
    digest = hashlib.sha256(node_head + unixfs_head)
    if chunk is not None:
        digest.update(chunk)
    digest.update(unixfs_tail)
    return DagNode(digest.digest(), len(node_head) + unixfs_length, size)


def _branch(children: list[DagNode]) -> DagNode:
    file_size = sum(child.file_size for child in children)
    # go-unixfs writes blocksizes one field per value, not packed.
    unixfs = (
        _tag(1, 0)
        + _varint(_UNIXFS_FILE)
        + _tag(3, 0)
        + _varint(file_size)
        + b"".join(_tag(4, 0) + _varint(child.file_size) for child in children)
    )
    # dag-pb puts Links (field 2) before Data (field 1); links carry an empty, but present, Name.
    links = b"".join(_bytes_field(2, _link(child)) for child in children)
    block = links + _bytes_field(1, unixfs)
    dag_size = len(block) + sum(child.dag_size for child in children)
    return DagNode(hashlib.sha256(block).digest(), dag_size, file_size)


def _link(child: DagNode) -> bytes:
    return _bytes_field(1, child.multihash) + _bytes_field(2, b"") + _tag(3, 0) + _varint(child.dag_size)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(position, min(len(raw), position + 9)):
        value |= (raw[index] & 0x7F) << shift
        shift += 7
        if not raw[index] & 0x80:
            return value, index + 1
    raise InvalidCid("bad varint")


def _parse_cid_v0(text: str) -> bytes:
    if len(text) != 46:
        raise InvalidCid("a CIDv0 is 46 characters")
    multihash = base58_decode(text)
    if len(multihash) != 34 or multihash[:2] != bytes([SHA2_256, 32]) or base58_encode(multihash) != text:
        raise InvalidCid("not a sha2-256 CIDv0")
    return multihash


def _parse_cid_v1(text: str) -> None:
    body = text[1:]
    if not body or not set(body) <= _BASE32_LOWER:
        raise InvalidCid("a CIDv1 here is lower-case base32")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except binascii.Error as exc:
        raise InvalidCid("not base32") from exc
    version, position = _read_varint(raw, 0)
    codec, position = _read_varint(raw, position)
    hash_code, position = _read_varint(raw, position)
    digest_length, position = _read_varint(raw, position)
    if version != 1 or len(raw) - position != digest_length or digest_length == 0:
        raise InvalidCid("not a CIDv1")
    multihash = _varint(hash_code) + _varint(digest_length) + raw[position:]
    # Re-encoding must give the text back: no over-long varints, no stray bits in the last base32 digit.
    if format_cid_v1(codec, multihash) != text:
        raise InvalidCid("not a canonical CIDv1")
