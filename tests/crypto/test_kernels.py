"""Peer-key kernels (mat-vec, dot, add_plain, re-randomisation, packing) against plain integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.crypto import (
    FixedPointCodec,
    PeerKeyEngine,
    ProcessExecutor,
    packing_layout,
    unmask,
    unpack,
)
from fedlearn.crypto.matvec import bucket_window, signed_digits
from fedlearn.errors import EncodingOverflow, InvalidPeerData

LIMIT = 2**15 - 1  # quantisation bound of features: |x| < 2**15


@pytest.fixture(scope="module")
def codec(keypair) -> FixedPointCodec:
    return FixedPointCodec(keypair.public_key.n)


@pytest.fixture(scope="module")
def residuals(engine, codec):
    """40 encrypted signed residuals, including 0 and the extremes of a 40-bit range."""
    rng = np.random.default_rng(11)
    plain = [0, 2**40 - 1, -(2**40) + 1, 1, -1, *rng.integers(-(2**40), 2**40, 35).tolist()]
    return plain, engine.encrypt(codec.encode_int(plain))


def _decrypt_signed(engine, codec, ciphertexts) -> list[int]:
    return codec.decode_int(engine.decrypt(ciphertexts), bound=codec.max_int // 2)


def _expected(x: np.ndarray, plain: list[int]) -> list[int]:
    return [sum(int(a) * b for a, b in zip(column, plain, strict=True)) for column in x.T]


def test_matvec_equals_plaintext_on_mixed_columns(engine, peer, codec, residuals) -> None:
    plain, ciphertexts = residuals
    rng = np.random.default_rng(12)
    s = len(plain)
    x = np.column_stack(
        [
            np.zeros(s),  # zero column
            np.ones(s),  # all-one column
            rng.integers(0, 2, s),  # binary
            np.eye(3)[rng.integers(0, 3, s)][:, 0],  # one-hot member
            rng.integers(-1, 2, s),  # ternary
            rng.integers(-128, 128, s),  # 8-bit
            rng.integers(-LIMIT, LIMIT + 1, s),  # 16-bit
            np.full(s, LIMIT),  # at the quantisation bound
            np.full(s, -LIMIT),
            np.where(rng.random(s) < 0.9, 0, rng.integers(-LIMIT, LIMIT + 1, s)),  # sparse
        ]
    ).astype(np.int32)
    result = peer.matvec_t(x, ciphertexts)
    assert len(result) == x.shape[1]
    assert _decrypt_signed(engine, codec, result) == _expected(x, plain)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hnp.arrays(
        np.int16,
        st.tuples(st.integers(1, 40), st.integers(1, 4)),
        elements=st.integers(-LIMIT, LIMIT),
    )
)
def test_matvec_property(engine, peer, codec, residuals, x) -> None:
    plain, ciphertexts = residuals
    rows = x.shape[0]
    result = peer.matvec_t(x, ciphertexts[:rows])
    assert _decrypt_signed(engine, codec, result) == _expected(x, plain[:rows])


@settings(max_examples=300)
@given(st.integers(-(2**300), 2**300), st.integers(1, 16))
def test_signed_digits_reconstruct_the_coefficient(coefficient: int, window: int) -> None:
    digits = signed_digits(coefficient, window)
    assert sum(d << (window * k) for k, d in enumerate(digits)) == coefficient
    assert all(abs(d) <= 2 ** (window - 1) for d in digits)


def test_bucket_window_grows_with_the_batch() -> None:
    assert bucket_window(8, 16) < bucket_window(1024, 16) <= bucket_window(100_000, 16)
    assert bucket_window(1024, 1) == 1


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(-(2**200), 2**200), min_size=1, max_size=40))
def test_dot_with_large_signed_coefficients(engine, peer, codec, residuals, coeffs) -> None:
    plain, ciphertexts = residuals
    count = len(coeffs)
    result = peer.dot(coeffs, ciphertexts[:count])
    expected = sum(c * m for c, m in zip(coeffs, plain[:count], strict=True))
    assert _decrypt_signed(engine, codec, [result]) == [expected]


def test_add_plain(engine, peer, codec, residuals) -> None:
    plain, ciphertexts = residuals
    offsets = list(range(-20, 20))
    result = peer.add_plain(ciphertexts, codec.encode_int(offsets))
    assert _decrypt_signed(engine, codec, result) == [
        a + b for a, b in zip(plain, offsets, strict=True)
    ]


@pytest.mark.parametrize("use_djn", [True, False])
def test_rerandomize_keeps_plaintext_and_changes_ciphertext(
    engine, keypair, codec, residuals, use_djn
) -> None:
    plain, ciphertexts = residuals
    peer = PeerKeyEngine(keypair.public_key, djn_base=engine.djn_base if use_djn else None)
    fresh = peer.rerandomize(ciphertexts[:10])
    assert all(a != b for a, b in zip(fresh, ciphertexts[:10], strict=True))
    assert _decrypt_signed(engine, codec, fresh) == plain[:10]


def test_pack_masked_round_trip(engine, peer, codec, residuals) -> None:
    plain, ciphertexts = residuals
    x = np.random.default_rng(13).integers(-LIMIT, LIMIT + 1, (len(plain), 23)).astype(np.int16)
    gradient = _expected(x, plain)
    bound_bits = max(abs(g) for g in gradient).bit_length() + 1
    layout = packing_layout(int(peer.n), value_bound_bits=bound_bits)
    encrypted_gradient = peer.matvec_t(x, ciphertexts)
    packed, masks = peer.pack_masked(encrypted_gradient, layout)
    assert len(packed) == layout.ciphertext_count(23) < 23
    masked = unpack(engine.decrypt(packed), layout, 23)
    assert masked != gradient
    assert unmask(masked, masks, layout) == gradient


def test_pack_masked_detects_a_too_small_bound(engine, peer, codec, residuals) -> None:
    _, ciphertexts = residuals
    layout = packing_layout(int(peer.n), value_bound_bits=30)
    packed, masks = peer.pack_masked(ciphertexts[1:3], layout)  # |values| ~ 2**40 > 2**30
    with pytest.raises(EncodingOverflow):
        unmask(unpack(engine.decrypt(packed), layout, 2), masks, layout)


def test_malformed_inputs_refused(peer, residuals, keypair) -> None:
    _, ciphertexts = residuals
    with pytest.raises(InvalidPeerData):
        peer.matvec_t(np.ones((1, 1), np.int8), [0])
    with pytest.raises(InvalidPeerData):
        peer.rerandomize([keypair.public_key.nsquare])
    with pytest.raises(ValueError, match="rows"):
        peer.matvec_t(np.ones((3, 1), np.int8), ciphertexts[:2])
    with pytest.raises(ValueError, match="2\\*\\*15"):
        peer.matvec_t(np.full((2, 1), 2**15, np.int32), ciphertexts[:2])
    with pytest.raises(ValueError, match="integer"):
        peer.matvec_t(np.ones((2, 1)), ciphertexts[:2])
    with pytest.raises(InvalidPeerData, match="DJN base"):
        PeerKeyEngine(keypair.public_key, djn_base=keypair.public_key.n)


def test_process_executor_matches_serial(engine, keypair, codec, residuals) -> None:
    plain, ciphertexts = residuals
    x = np.random.default_rng(14).integers(-128, 128, (len(plain), 5)).astype(np.int8)
    with ProcessExecutor(2) as executor:
        parallel = PeerKeyEngine(keypair.public_key, djn_base=None, executor=executor)
        result = parallel.matvec_t(x, ciphertexts)
    assert _decrypt_signed(engine, codec, result) == _expected(x, plain)
