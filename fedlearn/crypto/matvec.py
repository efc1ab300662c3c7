"""Exponentiation kernels over ciphertexts: products, bucket multi-exponentiation, fixed bases.

Every cost here is counted in modular multiplications (about 4.7 us mod n^2 for a 2048-bit key, see
docs/performance.md), and the kernels are built to spend as few as possible:

* ``prod c_i^{x_i}`` for 0/1 columns is a product of the selected ciphertexts: one multiplication
  per non-zero, no exponentiation.
* For small signed x, :func:`signed_multiexp` uses the bucket (Pippenger) method over signed
  window digits: each term costs one multiplication per window into the bucket of its digit, and
  each window about ``4 * 2**(c-1)`` to combine its positive and negative buckets. The positive
  and negative parts are joined by one inversion at the end, so no term ever pays an inversion.
* :class:`FixedBaseTable` raises one fixed base to many random exponents with one multiplication
  per ``window`` bits of exponent (used for obfuscators and re-randomisation). Where the optional C
  kernel ``fedlearn.crypto._fixedbase`` is built (``pip install`` builds it where a C compiler
  and GMP's headers are found), its products run in Montgomery form on GMP's limbs, or on AVX-512
  IFMA's 52-bit lanes where the processor has them, without the interpreter's lock; the results
  are the same numbers.

All values are ``gmpy2.mpz``; the functions are module-level so a process pool can run them.
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from fedlearn.crypto.executor import split_evenly
from fedlearn.errors import InvalidPeerData

_native: ModuleType | None
try:  # the optional C kernel (pyproject.toml's ext-modules); the pure-Python table otherwise
    _native = importlib.import_module("fedlearn.crypto._fixedbase")
except ImportError:
    _native = None

ONE = mpz(1)
#: "0": the pure-Python tables even where the C kernel is built; "mpn": the C kernel without its
#: AVX-512 IFMA path (benchmarks compare them; the results are identical).
NATIVE_ENV = "FEDLEARN_NATIVE"
#: The C kernel's limit (the p^2 of an 8,192-bit key).
_NATIVE_MAX_BITS = 8192


def native_kernel() -> bool:
    """Whether new :class:`FixedBaseTable` objects use the C kernel (built, and not turned off by
    ``FEDLEARN_NATIVE=0``)."""
    return _native is not None and os.environ.get(NATIVE_ENV, "1") != "0"


def _vector_path() -> bool:
    """Whether the C kernel may use its AVX-512 IFMA path (it also needs the processor's)."""
    return os.environ.get(NATIVE_ENV, "1") != "mpn"


def _ifma_path() -> bool:
    """Whether the C kernel runs, on its AVX-512 IFMA path (built, the processor has it, and
    ``FEDLEARN_NATIVE`` allows both)."""
    return native_kernel() and bool(_native.ifma) and _vector_path()  # type: ignore[union-attr]


def _kernel_fits(modulus: mpz) -> bool:
    """Whether the C kernel takes this modulus: odd, > 1 and at most ``_NATIVE_MAX_BITS``."""
    return modulus > 1 and gmpy2.is_odd(modulus) and modulus.bit_length() <= _NATIVE_MAX_BITS


def _residues(packed: bytes, count: int) -> list[mpz]:
    """The kernel's output: ``count`` little-endian residues of equal width, as ``mpz``."""
    if not count:
        return []
    size = len(packed) // count
    return [
        mpz.from_bytes(packed[start : start + size], "little")
        for start in range(0, len(packed), size)
    ]


def kernel_description() -> str:
    """Which fixed-base tables new engines use, for ``--version`` and the node's log."""
    if _native is None:
        return "Python (the C kernel is not built: install GMP's headers and reinstall)"
    if not native_kernel():
        return f"Python ({NATIVE_ENV}=0)"
    if _ifma_path():
        return f"C, AVX-512 IFMA (GMP {_native.gmp_version})"
    return f"C (GMP {_native.gmp_version})"


class FixedBaseTable:
    """``base**e mod modulus`` for exponents below ``2**exponent_bits``, by a full window table.

    Row i holds ``base**(j * 2**(window * i))`` for j < 2**window, so ``base**e`` is one product of
    one entry per row: ``ceil(exponent_bits / window)`` multiplications. Memory is
    ``rows * 2**window`` residues (window 11 at 1024-bit exponents: 192,512 entries, 49 MB for a
    2,048-bit modulus). With the C kernel (``native``: by default where it is built and the
    modulus is odd) the table is one block of Montgomery residues and :meth:`pow_many` runs without
    the interpreter's lock, on eight 52-bit lanes at a time where the processor has AVX-512 IFMA
    (``vector``: by default unless ``FEDLEARN_NATIVE=mpn``); otherwise a list of ``mpz`` rows.
    """

    def __init__(
        self,
        base: int,
        modulus: int,
        *,
        exponent_bits: int,
        window: int,
        native: bool | None = None,
        vector: bool | None = None,
    ) -> None:
        if not 1 <= window <= 16:
            raise ValueError(f"window must be in [1, 16], got {window}")
        self.modulus = mpz(modulus)
        self.exponent_bits = exponent_bits
        self.window = window
        self.rows = -(-exponent_bits // window)
        fits = _kernel_fits(self.modulus)
        if native and (_native is None or not fits):
            raise ValueError("the C kernel is not built here, or the modulus is even or too large")
        self.table: list[list[mpz]] | None = None
        self._native: Any = None
        row_base = mpz(base) % self.modulus
        if (native_kernel() if native is None else native) and fits and _native is not None:
            size = (self.modulus.bit_length() + 7) // 8
            self._native = _native.Table(
                int(self.modulus).to_bytes(size, "little"),
                int(row_base).to_bytes(size, "little"),
                self.rows,
                window,
                vector=_vector_path() if vector is None else vector,
            )
            return
        table: list[list[mpz]] = []
        for _ in range(self.rows):
            row = [ONE, row_base]
            for _ in range(2, 1 << window):
                row.append(row[-1] * row_base % self.modulus)
            table.append(row)
            row_base = row[-1] * row_base % self.modulus
        self.table = table

    @property
    def native(self) -> bool:
        """Whether this table runs on the C kernel."""
        return self._native is not None

    @property
    def vectorised(self) -> bool:
        """Whether this table runs on the C kernel's AVX-512 IFMA path."""
        return self._native is not None and bool(self._native.vectorised)

    def pow_digits(self, digits: Sequence[int]) -> mpz:
        """The product of ``table[i][digits[i]]``: ``base**sum(d_i * 2**(window * i))``."""
        if self._native is not None:
            return self.pow_many(np.asarray([digits]))[0]
        assert self.table is not None
        modulus = self.modulus
        accumulator = None
        for row, digit in zip(self.table, digits, strict=True):
            if digit:
                entry = row[digit]
                accumulator = entry if accumulator is None else accumulator * entry % modulus
        return ONE if accumulator is None else mpz(accumulator)

    def pow_many(self, digits: np.ndarray) -> list[mpz]:
        """:meth:`pow_digits` for each row of ``digits`` (shape (count, rows), each < 2**window)."""
        digits = np.asarray(digits)
        if digits.ndim != 2 or digits.shape[1] != self.rows:
            raise ValueError(f"digits must have shape (count, {self.rows}), got {digits.shape}")
        if self._native is None:
            return [self.pow_digits(row) for row in digits.tolist()]
        if digits.size and (digits.min() < 0 or digits.max() >= 1 << self.window):
            raise ValueError(f"every digit must be in [0, 2**{self.window})")
        packed = self._native.pow_many(np.ascontiguousarray(digits, dtype=np.uint16).tobytes())
        return _residues(packed, len(digits))


#: Exponents of :func:`powmod_many` on the C kernel: below 2**62 in magnitude (int64 lanes).
_POWMOD_MAX_BITS = 62


def powmod_many(values: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> list[mpz]:
    """``[v ** k mod modulus]`` for short signed exponents (a negative one inverts its value).

    On the C kernel's AVX-512 IFMA path (sliding windows in Montgomery form, the values of negative
    exponents inverted together by Montgomery's trick: one inversion for the whole batch) where it
    runs and the sizes fit; ``gmpy2.powmod`` each otherwise (GMP's own exponentiation beats the
    kernel's mpn path at these exponent sizes: its set-up is per call, but its products are
    faster). The numbers are the same either way.

    Raises:
        InvalidPeerData: a value with a negative exponent has no inverse modulo ``modulus`` (only
            a crafted ciphertext: it would share a factor with n).
    """
    if len(values) != len(exponents):
        raise ValueError(f"{len(values)} values but {len(exponents)} exponents")
    limit = 1 << _POWMOD_MAX_BITS
    fits = _ifma_path() and _kernel_fits(modulus) and all(-limit <= k <= limit for k in exponents)
    if not fits:
        try:
            return [gmpy2.powmod(v, k, modulus) for v, k in zip(values, exponents, strict=True)]
        except ValueError as exc:  # a negative exponent of a value with no inverse
            raise InvalidPeerData("a ciphertext has no inverse modulo n^2") from exc
    if not values:
        return []
    width = (modulus.bit_length() + 7) // 8
    try:
        packed = _native.powmod_many(  # type: ignore[union-attr]
            int(modulus).to_bytes(width, "little"),
            b"".join(mpz(v).to_bytes(width, "little") for v in values),
            np.asarray(exponents, dtype=np.int64).tobytes(),
        )
    except ValueError as exc:
        raise InvalidPeerData("a ciphertext has no inverse modulo n^2") from exc
    return _residues(packed, len(values))


def random_digits(count: int, exponent_bits: int, window: int) -> np.ndarray:
    """Window digits of ``count`` exponents, uniform in [0, 2**exponent_bits), from ``secrets``:
    shape (count, ceil(exponent_bits / window)), least significant digit first.

    Drawing the digits directly is the same as drawing the exponent and splitting it: every bit is
    an independent fair bit from the OS generator (the top digit gets fewer bits).
    """
    rows = -(-exponent_bits // window)
    raw = np.frombuffer(secrets.token_bytes(count * (-(-exponent_bits // 8))), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(count, -1), axis=1, bitorder="little")[:, :exponent_bits]
    padded = np.zeros((count, rows * window), dtype=np.int64)
    padded[:, :exponent_bits] = bits
    weights = np.left_shift(1, np.arange(window, dtype=np.int64))
    return padded.reshape(count, rows, window) @ weights


def product_of_selected(ciphertexts: Sequence[mpz], indices: Sequence[int], modulus: mpz) -> mpz:
    """``prod ciphertexts[i] mod modulus`` over ``indices`` (1, an encryption of 0, if empty)."""
    accumulator = None
    for index in indices:
        ciphertext = ciphertexts[index]
        accumulator = ciphertext if accumulator is None else accumulator * ciphertext % modulus
    return ONE if accumulator is None else mpz(accumulator)


def bucket_window(term_count: int, magnitude_bits: int) -> int:
    """The window c minimising the estimated multiplications of :func:`signed_multiexp`.

    Each of ``ceil(b / c)`` windows costs one multiplication per term plus about
    ``2 * 2 * (2**(c-1) + 1)`` to combine the positive and negative buckets of signed digits.
    """
    if magnitude_bits <= 1:
        return 1
    best_window, best_cost = 1, -1
    for window in range(1, min(magnitude_bits, 16) + 1):
        windows = -(-magnitude_bits // window)
        cost = windows * (term_count + 4 * ((1 << (window - 1)) + 1)) + 2 * magnitude_bits
        if best_cost < 0 or cost < best_cost:
            best_window, best_cost = window, cost
    return best_window


def signed_digits(coefficient: int, window: int) -> list[int]:
    """Digits d_k in [-2**(window-1), 2**(window-1)], least significant first, with
    ``sum(d_k * 2**(window * k)) == coefficient``; a negative coefficient has negated digits."""
    magnitude = abs(coefficient)
    sign = -1 if coefficient < 0 else 1
    base, half, mask = 1 << window, 1 << (window - 1), (1 << window) - 1
    digits = []
    carry = 0
    while magnitude or carry:
        digit = (magnitude & mask) + carry
        magnitude >>= window
        if digit > half:
            digit -= base
            carry = 1
        else:
            carry = 0
        digits.append(sign * digit)
    return digits


def signed_multiexp(
    ciphertexts: Sequence[mpz],
    indices: Sequence[int],
    coefficients: Sequence[int],
    modulus: mpz,
) -> mpz:
    """``prod ciphertexts[i]**c mod modulus`` over ``zip(indices, coefficients)``, c signed ints.

    Bucket (Pippenger) method over signed window digits: in each window a term multiplies into the
    positive bucket of its digit or the negative bucket of its digit's magnitude (one multiplication
    per term and window); the two bucket sets are combined by running products. The positive and
    negative results are carried through all windows separately and joined by one inversion, so
    no term ever pays an inversion. Coefficients may have any size; zeros are skipped.

    Raises:
        InvalidPeerData: the negative part is not invertible (a ciphertext shares a factor with n,
            which an honest peer never produces).
    """
    terms = [
        (index, int(coefficient))
        for index, coefficient in zip(indices, coefficients, strict=True)
        if coefficient
    ]
    if not terms:
        return ONE
    magnitude_bits = max(abs(coefficient) for _, coefficient in terms).bit_length()
    window = bucket_window(len(terms), magnitude_bits)
    digit_lists = [(index, signed_digits(coefficient, window)) for index, coefficient in terms]
    window_count = max(len(digits) for _, digits in digit_lists)
    half = 1 << (window - 1)
    positive = negative = None
    for position in range(window_count - 1, -1, -1):
        if positive is not None:
            positive = gmpy2.powmod(positive, 1 << window, modulus)
        if negative is not None:
            negative = gmpy2.powmod(negative, 1 << window, modulus)
        positive_buckets: list[mpz | None] = [None] * (half + 1)
        negative_buckets: list[mpz | None] = [None] * (half + 1)
        for index, digits in digit_lists:
            if position >= len(digits):
                continue
            digit = digits[position]
            if digit > 0:
                buckets = positive_buckets
            elif digit < 0:
                buckets, digit = negative_buckets, -digit
            else:
                continue
            bucket = buckets[digit]
            ciphertext = ciphertexts[index]
            buckets[digit] = ciphertext if bucket is None else bucket * ciphertext % modulus
        positive = _accumulate(positive, _combine_buckets(positive_buckets, modulus), modulus)
        negative = _accumulate(negative, _combine_buckets(negative_buckets, modulus), modulus)
    result = ONE if positive is None else mpz(positive)
    if negative is None:
        return result
    try:
        inverse = gmpy2.invert(negative, modulus)
    except ZeroDivisionError as error:
        raise InvalidPeerData("a ciphertext is not invertible modulo n^2") from error
    return result * inverse % modulus


def _accumulate(accumulator: mpz | None, factor: mpz | None, modulus: mpz) -> mpz | None:
    if factor is None:
        return accumulator
    return factor if accumulator is None else accumulator * factor % modulus


def _combine_buckets(buckets: list[mpz | None], modulus: mpz) -> mpz | None:
    """``prod_d buckets[d]**d`` by running products: at most 2 multiplications per bucket."""
    running = None
    total = None
    for digit in range(len(buckets) - 1, 0, -1):
        bucket = buckets[digit]
        if bucket is not None:
            running = bucket if running is None else running * bucket % modulus
        if running is not None:
            total = running if total is None else total * running % modulus
    return total


def small_signed_multiexp(
    ciphertexts: Sequence[mpz], indices: np.ndarray, values: np.ndarray, modulus: mpz
) -> mpz:
    """:func:`signed_multiexp` for int64 coefficients with ``|x| < 2**62``, digits by numpy.

    The signed window digits of the whole column are computed at once and each bucket's indices
    are grouped by a sort, so the Python loop left is one multiplication per term and window.
    """
    nonzero = values != 0
    indices, values = indices[nonzero], values[nonzero].astype(np.int64)
    if indices.size == 0:
        return ONE
    magnitudes = np.abs(values)
    window = bucket_window(int(indices.size), int(magnitudes.max()).bit_length())
    base, half, mask = 1 << window, 1 << (window - 1), (1 << window) - 1
    signs = np.sign(values)
    digit_rows = []
    carry = np.zeros_like(magnitudes)
    while magnitudes.any() or carry.any():
        digits = (magnitudes & mask) + carry
        magnitudes = magnitudes >> window
        carry = (digits > half).astype(np.int64)
        digit_rows.append(signs * (digits - carry * base))
    positive = negative = None
    for digits in reversed(digit_rows):
        if positive is not None:
            positive = gmpy2.powmod(positive, base, modulus)
        if negative is not None:
            negative = gmpy2.powmod(negative, base, modulus)
        for sign in (1, -1):
            selected = np.flatnonzero(digits * sign > 0)
            buckets: list[mpz | None] = [None] * (half + 1)
            if selected.size:
                magnitude = digits[selected] * sign
                order = np.argsort(magnitude, kind="stable")
                sorted_digits = magnitude[order]
                sorted_indices = indices[selected][order]
                starts = np.flatnonzero(np.diff(sorted_digits, prepend=-1))
                stops = [*starts[1:].tolist(), int(sorted_digits.size)]
                for start, stop in zip(starts.tolist(), stops, strict=True):
                    group = sorted_indices[start:stop].tolist()
                    buckets[int(sorted_digits[start])] = product_of_selected(
                        ciphertexts, group, modulus
                    )
            total = _combine_buckets(buckets, modulus)
            if sign > 0:
                positive = _accumulate(positive, total, modulus)
            else:
                negative = _accumulate(negative, total, modulus)
    result = ONE if positive is None else mpz(positive)
    if negative is None:
        return result
    try:
        inverse = gmpy2.invert(negative, modulus)
    except ZeroDivisionError as error:
        raise InvalidPeerData("a ciphertext is not invertible modulo n^2") from error
    return result * inverse % modulus


def matvec_columns(x_block: np.ndarray, ciphertexts: Sequence[mpz], modulus: mpz) -> list[mpz]:
    """``[prod_i ciphertexts[i]**x_block[i, j] mod modulus for j]``: X^T [[d]] for a column block.

    ``x_block`` is an (s, k) signed integer array, ``len(ciphertexts) == s``. Each column takes the
    cheapest kernel its values allow: all zero -> 1; 0/1 -> a product of the selected ciphertexts;
    anything else -> :func:`small_signed_multiexp`. Results are not re-randomised.
    """
    x_block = np.asarray(x_block)
    if x_block.ndim != 2 or x_block.shape[0] != len(ciphertexts):
        raise ValueError(
            f"x has shape {x_block.shape}, but {len(ciphertexts)} ciphertexts need (s, f) with "
            f"s = {len(ciphertexts)}"
        )
    results = []
    for column in x_block.T.astype(np.int64):
        nonzero = np.flatnonzero(column)
        if nonzero.size == 0:
            results.append(ONE)
        elif np.all(column[nonzero] == 1):
            results.append(product_of_selected(ciphertexts, nonzero.tolist(), modulus))
        else:
            results.append(small_signed_multiexp(ciphertexts, nonzero, column[nonzero], modulus))
    return results


def matvec_block_task(task: tuple[np.ndarray, list[mpz], mpz]) -> list[mpz]:
    """Executor entry point: ``matvec_columns(*task)``."""
    x_block, ciphertexts, modulus = task
    return matvec_columns(x_block, ciphertexts, modulus)


#: Fewest rows in a row slab of :func:`matvec_plan`: each slab pays its own bucket combining
#: (about ``4 * 2**(c-1)`` multiplications per window and column), which 256 rows amortise.
MIN_SLAB_ROWS = 256


def matvec_plan(rows: int, columns: int, workers: int) -> list[tuple[range, range]]:
    """How an (rows, columns) mat-vec is cut for ``workers``: (row slab, column block) pairs.

    Column blocks first (one per worker when there are enough columns: no extra work); with fewer
    columns than workers, each block is also cut into row slabs of at least
    :data:`MIN_SLAB_ROWS` rows, whose partial products :func:`join_slabs` multiplies together.
    Block-major order. Depends only on the three counts, so every executor with the same
    ``workers`` gets the same cut, hence the same results.
    """
    blocks = split_evenly(columns, workers)
    if not blocks or rows == 0:
        return []
    slabs = split_evenly(rows, max(1, min(workers // len(blocks), rows // MIN_SLAB_ROWS)))
    return [(slab, block) for block in blocks for slab in slabs]


def join_slabs(
    plan: Sequence[tuple[range, range]], partials: Sequence[list[mpz]], modulus: mpz
) -> list[mpz]:
    """The column results of :func:`matvec_plan`'s tasks: per column block, the product of its
    slabs' partial results mod ``modulus`` (the same residue as one pass over all rows)."""
    joined: dict[int, list[mpz]] = {}
    for (_, block), partial in zip(plan, partials, strict=True):
        previous = joined.get(block.start)
        joined[block.start] = (
            list(partial)
            if previous is None
            else [a * b % modulus for a, b in zip(previous, partial, strict=True)]
        )
    return [c for start in sorted(joined) for c in joined[start]]
