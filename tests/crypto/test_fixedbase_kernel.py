"""The C kernel of the fixed-base tables (fedlearn/crypto/_fixedbase.c) against the pure-Python
tables and ``powmod``: the same numbers, bad digits refused, and built wherever GMP's headers are."""

from __future__ import annotations

import ctypes.util
import random
import sysconfig
from pathlib import Path

import gmpy2
import numpy as np
import pytest

from fedlearn.crypto import OwnKeyEngine
from fedlearn.crypto.matvec import (
    NATIVE_ENV,
    FixedBaseTable,
    _native,
    kernel_description,
    native_kernel,
    powmod_many,
    random_digits,
)
from fedlearn.errors import InvalidPeerData

needs_kernel = pytest.mark.skipif(_native is None, reason="the C kernel is not built here")


def _gmp_headers() -> bool:
    include = Path(sysconfig.get_config_var("INCLUDEDIR") or "/usr/include")
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = [include / "gmp.h", include / multiarch / "gmp.h", Path("/usr/include/gmp.h")]
    candidates.append(Path("/usr/include") / multiarch / "gmp.h")
    return (
        any(path.is_file() for path in candidates) and ctypes.util.find_library("gmp") is not None
    )


@pytest.mark.skipif(not _gmp_headers(), reason="no GMP headers: the kernel is optional")
def test_the_kernel_is_built_where_gmp_headers_are() -> None:
    # A broken build is silent at install (the extension is optional): this is where it shows.
    assert _native is not None, "fedlearn/crypto/_fixedbase.c did not build (make setup's log)"
    assert native_kernel()


def _odd_modulus(rng: random.Random, bits: int) -> int:
    return rng.getrandbits(bits) | 1 | (1 << (bits - 1))


@needs_kernel
@pytest.mark.parametrize(
    ("bits", "window", "exponent_bits"),
    [
        (64, 1, 9),
        (65, 3, 20),
        (200, 7, 100),
        (414, 5, 30),  # the IFMA path's widths: 4m < 2^416 holds up to 414 bits, then 2 vectors
        (415, 5, 30),
        (1024, 8, 512),
        (2048, 11, 300),
        (4096, 4, 64),
        (8192, 2, 12),
    ],
)
def test_kernel_matches_python_tables_and_powmod(
    bits: int, window: int, exponent_bits: int
) -> None:
    rng = random.Random(bits * 31 + window)
    modulus = _odd_modulus(rng, bits)
    base = rng.getrandbits(bits + 9)  # not reduced: the table reduces it
    native = FixedBaseTable(base, modulus, exponent_bits=exponent_bits, window=window, native=True)
    mpn = FixedBaseTable(
        base, modulus, exponent_bits=exponent_bits, window=window, native=True, vector=False
    )
    python = FixedBaseTable(base, modulus, exponent_bits=exponent_bits, window=window, native=False)
    assert native.native and mpn.native and not python.native
    assert not mpn.vectorised
    assert native.vectorised == bool(_native.ifma)  # type: ignore[union-attr]
    digits = random_digits(40, exponent_bits, window)
    digits[0] = 0  # base**0 = 1
    digits[1] = (1 << window) - 1  # every digit at its largest
    digits[1, -1] = 0
    digits[2] = 0
    digits[2, 3 % native.rows] = 1  # one entry alone
    assert native.pow_many(digits) == python.pow_many(digits)
    assert mpn.pow_many(digits) == python.pow_many(digits)
    for row in digits[:8]:
        exponent = sum(int(d) << (window * i) for i, d in enumerate(row))
        assert native.pow_digits(row.tolist()) == gmpy2.powmod(base, exponent, modulus)


@needs_kernel
def test_kernel_refuses_bad_digits_and_moduli() -> None:
    table = FixedBaseTable(5, 2**127 - 1, exponent_bits=40, window=8, native=True)
    with pytest.raises(ValueError, match="2\\*\\*8"):
        table.pow_many(np.full((2, table.rows), 256))
    with pytest.raises(ValueError, match="2\\*\\*8"):
        table.pow_many(np.full((2, table.rows), -1))
    with pytest.raises(ValueError, match="shape"):
        table.pow_many(np.zeros((2, table.rows + 1), dtype=np.int64))
    with pytest.raises(ValueError, match="even"):
        FixedBaseTable(5, 2**128, exponent_bits=40, window=8, native=True)
    # The module itself refuses what the wrapper would not send.
    assert _native is not None
    with pytest.raises(ValueError, match="odd"):
        _native.Table(b"\x04", b"\x03", 4, 8)
    with pytest.raises(ValueError, match="window"):
        _native.Table(b"\x07", b"\x03", 4, 17)
    raw = _native.Table((2**61 - 1).to_bytes(8, "little"), b"\x03", 5, 8)
    with pytest.raises(ValueError, match="rows"):
        raw.pow_many(b"\x00" * 3)
    with pytest.raises(ValueError, match="below"):
        raw.pow_many(np.full(5, 256, dtype=np.uint16).tobytes())
    assert raw.pow_many(b"") == b""


