"""The baseline: the protocol's engine methods done the way plain ``phe`` does them.

Same methods as :class:`~fedlearn.crypto.paillier.OwnKeyEngine` and
:class:`~fedlearn.crypto.peer.PeerKeyEngine`, so the protocol runs unchanged on either (choose with
``[crypto] engine = "phe"``); a benchmark then measures the engine against ``phe`` on identical work.
Nothing here is fast on purpose:

* encryption is ``PaillierPublicKey.raw_encrypt`` with phe's standard obfuscator ``r**n mod n^2``
  (r uniform below n), computed when asked: no pool, no DJN tables, no CRT;
* decryption is ``PaillierPrivateKey.raw_decrypt`` (phe's own CRT decryption);
* ciphertext times plaintext is phe's ``EncryptedNumber._raw_mul``: one ``powmod`` per term, and a
  negative scalar (a residue ``n - a`` with ``n - max_int <= n - a``) is an inversion of the
  ciphertext followed by ``powmod`` with ``a``; zero coefficients still cost their ``powmod``;
* ciphertext plus ciphertext is phe's ``_raw_add`` (one multiplication mod n^2), ciphertext plus
  plaintext is phe's ``_add_encoded`` (``raw_encrypt(p, r_value=1)``, then ``_raw_add``);
* re-randomisation is phe's ``EncryptedNumber.obfuscate``: times a fresh ``r**n``.

Ciphertexts are plain ``int``; they decrypt with the fast engine and with ``phe``, and the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from phe import paillier
from phe.util import invert, mulmod, powmod

from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.packing import PackingLayout, draw_masks, packed_offsets
from fedlearn.errors import InvalidPeerData


def _checked(ciphertexts: Sequence[object], n_square: int) -> list[int]:
    """Ciphertexts as ints, each in [1, n^2) (phe does not check; fedlearn always does)."""
    values = [int(c) for c in ciphertexts]  # type: ignore[call-overload]
    for index, value in enumerate(values):
        if not 1 <= value < n_square:
            raise InvalidPeerData(f"ciphertext {index} is outside [1, n^2)")
    return values


class PheOwnKeyEngine:
    """Encrypt and decrypt under this party's own key with phe's raw operations.

    ``djn_base`` is None (standard obfuscation); ``pool_target`` and :meth:`prefill` exist for the
    protocol's sake and do nothing: phe computes each obfuscator when it encrypts.
    """

    djn_base: int | None = None

    def __init__(self, keypair: KeyPair) -> None:
        self.public_key = keypair.public_key
        self.private_key = keypair.private_key
        self.n = int(keypair.public_key.n)
        self.n_square = int(keypair.public_key.nsquare)
        self.pool_target = 0

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """``raw_encrypt`` each residue in [0, n) with a fresh ``r**n`` obfuscator.

        Raises:
            ValueError: a plaintext is outside [0, n) (encode it with the codec first).
        """
        ciphertexts = []
        for index, message in enumerate(plaintexts):
            message = int(message)
            if not 0 <= message < self.n:
                raise ValueError(f"plaintext {index} is outside [0, n); encode it first")
            ciphertexts.append(int(self.public_key.raw_encrypt(message)))
        return ciphertexts

    def prefill(self, count: int) -> None:
        """No-op: phe has no obfuscator pool."""

    def pool_size(self) -> int:
        return 0

    def decrypt(self, ciphertexts: Sequence[object]) -> list[int]:
        """``raw_decrypt`` (phe's CRT decryption) to residues in [0, n).

        Raises:
            InvalidPeerData: a ciphertext is outside [1, n^2).
        """
        values = _checked(ciphertexts, self.n_square)
        return [int(self.private_key.raw_decrypt(value)) for value in values]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> PheOwnKeyEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PhePeerKeyEngine:
    """Homomorphic operations under the peer's public key, term by term as phe does them.

    Results of :meth:`add_plain`, :meth:`matvec_t` and :meth:`dot` are not obfuscated (as phe's
    arithmetic results are not); :meth:`pack_masked` obfuscates, otherwise call :meth:`rerandomize`.
    """

    djn_base: int | None = None

    def __init__(self, public_key: paillier.PaillierPublicKey) -> None:
        self.public_key = public_key
        self.n = int(public_key.n)
        self.n_square = int(public_key.nsquare)
        self.max_int = int(public_key.max_int)

    def _raw_mul(self, ciphertext: int, scalar: int) -> int:
        """phe's ``EncryptedNumber._raw_mul`` for a signed int scalar encoded as a residue mod n."""
        plaintext = scalar % self.n
        if self.n - self.max_int <= plaintext:
            inverse = invert(ciphertext, self.n_square)
            return int(powmod(inverse, self.n - plaintext, self.n_square))
        return int(powmod(ciphertext, plaintext, self.n_square))

    def _raw_add(self, left: int, right: int) -> int:
        return int(mulmod(left, right, self.n_square))

    def _sum_of_products(self, ciphertexts: Sequence[int], scalars: Sequence[int]) -> int:
        """``sum_i scalars[i] * [[m_i]]`` as phe's ``sum(c * x for ...)``: one powmod per term."""
        total: int | None = None
        for ciphertext, scalar in zip(ciphertexts, scalars, strict=True):
            term = self._raw_mul(ciphertext, int(scalar))
            total = term if total is None else self._raw_add(total, term)
        # phe's sum over no terms would be the int 0; an encryption of 0 with r = 1 is 1.
        return 1 if total is None else total

    def add_plain(self, ciphertexts: Sequence[object], plaintexts: Sequence[int]) -> list[int]:
        """``[[m_i + p_i]]``, p_i residues in [0, n): phe's ``_add_encoded`` (encrypt with r = 1)."""
        values = _checked(ciphertexts, self.n_square)
        if len(values) != len(plaintexts):
            raise ValueError(f"{len(values)} ciphertexts but {len(plaintexts)} plaintexts")
        results = []
        for index, (ciphertext, plaintext) in enumerate(zip(values, plaintexts, strict=True)):
            plaintext = int(plaintext)
            if not 0 <= plaintext < self.n:
                raise ValueError(f"plaintext {index} is outside [0, n); encode it first")
            encrypted = int(self.public_key.raw_encrypt(plaintext, r_value=1))
            results.append(self._raw_add(ciphertext, encrypted))
        return results

    def scale(self, ciphertexts: Sequence[object], factors: Sequence[int]) -> list[int]:
        """``[[k_i m_i]]`` per row as phe's ``_raw_mul`` (one powmod each); k_i signed."""
        values = _checked(ciphertexts, self.n_square)
        if len(values) != len(factors):
            raise ValueError(f"{len(values)} ciphertexts but {len(factors)} factors")
        return [self._raw_mul(c, int(k)) for c, k in zip(values, factors, strict=True)]

    def add(self, left: Sequence[object], right: Sequence[object]) -> list[int]:
        """``[[a_i + b_i]]`` per row as phe's ``_raw_add``."""
        lefts, rights = _checked(left, self.n_square), _checked(right, self.n_square)
        if len(lefts) != len(rights):
            raise ValueError(f"{len(lefts)} and {len(rights)} ciphertexts")
        return [self._raw_add(a, b) for a, b in zip(lefts, rights, strict=True)]

    def matvec_t(self, x_q: np.ndarray, ciphertexts: Sequence[object]) -> list[int]:
        """``X^T [[d]]``: f ciphertexts, each a sum of s phe ``_raw_mul`` terms (zeros included).

        Args:
            x_q: (s, f) signed integer array.
            ciphertexts: s ciphertexts under the peer's key.

        Raises:
            ValueError: wrong shape or dtype.
            InvalidPeerData: a ciphertext outside [1, n^2).
        """
        x_q = np.asarray(x_q)
        if x_q.ndim != 2 or not np.issubdtype(x_q.dtype, np.integer):
            raise ValueError(f"x_q must be a 2-d integer array, got {x_q.dtype} {x_q.shape}")
        values = _checked(ciphertexts, self.n_square)
        if x_q.shape[0] != len(values):
            raise ValueError(f"x_q has {x_q.shape[0]} rows but there are {len(values)} ciphertexts")
        return [self._sum_of_products(values, column) for column in x_q.T.tolist()]

    def dot(self, coeffs: Sequence[int], ciphertexts: Sequence[object]) -> int:
        """One ciphertext of ``sum_i coeffs[i] * m_i``, term by term."""
        values = _checked(ciphertexts, self.n_square)
        if len(coeffs) != len(values):
            raise ValueError(f"{len(coeffs)} coefficients but {len(values)} ciphertexts")
        return self._sum_of_products(values, [int(c) for c in coeffs])

    def rerandomize(self, ciphertexts: Sequence[object]) -> list[int]:
        """phe's ``obfuscate``: each ciphertext times ``r**n mod n^2``, r uniform below n."""
        values = _checked(ciphertexts, self.n_square)
        results = []
        for ciphertext in values:
            obfuscator = powmod(self.public_key.get_random_lt_n(), self.n, self.n_square)
            results.append(int(mulmod(ciphertext, obfuscator, self.n_square)))
        return results

    def pack_masked(
        self, ciphertexts: Sequence[object], layout: PackingLayout
    ) -> tuple[list[int], list[int]]:
        """The same packing as the fast engine (masks, Horner order, offsets, obfuscation), with the
        shift ``c * 2**slot_bits`` as phe's ``_raw_mul`` and each addition as ``_raw_add``.

        Returns:
            (packed ciphertexts, the masks R in value order).
        """
        values = _checked(ciphertexts, self.n_square)
        masks = draw_masks(len(values), layout)
        shift = 1 << layout.slot_bits
        packed = []
        for start in range(0, len(values), layout.slots):
            accumulator = values[start]
            for ciphertext in values[start + 1 : start + layout.slots]:
                accumulator = self._raw_add(self._raw_mul(accumulator, shift), ciphertext)
            packed.append(accumulator)
        with_offsets = self.add_plain(packed, packed_offsets(masks, layout))
        return self.rerandomize(with_offsets), masks
