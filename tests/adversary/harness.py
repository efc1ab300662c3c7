"""A dishonest partner against the other party's real code, in memory (issue 11).

Either role can be replaced:

- ``ASession`` is a *dishonest A*: the real ``RoleB`` behind the real ``InMemoryPeer`` (so every
  message goes through its protobuf encoding), and A's own real pieces (PSI, preprocessing,
  ``TrainingA``) that the attack calls honestly where it wants to and replaces where it cheats.
- ``DishonestB`` wraps the real ``RoleB`` and overrides the RPCs a dishonest B tampers with; the
  real A (``train``) runs against it unchanged.

Everything is small: FATE's breast split, 512-bit keys, seconds per test. Ground truth (B's partial
scores, masks, weights) is read from the real role's state, only to score what an attack extracted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pandas as pd

from fedlearn.crypto.keys import KeyPair, generate_keypair, public_key_to_bytes
from fedlearn.crypto.packing import PackingLayout
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes
from fedlearn.data import PartyTable, load_party_table
from fedlearn.model import epoch_batches
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer, RecordedMessage
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.protocol.steps import SCORE_CLIP, feature_party_scores
from fedlearn.protocol.train_a import Timer, TrainingA, peer_engine_for
from party_a.align import open_and_align
from party_a.train import start_training
from party_b.node import NodeB as RoleB
from tests.protocol.harness import TEST_POLICY, TEST_ROWS_PER_COLUMN, fate_specs

#: The job every attack runs: breast (455 training rows), 3 batches of ~151 rows, 512-bit keys.
PARAMS = m.TrainParams(epochs=6, batch_size=128, key_bits=512, seed=42, learning_rate=0.1)
#: Bits of B's fixed-point partial score v (0 <= v <= 2 K 2^F2 = 2^20).
SCORE_BITS = 21
B_LOGGER = "fedlearn"


def score_of(v: int, frac: int = PARAMS.score_frac_bits) -> float:
    """B's partial score u_B from its fixed-point v."""
    return (int(v) - (SCORE_CLIP << frac)) / 2.0**frac


def breast_role(tmp: Path, policy: PeerPolicy = TEST_POLICY) -> RoleB:
    _, b_spec = fate_specs("breast")
    return RoleB(
        name="party-b",
        datasets={"d": b_spec},
        policy=policy,
        model_dir=tmp / "b-models",
        allowed_partners={"party-a"},
    )


def breast_a_table() -> PartyTable:
    a_spec, _ = fate_specs("breast")
    return load_party_table(a_spec.path, id_column="id", label_column="y", require_label=True)


def wide_a_table(tmp: Path, categories: int = 30, seed: int = 0) -> PartyTable:
    """Breast's A side plus one categorical column of ``categories`` values: a wide A after one-hot."""
    a_spec, _ = fate_specs("breast")
    frame = pd.read_csv(a_spec.path)
    rng = np.random.default_rng(seed)
    frame["region"] = [f"r{k}" for k in rng.integers(0, categories, len(frame))]
    path = tmp / "wide_a.csv"
    frame.to_csv(path, index=False)
    return load_party_table(
        path, id_column="id", label_column="y", categorical=["region"], require_label=True
    )


@dataclass
class ASession:
    """A dishonest A's view of one training session with the real B (aligned, not yet trained)."""

    role: RoleB
    peer: InMemoryPeer
    record: list[RecordedMessage]
    session_id: str
    training: TrainingA
    train_rows: np.ndarray
    params: m.TrainParams
    keypair: KeyPair

    @property
    def b_state(self) -> Any:
        """B's real training state (ground truth only); None once B dropped the session."""
        session = self.role._sessions.get(self.session_id)
        return None if session is None else session.training

    @property
    def layout(self) -> PackingLayout:
        """A's gradient layout under B's key: what B decrypts for A."""
        return self.training.own_layout

    def batch_rows(self, epoch: int, batch: int) -> np.ndarray:
        batches = epoch_batches(self.train_rows, self.params.batch_size, self.params.seed, epoch)
        return np.asarray(batches[batch])

    def honest_epoch(self, epoch: int) -> None:
        batches = epoch_batches(self.train_rows, self.params.batch_size, self.params.seed, epoch)
        self.training.start_epoch()
        for batch, rows in enumerate(batches):
            self.training.run_batch(epoch, batch, rows)

    def forward(self, epoch: int, batch: int) -> list[Any]:
        """A's honest BatchForward; returns B's encrypted partial scores [[v]]_B, one per row."""
        training = self.training
        rows = self.batch_rows(epoch, batch)
        u_a = training.features.x[rows] @ training.weights
        from fedlearn.protocol.steps import label_party_terms

        alpha, beta = label_party_terms(u_a, training.labels[rows], self.params.score_frac_bits)
        own_n = int(training.own.public_key.n)
        s = len(rows)
        gamma = [0] * s  # the tangent alone: no curvature correction
        encrypted = training.own.encrypt(training.own_codec.encode_int(alpha + beta + gamma))
        reply = self.peer.batch_forward(
            m.BatchForwardRequest(
                m.BatchHeader(self.session_id, epoch, batch),
                ciphertexts_to_bytes(encrypted[:s], own_n),
                ciphertexts_to_bytes(encrypted[s : 2 * s], own_n),
                curvatures=ciphertexts_to_bytes(encrypted[2 * s :], own_n),
            )
        )
        return ciphertexts_from_bytes(reply.ciphertexts, self.peer_n, expected_count=s)

    def true_scores(self, rows: np.ndarray) -> list[int]:
        """B's fixed-point v for ``rows`` with its current weights (ground truth)."""
        state = self.b_state
        return feature_party_scores(state.features.x[rows] @ state.weights, PARAMS.score_frac_bits)

    @property
    def peer_n(self) -> int:
        return int(self.training.peer_engine.public_key.n)

    def gradient(self, epoch: int, batch: int, packed: list[Any], count: int) -> Any:
        return self.peer.batch_gradient(
            m.BatchGradientRequest(
                m.BatchHeader(self.session_id, epoch, batch),
                ciphertexts_to_bytes(packed, self.peer_n),
                value_count=count,
            )
        )