def test_even_modulus_falls_back_to_python_tables() -> None:
    table = FixedBaseTable(3, 2**100, exponent_bits=30, window=5)
    assert not table.native
    assert table.pow_digits([1, 0, 0, 0, 0, 0]) == 3


@needs_kernel
def test_engine_on_the_kernel_and_on_python_tables_agree(small_keypair, monkeypatch) -> None:
    with OwnKeyEngine(small_keypair) as kernel:
        assert kernel._tables is not None and all(t.native for t in kernel._tables)
        monkeypatch.setenv(NATIVE_ENV, "mpn")
        assert native_kernel() and "IFMA" not in kernel_description()
        monkeypatch.setenv(NATIVE_ENV, "0")
        assert not native_kernel()
        assert kernel_description() == f"Python ({NATIVE_ENV}=0)"
        digits = random_digits(12, kernel.exponent_bits, kernel.table_window)
        python_tables = kernel.secret.djn_tables(
            gmpy2.mpz(kernel.djn_base), kernel.exponent_bits, kernel.table_window
        )
        assert not any(t.native for t in python_tables)
        expected = kernel.secret.djn_obfuscators(python_tables, digits)
        assert kernel.secret.djn_obfuscators(kernel._tables, digits) == expected
        # every obfuscator is an encryption of 0
        assert kernel.decrypt(expected) == [0] * 12


def _composite_square(rng: random.Random, bits: int) -> int:
    """(p q)^2 for random primes of bits / 4 each: the shape of n^2."""
    p = int(gmpy2.next_prime(rng.getrandbits(bits // 4) | (1 << (bits // 4 - 1))))
    q = int(gmpy2.next_prime(rng.getrandbits(bits // 4) | (1 << (bits // 4 - 1))))
    return (p * q) ** 2


@pytest.mark.parametrize("setting", ["1", "mpn", "0"])
@pytest.mark.parametrize("bits", [256, 1024, 4096])
def test_powmod_many_matches_gmpy2(bits: int, setting: str, monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_ENV, setting)
    rng = random.Random(bits)
    modulus = gmpy2.mpz(_composite_square(rng, bits))
    values = [gmpy2.mpz(rng.randrange(1, int(modulus))) for _ in range(60)]
    exponents = [0, 1, -1, 2, -2, 2**62, -(2**62), 2**62 + 1, -(2**70)]  # the last two: gmpy2
    exponents += [rng.randrange(-(2**bits_), 2**bits_) for bits_ in (3, 14, 20, 40) * 13][:51]
    expected = [gmpy2.powmod(v, k, modulus) for v, k in zip(values, exponents, strict=True)]
    assert powmod_many(values, exponents, modulus) == expected
    short = exponents[:5] + exponents[9:]  # all within the kernel's int64 lanes
    assert powmod_many(values[:5] + values[9:], short, modulus) == expected[:5] + expected[9:]
    assert powmod_many([], [], modulus) == []


@pytest.mark.parametrize("setting", ["1", "0"])
def test_powmod_many_refuses_a_value_with_no_inverse(setting: str, monkeypatch) -> None:
    monkeypatch.setenv(NATIVE_ENV, setting)
    p, q = int(gmpy2.next_prime(2**127)), int(gmpy2.next_prime(2**128))
    modulus = gmpy2.mpz((p * q) ** 2)
    values = [gmpy2.mpz(5), gmpy2.mpz(p * 7), gmpy2.mpz(11)]
    # a positive power of it is fine; a negative one would need its inverse
    assert powmod_many(values, [3, 2, -1], modulus)[1] == gmpy2.powmod(p * 7, 2, modulus)
    with pytest.raises(InvalidPeerData, match="no inverse"):
        powmod_many(values, [3, -2, -1], modulus)
    with pytest.raises(ValueError, match="3 values but 2"):
        powmod_many(values, [1, 2], modulus)


@needs_kernel
def test_kernel_powmod_refuses_bad_input() -> None:
    assert _native is not None
    modulus = (2**127 - 1).to_bytes(16, "little")
    exponent = np.array([3], dtype=np.int64).tobytes()
    with pytest.raises(ValueError, match="one modulus-width value"):
        _native.powmod_many(modulus, b"\x01" * 15, exponent)
    with pytest.raises(ValueError, match="not below the modulus"):
        _native.powmod_many(modulus, b"\xff" * 16, exponent)
    with pytest.raises(ValueError, match="2\\*\\*62"):
        _native.powmod_many(modulus, b"\x01" + b"\x00" * 15, np.array([2**63 - 1]).tobytes())
    with pytest.raises(ValueError, match="odd"):
        _native.powmod_many(b"\x04", b"\x01", exponent)
    assert _native.powmod_many(modulus, b"", b"") == b""
