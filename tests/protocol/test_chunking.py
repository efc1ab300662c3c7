"""The one chunker (fedlearn.protocol.chunking): split then join gives back the message, property-based."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.errors import InvalidPeerData
from fedlearn.protocol import chunking, wire
from fedlearn.protocol import messages as m
from fedlearn.transport import CHUNK_BYTES, MAX_MESSAGE_BYTES

payloads = st.binary(max_size=2000)
chunk_sizes = st.integers(min_value=1, max_value=700)


@st.composite
def forward_requests(draw: st.DrawFn) -> m.BatchForwardRequest:
    header = m.BatchHeader(
        draw(st.text(max_size=40)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
    )
    return m.BatchForwardRequest(header, draw(payloads), draw(payloads))


@settings(max_examples=200, deadline=None)
@given(message=forward_requests(), chunk_bytes=chunk_sizes)
def test_split_then_join_is_the_message(message: m.BatchForwardRequest, chunk_bytes: int) -> None:
    parts = list(chunking.split(message, chunk_bytes=chunk_bytes))
    assert parts, "a stream carries at least one message"
    for part in parts:
        assert len(part.ciphertexts) + len(part.slopes) <= chunk_bytes
    # Scalars only in the first message: the others carry default headers.
    assert all(p.header == m.BatchHeader() for p in parts[1:])
    assert chunking.join(parts, m.BatchForwardRequest) == message
    # And through the protobuf encoding, as over gRPC.
    received = [wire.from_proto(wire.to_proto(p), m.BatchForwardRequest) for p in parts]
    assert chunking.join(received, m.BatchForwardRequest) == message


@settings(max_examples=100, deadline=None)
@given(scores=payloads, chunk_bytes=chunk_sizes)
def test_one_bulk_field_round_trip(scores: bytes, chunk_bytes: int) -> None:
    message = m.PartialScoresResponse(scores=scores)
    parts = list(chunking.split(message, chunk_bytes=chunk_bytes))
    assert len(parts) == max(1, -(-len(scores) // chunk_bytes))
    assert chunking.join(iter(parts), m.PartialScoresResponse) == message


def test_bulk_fields_are_the_bytes_fields_in_order() -> None:
    assert chunking.bulk_fields(m.BatchForwardRequest) == ("ciphertexts", "slopes", "curvatures")
    assert chunking.bulk_fields(m.BatchUpdateResponse) == ()


def test_join_refuses_an_oversized_stream_before_buffering_it() -> None:
    taken = []

    def endless():
        while True:
            taken.append(1)
            yield m.PsiBlindRequest(session_id="s", points=bytes(1024))

    with pytest.raises(InvalidPeerData, match="exceeds 10000 bytes"):
        chunking.join(endless(), m.PsiBlindRequest, max_total_bytes=10_000)
    assert len(taken) == 10  # stopped at the first message past the limit


def test_join_refuses_an_empty_stream() -> None:
    with pytest.raises(InvalidPeerData, match="carried no message"):
        chunking.join([], m.PsiBlindRequest)


def test_scalars_come_from_the_first_message_only() -> None:
    parts = [m.PsiBlindRequest("first", b"ab"), m.PsiBlindRequest("second", b"cd")]
    assert chunking.join(parts, m.PsiBlindRequest) == m.PsiBlindRequest("first", b"abcd")


@pytest.mark.parametrize("chunk_bytes", [0, -1, MAX_MESSAGE_BYTES + 1])
def test_split_refuses_a_chunk_size_outside_the_message_limit(chunk_bytes: int) -> None:
    with pytest.raises(ValueError, match="chunk_bytes must lie between"):
        list(chunking.split(m.PsiBlindRequest("s", b"ab"), chunk_bytes=chunk_bytes))


def test_default_chunk_size_is_under_the_message_limit() -> None:
    assert 0 < CHUNK_BYTES < MAX_MESSAGE_BYTES
    message = m.PsiResultResponse(intersection_size=3, points=bytes(5 * CHUNK_BYTES // 2))
    parts = list(chunking.split(message, chunk_bytes=CHUNK_BYTES))
    assert [len(p.points) for p in parts] == [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES // 2]
    assert chunking.join(parts, m.PsiResultResponse) == message
