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
    random_digits,
)

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
