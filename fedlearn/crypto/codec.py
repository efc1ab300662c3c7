"""Fixed-point codec: signed numbers <-> Paillier plaintext residues in [0, n).

A value v is carried as the integer ``round(v * 2**frac_bits)``; a negative integer -a is the
residue ``n - a``. Residues above n // 2 therefore decode as negative. Homomorphic sums and products
keep this form as long as the true integer result stays inside (-n/2, n/2); the caller states a
tighter ``bound`` on decode, and a result outside it raises :class:`EncodingOverflow` instead of
decoding to a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fedlearn.errors import EncodingOverflow


class FixedPointCodec:
    """Encode floats and signed ints as residues mod ``n`` with ``frac_bits`` fractional bits."""

    def __init__(self, n: int, *, frac_bits: int) -> None:
        if n < 3:
            raise ValueError(f"modulus must be at least 3, got {n}")
        if frac_bits < 0:
            raise ValueError(f"frac_bits must be >= 0, got {frac_bits}")
        self.n = int(n)
        self.frac_bits = frac_bits
        self.scale = float(2**frac_bits)
        #: Largest magnitude an encoded integer may have: residues above it are negative.
        self.max_int = (self.n - 1) // 2

    def encode(self, values: np.ndarray) -> list[int]:
        """Floats (any shape, flattened in C order) -> residues of ``round(v * 2**frac_bits)``.

        Raises:
            EncodingOverflow: a value is NaN or infinite, or too large for the modulus.
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise EncodingOverflow(f"cannot encode non-finite value {array[bad]} at index {bad}")
        scaled = np.rint(array * self.scale)
        return self.encode_int(int(v) for v in scaled.tolist())

    def encode_int(self, values: Iterable[int] | np.ndarray) -> list[int]:
        """Signed integers -> residues in [0, n).

        Raises:
            EncodingOverflow: ``|v| > (n - 1) // 2``, which would not decode back to v.
        """
        n, max_int = self.n, self.max_int
        if isinstance(values, np.ndarray):
            values = values.ravel().tolist()
        residues = []
        for index, value in enumerate(values):
            value = int(value)
            if -max_int <= value <= max_int:
                residues.append(value % n)
            else:
                raise EncodingOverflow(
                    f"integer at index {index} has {abs(value).bit_length()} bits; "
                    f"a {n.bit_length()}-bit modulus holds at most {max_int.bit_length()} bits"
                )
        return residues

    def decode_int(self, residues: Sequence[int], *, bound: int) -> list[int]:
        """Residues in [0, n) -> signed ints, each checked to satisfy ``|v| < bound``.

        Raises:
            ValueError: ``bound`` is not in [1, (n - 1) // 2], or a residue is outside [0, n).
            EncodingOverflow: a decoded value has ``|v| >= bound``.
        """
        n, half = self.n, self.max_int
        if not 1 <= bound <= half:
            raise ValueError(
                f"bound must be in [1, (n - 1) // 2] so that signs are unambiguous, got {bound}"
            )
        values = []
        for index, residue in enumerate(residues):
            residue = int(residue)
            if not 0 <= residue < n:
                raise ValueError(f"residue at index {index} is outside [0, n)")
            value = residue - n if residue > half else residue
            if not -bound < value < bound:
                raise EncodingOverflow(
                    f"decoded value at index {index} has {abs(value).bit_length()} bits, beyond "
                    f"the bound of {bound.bit_length() - 1} bits: the computation overflowed its "
                    "fixed-point range (quantise inputs more coarsely or use smaller batches)"
                )
            values.append(value)
        return values

    def decode(self, residues: Sequence[int], *, scale: float, bound: int) -> np.ndarray:
        """Residues -> ``decode_int(residues, bound=bound) / scale`` as float64.

        ``scale`` is the product of the scales that went into the value, e.g. ``2**(fx + fd)`` for a
        sum of products of an ``fx``-bit feature with an ``fd``-bit residual.
        """
        integers = self.decode_int(residues, bound=bound)
        return np.array([value / scale for value in integers], dtype=np.float64)
