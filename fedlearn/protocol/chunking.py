"""Splitting a message with large ``bytes`` fields into a stream of messages, and joining it back.

A bulk field (ciphertexts, PSI points, scores) can be larger than one gRPC message. A message is sent
as a stream: the first message carries every scalar field and the first slice of the first bulk
field; later messages carry only further slices, bulk field after bulk field, in order. The receiver
concatenates each bulk field and takes scalar fields from the first message only, and refuses a
stream whose total size passes ``max_total_bytes`` before buffering it.

This is the one chunker: the gRPC client (``party_a.peer_client``) and servicer (``party_b.servicer``)
stream every large message through ``split`` and ``join``; ``tests/protocol/test_chunking.py`` checks
the round trip property-based.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from fedlearn.errors import InvalidPeerData
from fedlearn.transport.options import MAX_MESSAGE_BYTES

T = TypeVar("T")

#: The most bytes one streamed message may add up to (1M PSI points are 32 MiB).
MAX_STREAM_BYTES = 1 << 30


def bulk_fields(message_type: type) -> tuple[str, ...]:
    """The ``bytes`` fields of a message dataclass, in declaration order."""
    return tuple(
        spec.name for spec in dataclasses.fields(message_type) if spec.type in ("bytes", bytes)
    )


def slices(payload: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """Consecutive slices of ``payload`` of at most ``chunk_bytes`` bytes; none for empty bytes."""
    view = memoryview(payload)
    for start in range(0, len(payload), chunk_bytes):
        yield bytes(view[start : start + chunk_bytes])


def split(message: Any, *, chunk_bytes: int) -> Iterator[Any]:
    """Yield the stream of messages that carries ``message`` (at least one message).

    Each message of the stream carries at most ``chunk_bytes`` bytes of bulk fields. Raises
    ``ValueError`` (a caller's bug) when ``chunk_bytes`` is not in [1, MAX_MESSAGE_BYTES].
    """
    if not 1 <= chunk_bytes <= MAX_MESSAGE_BYTES:
        raise ValueError(
            f"chunk_bytes must lie between 1 and MAX_MESSAGE_BYTES ({MAX_MESSAGE_BYTES}), "
            f"got {chunk_bytes}"
        )
    fields = bulk_fields(type(message))
    empty = {name: b"" for name in fields}
    first = True
    for name in fields:
        for piece in slices(getattr(message, name), chunk_bytes):
            if first:
                yield dataclasses.replace(message, **{**empty, name: piece})
                first = False
            else:
                yield type(message)(**{name: piece})
    if first:
        yield message


def join(
    messages: Iterable[Any], message_type: type[T], *, max_total_bytes: int = MAX_STREAM_BYTES
) -> T:
    """The one message a stream carried; InvalidPeerData for an empty or oversized stream."""
    fields = bulk_fields(message_type)
    parts: dict[str, list[bytes]] = {name: [] for name in fields}
    head: Any = None
    total = 0
    for message in messages:
        if head is None:
            head = message
        for name in fields:
            piece = getattr(message, name)
            total += len(piece)
            if total > max_total_bytes:
                raise InvalidPeerData(
                    f"{message_type.__name__}: the stream exceeds {max_total_bytes} bytes"
                )
            if piece:
                parts[name].append(piece)
    if head is None:
        raise InvalidPeerData(f"{message_type.__name__}: the stream carried no message")
    return dataclasses.replace(head, **{name: b"".join(parts[name]) for name in fields})
