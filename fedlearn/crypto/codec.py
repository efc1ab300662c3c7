"""Fixed-point codec: signed integers <-> Paillier plaintext residues in [0, n).

The protocol scales each value to a fixed-point integer itself (``fedlearn.protocol.steps`` says with
how many fractional bits); this codec carries a signed integer v as a residue: a negative -a is the
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
    """Encode signed (fixed-point) integers as residues mod ``n``, and decode them with a bound."""

    def __init__(self, n: int) -> None:
        if n < 3:
            raise ValueError(f"modulus must be at least 3, got {n}")
        self.n = int(n)
        #: Largest magnitude an encoded integer may have: residues above it are negative.
        self.max_int = (self.n - 1) // 2

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

        The inverse of ``encode_int`` for decrypted values whose bound is known: a result outside
        the bound means the computation overflowed and is never decoded to a wrong number.

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
