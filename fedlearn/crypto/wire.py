"""Ciphertexts and masked slot values as fixed-width big-endian bytes, checked on the way in.

A batch of ciphertexts travels as one ``bytes`` value: each ciphertext padded to the byte length of
n^2 (512 bytes for a 2048-bit key) and concatenated. Everything parsed from a peer is checked here:
the length, the count the protocol step expects, and the range of every value. ``phe`` does none of
this; a ciphertext of 0 or >= n^2 would otherwise decrypt to garbage or leak through error paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from phe import paillier

from fedlearn.crypto.keys import check_fingerprint, key_fingerprint
from fedlearn.errors import InvalidPeerData


def ciphertext_width(n: int) -> int:
    """Bytes per ciphertext under modulus ``n``: the byte length of n^2."""
    return ((int(n) ** 2).bit_length() + 7) // 8


def ciphertexts_to_bytes(ciphertexts: Sequence[object], n: int) -> bytes:
    """Concatenate ciphertexts (ints or ``gmpy2.mpz`` in [1, n^2)) as fixed-width big-endian bytes.

    Raises:
        ValueError: a ciphertext is outside [1, n^2) (a local bug: never send it).
    """
    width = ciphertext_width(n)
    n_square = gmpy2.mpz(n) ** 2
    chunks = []
    for index, ciphertext in enumerate(ciphertexts):
        value = gmpy2.mpz(ciphertext)
        if not 1 <= value < n_square:
            raise ValueError(f"ciphertext at index {index} is outside [1, n^2)")
        chunks.append(value.to_bytes(width, "big"))
    return b"".join(chunks)


def stored_ciphertexts(records: Sequence[bytes]) -> list[gmpy2.mpz]:
    """Ciphertexts from fixed-width records this party stored itself after checking them with
    :func:`ciphertexts_from_bytes` (``protocol.held``): no checks repeated."""
    return [gmpy2.mpz(int.from_bytes(record, "big")) for record in records]


def ciphertexts_from_bytes(
    data: bytes, n: int, *, expected_count: int | None = None
) -> list[gmpy2.mpz]:
    """Parse ciphertexts a peer sent under modulus ``n`` and check each one.

    Raises:
        InvalidPeerData: the length is not a multiple of the ciphertext width, the count differs
            from ``expected_count``, a value is 0 or >= n^2, or a value shares a factor with n (not
            a unit mod n^2: no honest ciphertext does, and one that does would make inversions
            fail later, leaving a session stuck half-way through a step).
    """
    width = ciphertext_width(n)
    count = _check_length(data, width, expected_count, what="ciphertext")
    modulus = gmpy2.mpz(n)
    n_square = modulus**2
    values = []
    product = gmpy2.mpz(1)
    for index in range(count):
        value = gmpy2.mpz.from_bytes(data[index * width : (index + 1) * width], "big")
        if not 1 <= value < n_square:
            raise InvalidPeerData(
                f"ciphertext {index} of {count} is {'0' if value == 0 else '>= n^2'}; "
                "a ciphertext must lie in [1, n^2) for the session's key"
            )
        values.append(value)
        product = product * (value % modulus) % modulus
    # One gcd for the whole batch: a prime factor of n divides the product iff it divides a value.
    if gmpy2.gcd(product, modulus) != 1:
        index = next(i for i, value in enumerate(values) if gmpy2.gcd(value, modulus) != 1)
        raise InvalidPeerData(
            f"ciphertext {index} of {count} shares a factor with n, so it is not a unit mod "
            "n^2 and no honest encryption"
        )
    return values


@dataclass(frozen=True)
class KeyedCiphertexts:
    """Ciphertexts parsed from a peer, with the fingerprint of the key they are under.

    Every protocol step parses what the peer sent into one of these and hands the values to an
    engine only through :meth:`under`, which checks that the engine's key is the batch's key: a
    batch under A's key can never be decrypted, or combined, as if it were under B's.
    """

    key: str  # ``keys.key_fingerprint`` of the public key the values are under
    values: list[gmpy2.mpz]

    def under(self, public_key: paillier.PaillierPublicKey) -> list[gmpy2.mpz]:
        """The values, for an operation under ``public_key``.

        Raises:
            InvalidPeerData: ``public_key`` is not the key the batch was parsed under.
        """
        check_fingerprint(public_key, self.key)
        return self.values


def keyed_ciphertexts_from_bytes(
    data: bytes, public_key: paillier.PaillierPublicKey, *, expected_count: int | None = None
) -> KeyedCiphertexts:
    """:func:`ciphertexts_from_bytes` under ``public_key``, the result tagged with its fingerprint."""
    values = ciphertexts_from_bytes(data, int(public_key.n), expected_count=expected_count)
    return KeyedCiphertexts(key_fingerprint(public_key), values)


def ints_to_bytes(values: Sequence[int], width: int) -> bytes:
    """Non-negative ints as ``width``-byte big-endian, concatenated (for masked slot values).

    Raises:
        ValueError: a value is negative or does not fit in ``width`` bytes.
    """
    chunks = []
    for index, value in enumerate(values):
        value = int(value)
        if value < 0 or value.bit_length() > 8 * width:
            raise ValueError(f"value at index {index} does not fit in {width} unsigned bytes")
        chunks.append(value.to_bytes(width, "big"))
    return b"".join(chunks)


def ints_from_bytes(
    data: bytes, width: int, *, expected_count: int | None = None, bound: int | None = None
) -> list[int]:
    """Parse what :func:`ints_to_bytes` wrote, checking the count and ``value < bound``.

    Raises:
        InvalidPeerData: wrong length or count, or a value >= ``bound``.
    """
    count = _check_length(data, width, expected_count, what="value")
    values = []
    for index in range(count):
        value = int.from_bytes(data[index * width : (index + 1) * width], "big")
        if bound is not None and value >= bound:
            raise InvalidPeerData(
                f"value {index} of {count} has {value.bit_length()} bits, beyond the "
                f"{(bound - 1).bit_length()} bits this step allows"
            )
        values.append(value)
    return values


def _check_length(data: bytes, width: int, expected_count: int | None, *, what: str) -> int:
    if width < 1:
        raise ValueError(f"width must be at least 1 byte, got {width}")
    if len(data) % width:
        raise InvalidPeerData(
            f"{len(data)} bytes is not a whole number of {width}-byte {what}s; "
            "the peer used a different key size or the message was truncated"
        )
    count = len(data) // width
    if expected_count is not None and count != expected_count:
        raise InvalidPeerData(f"expected {expected_count} {what}s, got {count}")
    return count
