"""Chunking: splits on item boundaries, joins back, and refuses what it should."""

from __future__ import annotations

import random

import pytest

from fedlearn.errors import InvalidPeerData
from fedlearn.transport import CHUNK_BYTES, MAX_MESSAGE_BYTES, chunk_payload, join_chunks


def test_chunk_size_is_under_the_message_limit() -> None:
    assert 0 < CHUNK_BYTES < MAX_MESSAGE_BYTES


@pytest.mark.parametrize("item_width", [1, 7, 256, 512])
@pytest.mark.parametrize("items", [0, 1, 2, 99, 1000])
def test_round_trip_on_item_boundaries(item_width: int, items: int) -> None:
    payload = random.Random(item_width * 1000 + items).randbytes(item_width * items)
    chunk_bytes = 3 * item_width + item_width // 2  # not a multiple of the item width
    chunks = list(chunk_payload(payload, item_width=item_width, chunk_bytes=chunk_bytes))
    assert all(0 < len(c) <= chunk_bytes and len(c) % item_width == 0 for c in chunks)
    assert all(len(c) == 3 * item_width for c in chunks[:-1])
    assert join_chunks(chunks, max_total_bytes=len(payload), item_width=item_width) == payload
    assert len(chunks) == -(-items // 3)


def test_default_chunks_of_a_large_payload() -> None:
    payload = bytes(5 * CHUNK_BYTES // 2)
    chunks = list(chunk_payload(payload, item_width=512))
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES // 2]


@pytest.mark.parametrize(
    ("payload", "kwargs", "message"),
    [
        (b"abc", {"item_width": 2}, "not a whole number of 2-byte items"),
        (b"ab", {"item_width": 0}, "item_width must be positive"),
        (b"abcd", {"item_width": 4, "chunk_bytes": 3}, "chunk_bytes must lie between"),
        (b"ab", {"chunk_bytes": MAX_MESSAGE_BYTES + 1}, "chunk_bytes must lie between"),
    ],
)
def test_chunk_payload_rejects_caller_mistakes(payload: bytes, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(chunk_payload(payload, **kwargs))


def test_join_refuses_an_absurd_total_before_buffering_it() -> None:
    taken = []

    def endless():
        while True:
            taken.append(1)
            yield bytes(1024)

    with pytest.raises(InvalidPeerData, match="more than 10000 bytes"):
        join_chunks(endless(), max_total_bytes=10_000)
    assert len(taken) == 10  # stopped at the first chunk past the limit


def test_join_refuses_a_chunk_that_splits_an_item() -> None:
    with pytest.raises(InvalidPeerData, match="chunk 1 has 5 bytes, not a whole number of 4-byte"):
        join_chunks([b"abcd", b"efghi"], max_total_bytes=100, item_width=4)


def test_join_checks_the_announced_size() -> None:
    assert join_chunks([b"ab", b"cd"], max_total_bytes=4, expected_bytes=4) == b"abcd"
    with pytest.raises(InvalidPeerData, match="streamed 4 bytes, but 6 were announced"):
        join_chunks([b"ab", b"cd"], max_total_bytes=100, expected_bytes=6)
