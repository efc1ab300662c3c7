"""Ciphertexts and masked slot values as fixed-width big-endian bytes, checked on the way in.

A batch of ciphertexts travels as one ``bytes`` value: each ciphertext padded to the byte length of
n^2 (512 bytes for a 2048-bit key) and concatenated. Everything parsed from a peer is checked here:
the length, the count the protocol step expects, and the range of every value. ``phe`` does none of
this; a ciphertext of 0 or >= n^2 would otherwise decrypt to garbage or leak through error paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

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
        product = product * value % modulus
    # One gcd for the whole batch: a prime factor of n divides the product iff it divides a value.
    if gmpy2.gcd(product, modulus) != 1:
        index = next(i for i, value in enumerate(values) if gmpy2.gcd(value, modulus) != 1)
        raise InvalidPeerData(
            f"ciphertext {index} of {count} shares a factor with n, so it is not a unit mod "
            "n^2 and no honest encryption"
        )
    return values


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
