from __future__ import annotations

import pytest
from phe import paillier

from fedlearn.crypto import (
    check_fingerprint,
    generate_keypair,
    key_fingerprint,
    public_key_from_bytes,
    public_key_to_bytes,
)
from fedlearn.crypto.keys import check_djn_base
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.errors import InvalidPeerData

from .conftest import seeded_keypair


def test_generated_key_has_requested_size_and_phe_classes() -> None:
    keypair = generate_keypair(512)
    assert keypair.public_key.n.bit_length() == 512
    assert isinstance(keypair.private_key, paillier.PaillierPrivateKey)
    assert keypair.private_key.p * keypair.private_key.q == keypair.public_key.n


def test_public_key_round_trips_through_bytes(keypair) -> None:
    data = public_key_to_bytes(keypair.public_key)
    assert len(data) == 128
    assert public_key_from_bytes(data, min_bits=1024) == keypair.public_key


def test_fingerprint_is_stable_and_distinguishes_keys(keypair, small_keypair) -> None:
    fingerprint = key_fingerprint(keypair.public_key)
    assert len(fingerprint) == 32
    assert fingerprint == key_fingerprint(paillier.PaillierPublicKey(keypair.public_key.n))
    assert fingerprint != key_fingerprint(small_keypair.public_key)
    check_fingerprint(keypair.public_key, fingerprint)
    with pytest.raises(InvalidPeerData, match="fingerprint"):
        check_fingerprint(small_keypair.public_key, fingerprint)


def test_small_key_refused(small_keypair) -> None:
    with pytest.raises(InvalidPeerData, match="512 bits, but at least 2048"):
        public_key_from_bytes(public_key_to_bytes(small_keypair.public_key), min_bits=2048)


@pytest.mark.parametrize(
    ("modulus", "message"),
    [
        (seeded_keypair(512, 1).public_key.n * 2, "even"),
        (seeded_keypair(512, 1).public_key.n * 3, "factor below 1000"),
        (seeded_keypair(512, 1).private_key.p ** 2, "perfect square"),
        (2**521 - 1, "prime"),
    ],
)
def test_non_paillier_moduli_refused(modulus: int, message: str) -> None:
    data = modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")
    with pytest.raises(InvalidPeerData, match=message):
        public_key_from_bytes(data, min_bits=256)


def test_non_minimal_encoding_refused(keypair) -> None:
    with pytest.raises(InvalidPeerData, match="leading zero"):
        public_key_from_bytes(b"\x00" + public_key_to_bytes(keypair.public_key), min_bits=256)
    with pytest.raises(InvalidPeerData, match="empty"):
        public_key_from_bytes(b"", min_bits=256)


def test_djn_base_of_small_order_or_not_a_unit_is_refused() -> None:
    keypair = generate_keypair(512)
    n = int(keypair.public_key.n)
    p = int(keypair.private_key.p)
    honest = OwnKeyEngine(keypair).djn_base
    assert honest is not None
    check_djn_base(honest, n)
    for bad in (1, 0, n * n, n * n - 1, p):
        with pytest.raises(InvalidPeerData, match="DJN base"):
            check_djn_base(bad, n)
    # An element of order 2 other than -1: +-1 mod p^2 and -+1 mod q^2, joined by CRT.
    q = int(keypair.private_key.q)
    minus_mod_q2 = (q * q - 1) * p * p * pow(p * p, -1, q * q) + q * q * pow(q * q, -1, p * p)
    with pytest.raises(InvalidPeerData, match="small order"):
        check_djn_base(minus_mod_q2 % (n * n), n)
