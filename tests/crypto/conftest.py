"""Shared fixtures: deterministic small keys (seeded primes), so every run sees the same numbers."""

from __future__ import annotations

import random
from collections.abc import Iterator

import gmpy2
import pytest
from phe import paillier

from fedlearn.crypto import KeyPair, OwnKeyEngine, PeerKeyEngine


def seeded_keypair(n_bits: int, seed: int) -> KeyPair:
    """A key pair whose primes come from ``random.Random(seed)``: reproducible, for tests only."""
    rng = random.Random(seed)
    while True:
        p = int(gmpy2.next_prime(rng.getrandbits(n_bits // 2) | (1 << (n_bits // 2 - 1))))
        q = int(gmpy2.next_prime(rng.getrandbits(n_bits // 2) | (1 << (n_bits // 2 - 1))))
        if p != q and (p * q).bit_length() == n_bits:
            break
    public_key = paillier.PaillierPublicKey(p * q)
    return KeyPair(public_key, paillier.PaillierPrivateKey(public_key, p, q))


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    return seeded_keypair(1024, seed=6)


@pytest.fixture(scope="session")
def small_keypair() -> KeyPair:
    return seeded_keypair(512, seed=7)


@pytest.fixture(scope="session")
def engine(keypair: KeyPair) -> Iterator[OwnKeyEngine]:
    own = OwnKeyEngine(keypair)
    yield own
    own.close()


@pytest.fixture(scope="session")
def peer(keypair: KeyPair, engine: OwnKeyEngine) -> PeerKeyEngine:
    return PeerKeyEngine(keypair.public_key, djn_base=engine.djn_base)
