"""Operations under the *peer's* public key, by the party that does not hold its private key.

In the training protocol, B computes ``X_B^T [[d]]_A + [[R_B]]_A`` under A's key (and A the mirror
image under B's key). Everything here needs only n (and, for DJN re-randomisation, the base h_s the
key holder published). Results of :meth:`PeerKeyEngine.add_plain`, :meth:`~PeerKeyEngine.matvec_t`
and :meth:`~PeerKeyEngine.dot` carry randomness the key holder can relate to what it sent; they must
be re-randomised before they leave this party: :meth:`~PeerKeyEngine.pack_masked` does that itself,
otherwise call :meth:`~PeerKeyEngine.rerandomize`.

Re-randomisation multiplies by ``r**n mod n^2`` with r uniform in [1, n) from :mod:`secrets`, never
by a power of the base h_s the peer published: the peer is the one the randomness hides things
from, and a peer can choose h_s of small order (n^2 - 1 makes every power +-1) or one whose discrete
logarithms it knows. ``r**n`` is a uniformly random n-th residue whatever the peer chose, so the
result is a fresh encryption of the same plaintext for any valid Paillier modulus. It costs one
full-length exponentiation per ciphertext, and only the few packed ciphertexts per batch (and one
loss ciphertext per epoch) are re-randomised.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import paillier

from fedlearn.crypto.executor import Executor, SerialExecutor, split_evenly
from fedlearn.crypto.keys import check_djn_base
from fedlearn.crypto.matvec import (
    join_slabs,
    matvec_block_task,
    matvec_columns,
    matvec_plan,
    powmod_many,
    signed_multiexp,
)
from fedlearn.crypto.packing import PackingLayout, draw_masks, packed_offsets
from fedlearn.errors import InvalidPeerData

#: Largest |x| the mat-vec accepts: features are quantised to 16-bit signed fixed point at most.
MAX_ABS_FEATURE = 1 << 15


class PeerKeyEngine:
    """Homomorphic operations on ciphertexts under a peer's public key.

    Args:
        public_key: the peer's key (checked with ``keys.public_key_from_bytes`` on receipt).
        djn_base: the peer's published h_s, or ``None``; checked (``keys.check_djn_base``) and
            kept for the record, never used to re-randomise.
        executor: where :meth:`matvec_t` runs its column blocks.

    Raises:
        InvalidPeerData: ``djn_base`` is not a unit in [2, n^2) or has a small order.
    """

    def __init__(
        self,
        public_key: paillier.PaillierPublicKey,
        *,
        djn_base: int | None,
        executor: Executor | None = None,
    ) -> None:
        self.public_key = public_key
        self.n = mpz(public_key.n)
        self.n_square = self.n * self.n
        self.n_bits = int(self.n).bit_length()
        self.executor: Executor = executor or SerialExecutor()
        if djn_base is not None:
            check_djn_base(djn_base, int(self.n))
        self.djn_base = djn_base

    def _check(self, ciphertexts: Sequence[object]) -> list[mpz]:
        values = [mpz(c) for c in ciphertexts]
        n_square = self.n_square
        for index, value in enumerate(values):
            if not 1 <= value < n_square:
                raise InvalidPeerData(f"ciphertext {index} is outside [1, n^2)")
        return values

    def add_plain(self, ciphertexts: Sequence[object], plaintexts: Sequence[int]) -> list[mpz]:
        """``[[m_i + p_i]]``: ciphertext times ``1 + p_i n`` mod n^2; p_i residues in [0, n)."""
        values = self._check(ciphertexts)
        if len(values) != len(plaintexts):
            raise ValueError(f"{len(values)} ciphertexts but {len(plaintexts)} plaintexts")
        n = self.n
        for index, plaintext in enumerate(plaintexts):
            if not 0 <= plaintext < n:
                raise ValueError(f"plaintext {index} is outside [0, n); encode it first")
        return _add_plain(values, plaintexts, n)

    def matvec_t(self, x_q: np.ndarray, ciphertexts: Sequence[object]) -> list[mpz]:
        """``X^T [[d]]``: f ciphertexts of ``sum_i x_q[i, j] * d_i``, not yet re-randomised.

        Args:
            x_q: (s, f) signed integer array, ``|x| < 2**15`` (quantised features).
            ciphertexts: s ciphertexts ``[[d_i]]`` under the peer's key.

        Raises:
            ValueError: wrong shape or dtype, or a value out of range.
            InvalidPeerData: a ciphertext outside [1, n^2).
        """
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or not np.issubdtype(x_q.dtype, np.integer):
            raise ValueError(f"x_q must be a 2-d integer array, got {x_q.dtype} {x_q.shape}")
        values = self._check(ciphertexts)
        if x_q.shape[0] != len(values):
            raise ValueError(f"x_q has {x_q.shape[0]} rows but there are {len(values)} ciphertexts")
        if x_q.size and int(np.abs(x_q.astype(np.int64)).max()) >= MAX_ABS_FEATURE:
            raise ValueError(f"|x_q| must be below 2**15 = {MAX_ABS_FEATURE}")
        plan = matvec_plan(x_q.shape[0], x_q.shape[1], self.executor.workers)
        if len(plan) <= 1:
            return matvec_columns(x_q, values, self.n_square)
        tasks = [
            (x_q[slab.start : slab.stop, block.start : block.stop], values[slab.start : slab.stop])
            for slab, block in plan
        ]
        partials = self.executor.map(
            matvec_block_task, [(x_block, rows, self.n_square) for x_block, rows in tasks]
        )
        return join_slabs(plan, partials, self.n_square)

    def scale(self, ciphertexts: Sequence[object], factors: Sequence[int]) -> list[mpz]:
        """``[[k_i m_i]] = [[m_i]]**k_i`` per row; k_i signed, a few dozen bits: one short
        exponentiation each (:func:`~fedlearn.crypto.matvec.powmod_many`: a negative k_i inverts
        the ciphertext)."""
        values = self._check(ciphertexts)
        if len(values) != len(factors):
            raise ValueError(f"{len(values)} ciphertexts but {len(factors)} factors")
        exponents = [int(k) for k in factors]
        parts = split_evenly(len(values), min(self.executor.workers, len(values) // MIN_ROWS_TASK))
        tasks = [
            (values[part.start : part.stop], exponents[part.start : part.stop], self.n_square)
            for part in parts
        ]
        if len(tasks) <= 1:
            return [c for task in tasks for c in _scale_task(task)]
        return [c for chunk in self.executor.map(_scale_task, tasks) for c in chunk]

    def add(self, left: Sequence[object], right: Sequence[object]) -> list[mpz]:
        """``[[a_i + b_i]] = [[a_i]] [[b_i]]`` per row."""
        lefts, rights = self._check(left), self._check(right)
        if len(lefts) != len(rights):
            raise ValueError(f"{len(lefts)} and {len(rights)} ciphertexts")
        n_square = self.n_square
        return [a * b % n_square for a, b in zip(lefts, rights, strict=True)]

    def dot(self, coeffs: Sequence[int], ciphertexts: Sequence[object]) -> mpz:
        """One ciphertext of ``sum_i coeffs[i] * m_i``, coefficients signed ints of any size."""
        values = self._check(ciphertexts)
        if len(coeffs) != len(values):
            raise ValueError(f"{len(coeffs)} coefficients but {len(values)} ciphertexts")
        return signed_multiexp(values, range(len(values)), [int(c) for c in coeffs], self.n_square)

    def rerandomize(self, ciphertexts: Sequence[object]) -> list[mpz]:
        """Each ciphertext times a fresh ``r**n mod n^2``, r uniform in [1, n) from :mod:`secrets`
        (never the peer's base: see the module docstring)."""
        values = self._check(ciphertexts)
        parts = split_evenly(len(values), self.executor.workers)
        if len(parts) <= 1:
            return _rerandomize(values, self.n)
        tasks = [(values[part.start : part.stop], self.n) for part in parts]
        return [c for chunk in self.executor.map(_rerandomize_task, tasks) for c in chunk]

    def pack_masked(
        self, ciphertexts: Sequence[object], layout: PackingLayout
    ) -> tuple[list[mpz], list[int]]:
        """Pack masked values ``slots`` to a ciphertext, ready to send to the key holder.

        Each slot becomes ``v + 2**value_bound_bits + R`` (R from :mod:`secrets`), packed by Horner
        (``c**(2**slot_bits) * next``, first value most significant); then the packed offsets are
        added as one plaintext per ciphertext and the result is re-randomised.

        Returns:
            (packed ciphertexts, the masks R in value order; keep them to :func:`unmask`).
        """
        values = self._check(ciphertexts)
        masks = draw_masks(len(values), layout)
        offsets = packed_offsets(masks, layout)
        slots = layout.slots
        # One chunk of packed ciphertexts per worker (each costs slots - 1 short powers), then the
        # re-randomisation (one full-length power each), also spread over the workers.
        parts = split_evenly(len(offsets), self.executor.workers)
        tasks = [
            (values[p.start * slots : p.stop * slots], offsets[p.start : p.stop], layout, self.n)
            for p in parts
        ]
        if len(tasks) <= 1:
            packed = [c for task in tasks for c in _pack_task(task)]
        else:
            packed = [c for chunk in self.executor.map(_pack_task, tasks) for c in chunk]
        return self.rerandomize(packed), masks


# ---- the kernels, module-level so that an executor's workers can run them ------------------------

#: Fewest rows per task of the per-row kernels (a short power each, ~100-250 us): at least tens of
#: milliseconds of work, against Ray's fixed cost per task (bench/ray_overhead.py measures it).
MIN_ROWS_TASK = 256


def _add_plain(ciphertexts: Sequence[mpz], plaintexts: Sequence[int], n: mpz) -> list[mpz]:
    """``c (1 + p n) = c + n (p c mod n) mod n^2`` per row (ranges checked by the caller)."""
    n_square = n * n
    results = []
    for ciphertext, plaintext in zip(ciphertexts, plaintexts, strict=True):
        result = ciphertext + n * (plaintext * ciphertext % n)
        results.append(result - n_square if result >= n_square else result)
    return results


def _rerandomize(ciphertexts: Sequence[mpz], n: mpz) -> list[mpz]:
    """Each ciphertext times a fresh ``r**n mod n^2`` (r from :mod:`secrets` in this process)."""
    n_square = n * n
    return [
        c * gmpy2.powmod(secrets.randbelow(int(n) - 1) + 1, n, n_square) % n_square
        for c in ciphertexts
    ]


def _scale_task(task: tuple[list[mpz], list[int], mpz]) -> list[mpz]:
    """``[c_i ** k_i mod n^2]`` for one chunk of rows."""
    ciphertexts, exponents, n_square = task
    return powmod_many(ciphertexts, exponents, n_square)


def _rerandomize_task(task: tuple[list[mpz], mpz]) -> list[mpz]:
    """Executor entry point: :func:`_rerandomize` of one chunk."""
    ciphertexts, n = task
    return _rerandomize(ciphertexts, n)


def _pack_task(task: tuple[list[mpz], list[int], PackingLayout, mpz]) -> list[mpz]:
    """Pack one chunk: ``layout.slots`` ciphertexts to one by Horner (``c**(2**slot_bits) * next``,
    first value most significant), then add each packed ciphertext's offsets (not re-randomised)."""
    ciphertexts, offsets, layout, n = task
    n_square = n * n
    shift = mpz(1) << layout.slot_bits
    packed = []
    for start in range(0, len(ciphertexts), layout.slots):
        accumulator = ciphertexts[start]
        for ciphertext in ciphertexts[start + 1 : start + layout.slots]:
            shifted = gmpy2.powmod(accumulator, shift, n_square)
            accumulator = shifted * ciphertext % n_square
        packed.append(accumulator)
    return _add_plain(packed, offsets, n)
