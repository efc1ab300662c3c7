"""The engine interface every modular operation of the protocol goes through, and choosing one.

Two interfaces (``typing.Protocol``): ``OwnKeyOps`` encrypts and decrypts under this party's own key;
``PeerKeyOps`` computes on ciphertexts under the peer's public key. Two implementations of each:
fedlearn's engine (``paillier.OwnKeyEngine``, ``peer.PeerKeyEngine``) and plain ``phe`` as a baseline
(``phe_engine``), chosen by the job's ``[crypto] engine``. The protocol code holds engines only through
these interfaces and does no modular arithmetic of its own, so ``engine = "phe"`` runs the whole
protocol on phe's operations and a benchmark can run identical work on each.

Ciphertexts are integers in [1, n^2) (``int``, or ``gmpy2.mpz`` from the fast engine). Every method
that takes ciphertexts checks that range and raises ``InvalidPeerData`` outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from phe import paillier

from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.packing import PackingLayout
from fedlearn.errors import ConfigError

ENGINES = ("fast", "phe")


class OwnKeyOps(Protocol):
    """Encryption and decryption under this party's own key pair."""

    public_key: paillier.PaillierPublicKey
    #: The published DJN base h_s (sent to the peer at session open), or None.
    djn_base: int | None
    #: Obfuscators to keep ready (the fast engine refills its pool in the background up to it).
    pool_target: int

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """[[m_i]] for residues m_i in [0, n) (encode signed values first); fresh randomness each."""
        ...

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Residues in [0, n) of ciphertexts in [1, n^2)."""
        ...

    def prefill(self, count: int) -> None:
        """Make ``count`` obfuscators ready now (a no-op where there is no pool)."""
        ...

    def close(self) -> None:
        """Stop helper threads or processes; the engine is unusable afterwards."""
        ...


class PeerKeyOps(Protocol):
    """Homomorphic operations on ciphertexts under the peer's public key (no secret needed).

    Results of ``add_plain``, ``scale``, ``add``, ``matvec_t`` and ``dot`` are not re-randomised; what
    leaves the party goes through ``pack_masked`` or ``rerandomize`` first.
    """

    public_key: paillier.PaillierPublicKey

    def add_plain(self, ciphertexts: Sequence[int], plaintexts: Sequence[int]) -> list[int]:
        """[[m_i + p_i]] per row; p_i residues in [0, n)."""
        ...

    def scale(self, ciphertexts: Sequence[int], factors: Sequence[int]) -> list[int]:
        """[[k_i m_i]] = [[m_i]]^k_i per row; k_i signed, a few dozen bits (a negative one costs
        an inversion mod n^2 more)."""
        ...

    def add(self, left: Sequence[int], right: Sequence[int]) -> list[int]:
        """[[a_i + b_i]] = [[a_i]] [[b_i]] per row."""
        ...

    def matvec_t(self, x_q: np.ndarray, ciphertexts: Sequence[int]) -> list[int]:
        """X^T [[d]]: (s, f) signed integer X and s ciphertexts -> f ciphertexts."""
        ...

    def dot(self, coeffs: Sequence[int], ciphertexts: Sequence[int]) -> int:
        """One ciphertext of sum_i coeffs[i] m_i; coefficients signed ints."""
        ...

    def rerandomize(self, ciphertexts: Sequence[int]) -> list[int]:
        """Each ciphertext times fresh randomness the peer cannot relate to anything it sent."""
        ...

    def pack_masked(
        self, ciphertexts: Sequence[int], layout: PackingLayout
    ) -> tuple[list[int], list[int]]:
        """Masked values packed ``layout.slots`` to a ciphertext, re-randomised; and the masks."""
        ...


def own_key_engine(
    kind: str,
    keypair: KeyPair,
    *,
    obfuscation: str = "djn",
    executor: Executor | None = None,
    background: str = "thread",
) -> OwnKeyOps:
    """The engine for encrypting and decrypting under this party's own key.

    ``background`` is where the fast engine fills its obfuscator pool ("thread" or "process").
    """
    if kind == "fast":
        from fedlearn.crypto.paillier import OwnKeyEngine

        return OwnKeyEngine(
            keypair, obfuscation=obfuscation, executor=executor, background=background
        )
    if kind == "phe":
        from fedlearn.crypto.phe_engine import PheOwnKeyEngine

        return PheOwnKeyEngine(keypair)
    raise ConfigError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")


def peer_key_engine(
    kind: str,
    public_key: paillier.PaillierPublicKey,
    *,
    djn_base: int | None,
    executor: Executor | None = None,
) -> PeerKeyOps:
    """The engine for operations under the peer's public key.

    Raises:
        InvalidPeerData: ``djn_base`` is malformed or of small order (``keys.check_djn_base``),
            whichever engine is chosen.
    """
    if djn_base is not None and kind != "fast":  # PeerKeyEngine checks it itself
        from fedlearn.crypto.keys import check_djn_base

        check_djn_base(djn_base, int(public_key.n))
    if kind == "fast":
        from fedlearn.crypto.peer import PeerKeyEngine

        return PeerKeyEngine(public_key, djn_base=djn_base, executor=executor)
    if kind == "phe":
        from fedlearn.crypto.phe_engine import PhePeerKeyEngine

        return PhePeerKeyEngine(public_key)
    raise ConfigError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")
