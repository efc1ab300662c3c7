from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.crypto import FixedPointCodec
from fedlearn.errors import EncodingOverflow

N = (2**127 - 1) * (2**89 - 1)  # odd modulus, no crypto needed for the codec
codec = FixedPointCodec(N)


def test_negatives_are_n_minus_magnitude() -> None:
    assert codec.encode_int([-1, 0, 5]) == [N - 1, 0, 5]
    assert codec.encode_int(np.array([-(2**16), 2**15])) == [N - 2**16, 2**15]


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=-(2**100) + 1, max_value=2**100 - 1), max_size=20))
def test_int_round_trip(values: list[int]) -> None:
    assert codec.decode_int(codec.encode_int(values), bound=2**100) == values


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=2**60), st.integers(min_value=0, max_value=2**61))
def test_overflow_detected_never_silent(bound: int, magnitude: int) -> None:
    for value in (magnitude, -magnitude):
        residues = codec.encode_int([value])
        if magnitude < bound:
            assert codec.decode_int(residues, bound=bound) == [value]
        else:
            with pytest.raises(EncodingOverflow):
                codec.decode_int(residues, bound=bound)


def test_homomorphic_sum_beyond_bound_is_detected() -> None:
    # three terms of 2**199 under a 200-bit bound: the sum no longer fits, decoding must say so
    residues = codec.encode_int([2**199] * 3)
    total = sum(residues) % N
    with pytest.raises(EncodingOverflow, match="overflowed"):
        codec.decode_int([total], bound=2**200)
    # a sum past n/2 wraps to a huge negative residue, which is also outside the bound
    wrapped = (codec.encode_int([codec.max_int])[0] + 2**201) % N
    with pytest.raises(EncodingOverflow):
        codec.decode_int([wrapped], bound=2**200)


def test_encode_refuses_values_the_modulus_cannot_hold() -> None:
    with pytest.raises(EncodingOverflow, match="bits"):
        codec.encode_int([N // 2 + 1])
    with pytest.raises(EncodingOverflow):
        codec.encode_int([-(N // 2) - 1])


def test_bad_bound_and_residue_rejected() -> None:
    with pytest.raises(ValueError, match="bound"):
        codec.decode_int([1], bound=N)
    with pytest.raises(ValueError, match="outside"):
        codec.decode_int([N], bound=10)
