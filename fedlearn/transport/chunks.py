"""Split a payload larger than one gRPC message into chunks, and join them back, with limits.

A payload is a run of fixed-width items (ciphertexts as ``width``-byte big-endian integers, hashed
IDs, ...). Chunks split only on item boundaries, so the receiver can decode each chunk on its own as
it arrives. ``join_chunks`` is the receiving side: it refuses a stream that grows past the size the
receiver expects, before buffering it, so a broken or hostile peer cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fedlearn.errors import InvalidPeerData
from fedlearn.transport.options import CHUNK_BYTES, MAX_MESSAGE_BYTES


def chunk_payload(
    payload: bytes, *, item_width: int = 1, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield consecutive slices of ``payload`` of at most ``chunk_bytes`` bytes each, every one a
    whole number of ``item_width``-byte items. An empty payload yields nothing.

    Raises ``ValueError`` (a caller's bug, not a peer's) when ``item_width`` is not positive, the
    payload is not a whole number of items, or one item does not fit in ``chunk_bytes`` or in a
    gRPC message.
    """
    if item_width < 1:
        raise ValueError(f"item_width must be positive, got {item_width}")
    if len(payload) % item_width:
        raise ValueError(
            f"payload of {len(payload)} bytes is not a whole number of {item_width}-byte items"
        )
    if not item_width <= chunk_bytes <= MAX_MESSAGE_BYTES:
        raise ValueError(
            f"chunk_bytes must lie between item_width ({item_width}) and MAX_MESSAGE_BYTES "
            f"({MAX_MESSAGE_BYTES}), got {chunk_bytes}"
        )
    step = chunk_bytes - chunk_bytes % item_width
    view = memoryview(payload)
    for start in range(0, len(payload), step):
        yield bytes(view[start : start + step])


def join_chunks(
    chunks: Iterable[bytes],
    *,
    max_total_bytes: int,
    item_width: int = 1,
    expected_bytes: int | None = None,
) -> bytes:
    """Concatenate received ``chunks`` into one payload.

    Raises ``InvalidPeerData`` when the total would exceed ``max_total_bytes`` (checked before the
    chunk is kept), when a chunk is not a whole number of ``item_width``-byte items, or when the
    total differs from ``expected_bytes`` (when given). Iterating ``chunks`` may raise what the
    underlying stream raises.
    """
    if max_total_bytes < 0:
        raise ValueError(f"max_total_bytes must not be negative, got {max_total_bytes}")
    parts: list[bytes] = []
    total = 0
    for index, chunk in enumerate(chunks):
        if len(chunk) % item_width:
            raise InvalidPeerData(
                f"chunk {index} has {len(chunk)} bytes, not a whole number of "
                f"{item_width}-byte items"
            )
        total += len(chunk)
        if total > max_total_bytes:
            raise InvalidPeerData(
                f"the peer streamed more than {max_total_bytes} bytes (at least {total} by chunk "
                f"{index}); the most this step accepts is {max_total_bytes}"
            )
        parts.append(bytes(chunk))
    if expected_bytes is not None and total != expected_bytes:
        raise InvalidPeerData(
            f"the peer streamed {total} bytes, but {expected_bytes} were announced"
        )
    return b"".join(parts)