def open_a_session(
    tmp: Path,
    *,
    params: m.TrainParams = PARAMS,
    policy: PeerPolicy = TEST_POLICY,
    keypair: KeyPair | None = None,
    djn_base: int | None = None,
    table: PartyTable | None = None,
    rows_per_column: int = TEST_ROWS_PER_COLUMN,
) -> ASession:
    """Open and align a training session with the real B; A's keys may be the attacker's own.

    ``table`` replaces A's breast table; ``rows_per_column`` is A's own [privacy] setting.
    """
    role = breast_role(tmp, policy)
    record: list[RecordedMessage] = []
    peer = InMemoryPeer(role, identity="party-a", record=record)
    table = table or breast_a_table()
    keypair = keypair or generate_keypair(params.key_bits)
    own = OwnKeyEngine(keypair)
    base = own.djn_base if djn_base is None else djn_base
    request = m.OpenSessionRequest(
        purpose=m.Purpose.TRAIN,
        dataset="d",
        train=params,
        paillier_key=m.PaillierKey(
            n=public_key_to_bytes(own.public_key), djn_base=int_to_bytes(base)
        ),
    )
    alignment = open_and_align(peer, request, [str(i) for i in table.ids])
    start = start_training(
        peer,
        own=own,
        alignment=alignment,
        table=table,
        params=params,
        peer_engine=peer_engine_for(alignment.session.paillier_key, params, None),
        timer=Timer(),
        min_rows_per_column=rows_per_column,
    )
    session_id = alignment.session.session_id
    return ASession(
        role, peer, record, session_id, start.training, start.train_rows, params, keypair
    )


def close(session: ASession) -> None:
    session.training.own.close()
    session.role.close()


def horner(slot_ciphertexts: list[Any], layout: PackingLayout, nsquare: int) -> Any:
    """Pack per-slot ciphertexts into one, first most significant (as ``pack_masked`` does)."""
    modulus = gmpy2.mpz(nsquare)
    shift = gmpy2.mpz(1) << layout.slot_bits
    accumulator = gmpy2.mpz(slot_ciphertexts[0])
    for ciphertext in slot_ciphertexts[1:]:
        accumulator = gmpy2.powmod(accumulator, shift, modulus) * ciphertext % modulus
    return accumulator


def weighted_sum(ciphertexts: list[Any], exponents: list[int], nsquare: int) -> Any:
    """[[sum_i e_i m_i]] for non-negative e_i."""
    modulus = gmpy2.mpz(nsquare)
    total = gmpy2.mpz(1)
    for ciphertext, exponent in zip(ciphertexts, exponents, strict=True):
        total = total * gmpy2.powmod(gmpy2.mpz(ciphertext), exponent, modulus) % modulus
    return total


def plain(value: int, n: int) -> Any:
    """A trivial encryption of ``value`` (randomness 1): (1 + n)^value = 1 + value n mod n^2."""
    return gmpy2.mpz(1 + (value % n) * n) % (gmpy2.mpz(n) ** 2)


@dataclass
class DishonestB:
    """The real ``RoleB`` with some RPCs replaced; ``InMemoryPeer`` calls it as it would RoleB."""

    real: RoleB
    overrides: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.real.name

    def __getattr__(self, rpc: str) -> Any:
        override = self.overrides.get(rpc)
        real = getattr(self.real, rpc)
        if override is None:
            return real

        def call(request: Any, partner: str | None) -> Any:
            return override(self, real, request, partner)

        return call


def b_log_records(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
