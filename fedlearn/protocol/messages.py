"""Typed messages between party A and party B, one dataclass per protobuf message of PeerService.

Field names and types mirror ``protos/fedlearn/v1/peer.proto`` one to one; ``fedlearn.protocol.wire``
converts between the two. Bulk payloads stay ``bytes`` here (fixed-width big-endian ciphertexts, 32-byte
PSI points, little-endian uint32 indices or float64 scores); the role code decodes and checks them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from fedlearn.constraints import Constraints, Interval, Options
from fedlearn.crypto.engines import ENGINES
from fedlearn.model import OPTIMIZERS
from fedlearn.preprocess import PreprocessParams


class Purpose(enum.IntEnum):
    UNSPECIFIED = 0
    ALIGN = 1
    TRAIN = 2
    SCORE = 3


class RowSubset(enum.IntEnum):
    UNSPECIFIED = 0
    ALIGNED = 1
    VALIDATION = 2


@dataclass(frozen=True)
class PaillierKey:
    n: bytes = b""
    djn_base: bytes = b""


# PreprocessParams is one type with the preprocessing's own parameters (fedlearn.preprocess).
__all__ = ["PreprocessParams"]


@dataclass(frozen=True)
class TrainParams:
    """The training job as A sends it to B; A's job parser and B's policy check it against
    ``_parameter_constraints`` (B's own limits, ``PeerPolicy``, come on top)."""

    _parameter_constraints: ClassVar[Constraints] = {
        "epochs": Interval(int, 1, 10_000),
        "batch_size": Interval(int, 1, 100_000_000),
        "validation_fraction": Interval(float, 0.0, 0.9),
        "seed": Interval(int, 0, 2**63 - 1),
        "optimizer": Options(OPTIMIZERS),
        # Above 10 no logistic regression on clipped features converges; 1e308 overflows.
        "learning_rate": Interval(float, 0.0, 10.0, closed="right"),
        "l2": Interval(float, 0.0, 1e6),  # 1/C: C down to 1e-6
        "l1": Interval(float, 0.0, 1e6),
        # Two primes of whole 32-bit words; B's policy bounds it further (max_key_bits).
        "key_bits": Interval(int, 256, 8192, step=64),
        "score_frac_bits": Interval(int, 6, 24),  # fixed-point bits of u_B in the residual
        "engine": Options(ENGINES),
    }

    epochs: int = 100
    batch_size: int = 1024
    validation_fraction: float = 0.2
    seed: int = 0
    optimizer: str = "adam"
    learning_rate: float = 0.1
    l2: float = 1.0
    l1: float = 0.0
    key_bits: int = 2048
    score_frac_bits: int = 12
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    engine: str = "fast"


#: The version of the training messages (BatchForward to EpochLoss) this release speaks, sent both
#: ways at OpenSession; a partner on another version is refused before any work. 2: the corrected
#: residual (December 2026). A node from before sends 0 (the field did not exist).
TRAINING_PROTOCOL = 2


@dataclass(frozen=True)
class OpenSessionRequest:
    purpose: Purpose = Purpose.UNSPECIFIED
    dataset: str = ""
    psi_salt: bytes = b""
    train: TrainParams = field(default_factory=TrainParams)
    paillier_key: PaillierKey = field(default_factory=PaillierKey)
    model_id: str = ""
    job_id: str = ""  # TRAIN: A's job id, B's checkpoint key (with the partner)
    resume_epochs: tuple[int, ...] = ()  # resume: the epochs A holds checkpoints of
    # TRAIN: the version A speaks (a message parsed from an older node's bytes holds 0)
    training_protocol: int = TRAINING_PROTOCOL


@dataclass(frozen=True)
class OpenSessionResponse:
    session_id: str = ""
    psi_salt: bytes = b""
    paillier_key: PaillierKey = field(default_factory=PaillierKey)
    checkpoint_epochs: tuple[int, ...] = ()  # resume: the epochs B holds for this job and partner
    resume_epoch: int = 0  # resume: the latest epoch both hold (0: from the start)
    training_protocol: int = 0  # TRAIN: the version B speaks


@dataclass(frozen=True)
class PsiBlindRequest:
    session_id: str = ""
    points: bytes = b""


@dataclass(frozen=True)
class PsiBlindResponse:
    accepted: int = 0


@dataclass(frozen=True)
class PsiPeerSetRequest:
    session_id: str = ""


@dataclass(frozen=True)
class PsiPeerSetResponse:
    points: bytes = b""
    total: int = 0


@dataclass(frozen=True)
class PsiResultRequest:
    session_id: str = ""
    peer_points: bytes = b""


@dataclass(frozen=True)
class PsiResultResponse:
    intersection_size: int = 0
    points: bytes = b""


@dataclass(frozen=True)
class BatchHeader:
    session_id: str = ""
    epoch: int = 0
    batch: int = 0


@dataclass(frozen=True)
class BatchForwardRequest:
    header: BatchHeader = field(default_factory=BatchHeader)
    ciphertexts: bytes = b""
    slopes: bytes = b""
    reuse_slopes: bool = False  # no slopes: B reuses the [[beta]]_A it holds for the batch's rows
    curvatures: bytes = b""  # [[gamma]]_A per row, sent with the slopes
    held_basis: bool = False  # B uses the curvature basis w it holds (a resumed session)


@dataclass(frozen=True)
class BatchForwardResponse:
    ciphertexts: bytes = b""
    loss_term: bytes = b""
    curvature_basis: bytes = b""  # [[w]]_B per row, when A sent curvatures


@dataclass(frozen=True)
class BatchGradientRequest:
    header: BatchHeader = field(default_factory=BatchHeader)
    packed_ciphertexts: bytes = b""
    value_count: int = 0


@dataclass(frozen=True)
class BatchGradientResponse:
    packed_ciphertexts: bytes = b""
    masked_values: bytes = b""
    value_count: int = 0


@dataclass(frozen=True)
class BatchUpdateRequest:
    header: BatchHeader = field(default_factory=BatchHeader)
    masked_values: bytes = b""


@dataclass(frozen=True)
class BatchUpdateResponse:
    weight_change_norm: float = 0.0
    score_mean: float = 0.0  # after an epoch's last batch: B's scores over the epoch's batches
    score_std: float = 0.0


@dataclass(frozen=True)
class EpochLossRequest:
    session_id: str = ""
    epoch: int = 0
    ciphertext: bytes = b""
    class_sum: bytes = b""  # [[S_1 + R_S]]_B: B's v summed over the epoch's positive rows, masked


@dataclass(frozen=True)
class EpochLossResponse:
    value: bytes = b""
    class_value: bytes = b""


@dataclass(frozen=True)
class PartialScoresRequest:
    session_id: str = ""
    subset: RowSubset = RowSubset.UNSPECIFIED


@dataclass(frozen=True)
class PartialScoresResponse:
    scores: bytes = b""


@dataclass(frozen=True)
class CommitModelRequest:
    session_id: str = ""
    model_id: str = ""


@dataclass(frozen=True)
class CommitModelResponse:
    mean_partial_score: float = 0.0


@dataclass(frozen=True)
class DeleteModelRequest:
    model_id: str = ""


@dataclass(frozen=True)
class DeleteModelResponse:
    pass


class ShardState(enum.IntEnum):
    UNSPECIFIED = 0
    INTACT = 1
    MISSING = 2
    DAMAGED = 3


@dataclass(frozen=True)
class CheckModelsRequest:
    model_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckModelsResponse:
    states: tuple[int, ...] = ()  # ShardState values, one per requested id
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloseSessionRequest:
    session_id: str = ""
    discard: bool = False  # the job was cancelled: B drops its checkpoints (never resumed)


@dataclass(frozen=True)
class CloseSessionResponse:
    pass
