"""Issue 11 item 4: re-randomisation must not trust the key holder's DJN base, even one that passes.

A dishonest A makes its key with p - 1 = 2 Q (small primes) and q - 1 = 2 (small primes), Q a prime
above 4096, so discrete logarithms mod n are easy for it, and publishes h_s = h^n with h of order Q:
``check_djn_base`` accepts it (its order does not divide lcm(1..4096)). A encrypts its residual terms
with randomness 1 except row t of the batch, randomness 2. Then the randomness of each packed
gradient ciphertext B returns is 2^E times whatever B re-randomised with, where E holds B's quantised
features of row t in base 2^slot_bits. With the peer's base, raising to Q removes B's part and a
discrete logarithm gives E: all of row t. With r^n and B's own r, what A extracts is noise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2
import pytest
from phe import paillier

from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.matvec import FixedBaseTable, random_digits
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes
from fedlearn.protocol import messages as m
from fedlearn.protocol.train_b import TrainingB
from tests.adversary.harness import ASession, close, open_a_session, plain

SMALL_PRIMES = [int(p) for p in range(3, 4096) if gmpy2.is_prime(p)]
RNG = random.Random(11)  # the attacker's choices, seeded (B's randomness is its own)
Q = 40_009  # prime, above 4096


def _smooth_prime(bits: int, extra: int, avoid: set[int]) -> tuple[int, dict[int, int]]:
    """A prime p = 2 * extra * (small primes) + 1 of about ``bits`` bits, with p - 1 factored."""
    while True:
        factors = {2: 1}
        if extra > 1:
            factors[extra] = 1
        value = 2 * extra
        while value.bit_length() < bits - 12:
            prime = RNG.choice(SMALL_PRIMES)
            if prime in avoid:
                continue
            factors[prime] = factors.get(prime, 0) + 1
            value *= prime
        for prime in SMALL_PRIMES:
            if prime in avoid or prime in factors:
                continue
            if (value * prime + 1).bit_length() >= bits and gmpy2.is_prime(value * prime + 1):
                factors[prime] = 1
                return value * prime + 1, factors


def _order(g: int, p: int, factors: dict[int, int]) -> tuple[int, dict[int, int]]:
    order, left = p - 1, dict(factors)
    for prime in factors:
        while left[prime] and pow(g, order // prime, p) == 1:
            order //= prime
            left[prime] -= 1
    return order, {f: e for f, e in left.items() if e}


def _dlog(g: int, y: int, p: int, factors: dict[int, int]) -> tuple[int, int]:
    """x with g^x = y mod p by Pohlig-Hellman over the smooth order of g: (x, order)."""
    order, order_factors = _order(g, p, factors)
    x_total, modulus = 0, 1
    for prime, exponent in order_factors.items():
        power = prime**exponent
        g_i, y_i = pow(g, order // power, p), pow(y, order // power, p)
        gamma = pow(g_i, prime ** (exponent - 1), p)
        table = {pow(gamma, d, p): d for d in range(prime)}
        x = 0
        for k in range(exponent):
            h = pow(pow(g_i, -x, p) * y_i % p, prime ** (exponent - 1 - k), p)
            x += table[h] * prime**k
        # CRT with what we have so far (coprime prime powers).
        x_total += modulus * ((x - x_total) * pow(modulus, -1, power) % power)
        modulus *= power
    return x_total % modulus, modulus


def _crt(a: int, m: int, b: int, n: int) -> tuple[int, int]:
    """x = a mod m and b mod n; KeyError when they disagree (no single exponent: noise)."""
    g = int(gmpy2.gcd(m, n))
    if (b - a) % g:
        raise KeyError("inconsistent")
    lcm = m // g * n
    k = (b - a) // g * pow(m // g, -1, n // g) % (n // g)
    return (a + m * k) % lcm, lcm


@dataclass(frozen=True)
class AttackerKey:
    """The attacker's key pair and its primes with p - 1 and q - 1 factored (phe may swap p, q)."""

    keypair: KeyPair
    p: int
    q: int
    p_factors: dict[int, int]
    q_factors: dict[int, int]


def _attacker_key() -> AttackerKey:
    """A 512-bit key whose p - 1 and q - 1 are smooth but for Q (their only common factor: 2)."""
    while True:
        p, fp = _smooth_prime(256, Q, set())
        q, fq = _smooth_prime(256, 1, set(fp) - {2})
        if (p * q).bit_length() == 512:
            break
    public = paillier.PaillierPublicKey(p * q)
    keypair = KeyPair(public, paillier.PaillierPrivateKey(public, p, q))
    return AttackerKey(keypair, p, q, fp, fq)


