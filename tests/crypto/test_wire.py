from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.crypto import (
    ciphertext_width,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
)
from fedlearn.errors import InvalidPeerData

N = (2**127 - 1) * (2**89 - 1)
WIDTH = ciphertext_width(N)


def test_width_is_byte_length_of_n_square() -> None:
    assert ((N * N).bit_length() + 7) // 8 == WIDTH


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=1, max_value=N * N - 1), max_size=10))
def test_ciphertexts_round_trip(values: list[int]) -> None:
    data = ciphertexts_to_bytes(values, N)
    assert len(data) == WIDTH * len(values)
    assert ciphertexts_from_bytes(data, N, expected_count=len(values)) == values


@pytest.mark.parametrize("bad", [0, N * N, 2 ** (8 * WIDTH) - 1])
def test_out_of_range_ciphertext_refused(bad: int) -> None:
    data = ciphertexts_to_bytes([5], N) + bad.to_bytes(WIDTH, "big")
    with pytest.raises(InvalidPeerData, match=r"ciphertext 1 of 2 .*\[1, n\^2\)"):
        ciphertexts_from_bytes(data, N)


def test_wrong_length_and_count_refused() -> None:
    data = ciphertexts_to_bytes([5, 6], N)
    with pytest.raises(InvalidPeerData, match="not a whole number"):
        ciphertexts_from_bytes(data[:-1], N)
    with pytest.raises(InvalidPeerData, match="expected 3 ciphertexts, got 2"):
        ciphertexts_from_bytes(data, N, expected_count=3)


def test_sending_an_invalid_ciphertext_is_a_local_error() -> None:
    with pytest.raises(ValueError):
        ciphertexts_to_bytes([0], N)


def test_ints_round_trip_and_bound() -> None:
    data = ints_to_bytes([0, 1, 2**80], 11)
    assert ints_from_bytes(data, 11, expected_count=3, bound=2**81) == [0, 1, 2**80]
    with pytest.raises(InvalidPeerData, match="beyond"):
        ints_from_bytes(data, 11, bound=2**80)
    with pytest.raises(InvalidPeerData, match="expected 2"):
        ints_from_bytes(data, 11, expected_count=2)
    with pytest.raises(ValueError):
        ints_to_bytes([2**88], 11)
    with pytest.raises(ValueError):
        ints_to_bytes([-1], 11)


def test_a_ciphertext_sharing_a_factor_with_n_is_refused() -> None:
    """gcd(c, n) != 1 is no honest ciphertext; one gcd per batch finds it, the index is named."""
    p, q = 1_000_003, 1_000_033
    n = p * q
    width = ciphertext_width(n)
    good = [2, 3, 5, n * n - 2]
    assert ciphertexts_from_bytes(ciphertexts_to_bytes(good, n), n) == good
    for bad in (p, 7 * q, p * q * 11):
        data = ciphertexts_to_bytes([2, 3, bad, 5], n)
        assert len(data) == 4 * width
        with pytest.raises(InvalidPeerData, match="ciphertext 2 of 4 shares a factor with n"):
            ciphertexts_from_bytes(data, n)


def test_a_batch_knows_its_key_and_refuses_another() -> None:
    from fedlearn.crypto.keys import generate_keypair, key_fingerprint
    from fedlearn.crypto.wire import keyed_ciphertexts_from_bytes

    mine, other = generate_keypair(256).public_key, generate_keypair(256).public_key
    data = ciphertexts_to_bytes([2, 3], mine.n)
    batch = keyed_ciphertexts_from_bytes(data, mine, expected_count=2)
    assert batch.key == key_fingerprint(mine) and batch.under(mine) == [2, 3]
    with pytest.raises(InvalidPeerData, match="does not match the session's key"):
        batch.under(other)
