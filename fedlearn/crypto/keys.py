"""Paillier key pairs, their wire form, and the fingerprint a session is bound to.

Keys are ``phe``'s own classes (g = n + 1), so a ciphertext made by this engine decrypts with
``phe`` and the reverse. A public key travels as its modulus n, big-endian; what a peer sends is
checked before use (:func:`public_key_from_bytes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import gmpy2
from phe import paillier

from fedlearn.errors import InvalidPeerData

#: Product of the odd primes below 1000: a modulus sharing a factor with it is not an RSA modulus.
_SMALL_PRIMES_PRODUCT = 1
for _candidate in range(3, 1000, 2):
    if gmpy2.is_prime(_candidate):
        _SMALL_PRIMES_PRODUCT *= _candidate


@dataclass(frozen=True)
class KeyPair:
    """One party's Paillier key pair, as ``phe`` objects."""

    public_key: paillier.PaillierPublicKey
    private_key: paillier.PaillierPrivateKey


#: The largest peer modulus accepted unless the caller says otherwise (B: [policy] max_key_bits).
MAX_KEY_BITS = 4096


def generate_keypair(n_bits: int = 2048) -> KeyPair:
    """A fresh key pair with an ``n_bits``-bit modulus (two ``n_bits / 2``-bit primes, by ``phe``).

    Use 2048 bits or more for anything real; tests use 512-1024 bits for speed.
    """
    if n_bits < 256 or n_bits % 2:
        raise ValueError(f"n_bits must be an even number of bits >= 256, got {n_bits}")
    public_key, private_key = paillier.generate_paillier_keypair(n_length=n_bits)
    return KeyPair(public_key=public_key, private_key=private_key)


def public_key_to_bytes(public_key: paillier.PaillierPublicKey) -> bytes:
    """The modulus n, big-endian, in its minimal byte length (256 bytes for a 2048-bit key)."""
    n = int(public_key.n)
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def public_key_from_bytes(
    data: bytes, *, min_bits: int, max_bits: int = MAX_KEY_BITS
) -> paillier.PaillierPublicKey:
    """Parse and check a peer's public key (the output of :func:`public_key_to_bytes`).

    The size is checked on the byte length first, before any arithmetic: a huge modulus costs
    nothing to refuse.

    Raises:
        InvalidPeerData: the encoding is not minimal, or n has fewer than ``min_bits`` or more
            than ``max_bits`` bits, is even, is a prime or a perfect square, or has a factor
            below 1000.
    """
    if not data or data[0] == 0:
        raise InvalidPeerData(
            "public key: expected the modulus n as minimal big-endian bytes "
            f"({'empty' if not data else 'leading zero byte'})"
        )
    if len(data) > (max_bits + 7) // 8:
        raise InvalidPeerData(
            f"public key: modulus has {len(data)} bytes, more than the {max_bits}-bit limit; "
            "use a smaller key (or raise [policy] max_key_bits on the receiving node)"
        )
    n = int.from_bytes(data, "big")
    bits = n.bit_length()
    if bits < min_bits:
        raise InvalidPeerData(
            f"public key: modulus has {bits} bits, but at least {min_bits} are required; "
            "generate a larger key"
        )
    if bits > max_bits:
        raise InvalidPeerData(
            f"public key: modulus has {bits} bits, more than the limit of {max_bits}; "
            "use a smaller key (or raise [policy] max_key_bits on the receiving node)"
        )
    if n % 2 == 0:
        raise InvalidPeerData("public key: modulus is even, so it is not a Paillier modulus")
    if gmpy2.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise InvalidPeerData("public key: modulus has a factor below 1000")
    if gmpy2.is_square(n):
        raise InvalidPeerData("public key: modulus is a perfect square (p == q)")
    if gmpy2.is_prime(n):
        raise InvalidPeerData("public key: modulus is prime, so it is not a product of two primes")
    return paillier.PaillierPublicKey(n)


#: lcm(1, ..., 2^12): a base whose order divides it (order 2, 4, 3, 12, ... any 2^12-power-smooth
#: order) satisfies base^L = 1 mod n^2. An honest h_s = (-y^2)^n has an order near lambda(n).
_SMOOTH_ORDER_EXPONENT = 1
for _candidate in range(2, 1 << 12):
    if gmpy2.is_prime(_candidate):
        _power = _candidate
        while _power * _candidate < 1 << 12:
            _power *= _candidate
        _SMOOTH_ORDER_EXPONENT *= _power


def check_djn_base(base: int, n: int) -> None:
    """Refuse a peer's published DJN base h_s that is malformed or of small order.

    The check is a filter, not a proof: nobody without the factors of n can tell whether h_s is an
    n-th residue (that is the decisional composite residuosity problem), and a key holder can pick
    h_s whose discrete logarithms it knows. So fedlearn never uses the peer's base to hide anything
    from the peer (``PeerKeyEngine.rerandomize`` uses ``r**n`` with its own r); this check only
    refuses what no honest peer sends: a base outside [2, n^2), one sharing a factor with n, and
    one whose order divides lcm(1..4096) (n^2 - 1 = -1 has order 2), which would mean the peer's
    own encryptions carry almost no randomness.

    Raises:
        InvalidPeerData: any of these.
    """
    n_square = gmpy2.mpz(n) * n
    if not 2 <= base < n_square or gmpy2.gcd(base, n) != 1:
        raise InvalidPeerData("the peer's DJN base must be a unit in [2, n^2)")
    if gmpy2.powmod(base, _SMOOTH_ORDER_EXPONENT, n_square) == 1:
        raise InvalidPeerData("the peer's DJN base has a small order; no honest key has one")


def key_fingerprint(public_key: paillier.PaillierPublicKey) -> str:
    """32 hex characters: the first 16 bytes of SHA-256 over :func:`public_key_to_bytes`."""
    return hashlib.sha256(public_key_to_bytes(public_key)).digest()[:16].hex()


def check_fingerprint(public_key: paillier.PaillierPublicKey, expected: str) -> None:
    """Raise :class:`InvalidPeerData` unless ``public_key`` is the session's key."""
    actual = key_fingerprint(public_key)
    if actual != expected:
        raise InvalidPeerData(
            f"public key fingerprint {actual} does not match the session's key {expected}; "
            "the peer changed keys mid-session or the message belongs to another session"
        )