def _base_of_order_q(key: AttackerKey) -> int:
    p, q = key.p, key.q
    n = p * q
    while True:
        h_p = pow(RNG.randrange(2, p), (p - 1) // Q, p)
        if h_p != 1:
            break
    h = h_p + p * ((1 - h_p) * pow(p, -1, q) % q)  # h = h_p mod p, 1 mod q: order Q
    return pow(h, n, n * n)


def _signed_digits(value: int, width: int, count: int) -> list[int]:
    digits = []
    for _ in range(count):
        digit = value & ((1 << width) - 1)
        digit = digit - (1 << width) if digit >= 1 << (width - 1) else digit
        digits.append(digit)
        value = (value - digit) >> width
    return digits[::-1]


def _attack(session: ASession, key: AttackerKey) -> tuple[int, int]:
    """(B's feature values of row t that A read exactly, values in the row)."""
    p, q, fp, fq = key.p, key.q, key.p_factors, key.q_factors
    n = p * q
    nsquare = n * n
    rows = session.batch_rows(0, 0)
    s, t = len(rows), 0
    # alpha = beta = 0 for every row (any value would do); randomness 1, and 2 for row t.
    alpha = [plain(0, n) for _ in range(s)]
    alpha[t] = gmpy2.mpz(pow(2, n, nsquare))
    beta = [plain(0, n) for _ in range(s)]
    header = m.BatchHeader(session.session_id, 0, 0)
    session.peer.batch_forward(
        m.BatchForwardRequest(
            header,
            ciphertexts_to_bytes(alpha, n),
            ciphertexts_to_bytes(beta, n),
            curvatures=ciphertexts_to_bytes(beta, n),  # gamma = 0 too
        )
    )
    state = session.b_state
    assert isinstance(state, TrainingB)
    truth = [int(x) for x in state.features.x_q[rows[t]]]
    count = session.training.features.n_features
    zeros = [plain(0, session.peer_n)] * session.layout.ciphertext_count(count)
    reply = session.gradient(0, 0, zeros, count)
    packed = ciphertexts_from_bytes(reply.packed_ciphertexts, n)
    layout = state.own_layout
    lam = (p - 1) * (q - 1) // int(gmpy2.gcd(p - 1, q - 1))
    n_root = pow(n, -1, lam)
    read: list[int | None] = []
    for index, ciphertext in enumerate(packed):
        (message,) = session.training.own.decrypt([ciphertext])
        randomness_n = int(ciphertext) * pow(1 + n * int(message), -1, nsquare) % nsquare
        rho = pow(randomness_n % n, n_root, n)  # the n-th root: 2^E h^r (old) or 2^E r (now)
        y_p, y_q = pow(rho % p, Q, p), pow(rho % q, Q, q)
        base_p, base_q = pow(2, Q, p), pow(2, Q, q)
        try:
            x_p, order_p = _dlog(base_p, y_p, p, fp)
            x_q, order_q = _dlog(base_q, y_q, q, fq)
            exponent, modulus = _crt(x_p, order_p, x_q, order_q)
        except KeyError:  # not a power of 2^Q, or no common exponent: the randomness is not A's
            read.extend([None] * min(layout.slots, len(truth) - index * layout.slots))
            continue
        if exponent > modulus // 2:
            exponent -= modulus
        in_this = min(layout.slots, len(truth) - index * layout.slots)
        read.extend(_signed_digits(exponent, layout.slot_bits, in_this))
    return sum(1 for got, want in zip(read, truth, strict=True) if got == want), len(truth)


def _rerandomize_with_peer_base(self: PeerKeyEngine, ciphertexts: Sequence[object]) -> list[Any]:
    """The re-randomisation before issue 11: a power of the peer's DJN base."""
    values = self._check(ciphertexts)
    assert self.djn_base is not None
    table = FixedBaseTable(self.djn_base, self.n_square, exponent_bits=self.n_bits // 2, window=8)
    digits = random_digits(len(values), table.exponent_bits, table.window)
    return [c * table.pow_digits(d) % self.n_square for c, d in zip(values, digits, strict=True)]


@pytest.mark.parametrize("rerandomisation", ["peer's base (before)", "own r^n (now)"])
def test_a_base_that_passes_the_check_reveals_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rerandomisation: str
) -> None:
    key = _attacker_key()
    base = _base_of_order_q(key)
    if rerandomisation.startswith("peer"):
        monkeypatch.setattr(PeerKeyEngine, "rerandomize", _rerandomize_with_peer_base)
    session = open_a_session(tmp_path, keypair=key.keypair, djn_base=base)
    try:
        exact, values = _attack(session, key)
    finally:
        close(session)
    if rerandomisation.startswith("peer"):
        assert exact == values  # the attack is real: all of row t
    else:
        assert exact <= values // 4, f"A read {exact} of {values} feature values of a row"
