"""What B accepts from a partner (b.toml [policy]), and the check of a training job against it.

The job's parameters arrive in A's OpenSession; B refuses the whole job up front, naming every reason,
rather than failing part way through training. Checks that need the aligned data (enough training rows,
batches larger than B's feature count) come after PSI, in ``train_b.prepare_training``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from fedlearn.constraints import Constraints, Interval, violations
from fedlearn.errors import PolicyViolation
from fedlearn.protocol import messages as m


@dataclass(frozen=True)
class PeerPolicy:
    """What B accepts (b.toml [policy]); b.toml is read against ``_parameter_constraints``."""

    _parameter_constraints: ClassVar[Constraints] = {
        "min_key_bits": Interval(int, 256, None),
        # Key generation and every Paillier operation grow as the cube of the key size: a
        # 16384-bit key would cost B minutes of CPU and gigabytes per request.
        "max_key_bits": Interval(int, 256, 16384),
        "min_batch_size": Interval(int, 1, None),
        "max_epochs": Interval(int, 1, None),
        "min_rows_per_column": Interval(int, 1, 4096),
        # A session nobody has used for this long is dropped with its helper process: A renews
        # the lease with every request, so only a vanished partner's sessions expire.
        "session_lease_s": Interval(float, 5.0, 86_400.0),
        "max_sessions": Interval(int, 1, 10_000),
        "max_sessions_per_partner": Interval(int, 1, 10_000),
        # Training sessions each hold B's key and an obfuscator helper process (~200 MB).
        "max_training_sessions": Interval(int, 1, 1_000),
    }

    min_key_bits: int = 2048
    max_key_bits: int = 4096
    min_batch_size: int = 256
    max_epochs: int = 100
    session_lease_s: float = 300.0
    max_sessions: int = 16
    max_sessions_per_partner: int = 4
    max_training_sessions: int = 2
    allow_partial_scores: bool = True
    #: Batch rows per feature column, at least, for either party (docs/threat-model.md: with many
    #: columns per row a party solves its own gradients for the other's per-row values).
    min_rows_per_column: int = 8


def check_training_protocol(name: str, partner: str, version: int) -> None:
    """Refuse a partner whose training messages are another version than this release's.

    ``name`` is this node's name, ``partner`` the other's; raises ``PolicyViolation`` saying what
    to do (both nodes on one fedlearn release) rather than failing at the first batch.
    """
    if version == m.TRAINING_PROTOCOL:
        return
    theirs = (
        f"version {version}" if version else "an older version (from before versions were sent)"
    )
    raise PolicyViolation(
        f"{partner} speaks {theirs} of the training protocol and {name} version "
        f"{m.TRAINING_PROTOCOL}: run the same fedlearn release on both nodes"
    )


def check_train_job(name: str, policy: PeerPolicy, params: m.TrainParams) -> None:
    """Refuse a training job that ``policy`` does not allow, or whose parameters are out of range.

    The ranges are the parameter types' own tables (``TrainParams``, ``PreprocessParams``), the same
    ones A's job parser reads. ``name`` is B's name, for the message. Raises ``PolicyViolation``
    listing every reason at once (with ``min_batch_size`` when a larger batch alone would pass).
    """
    reasons = []
    if params.key_bits < policy.min_key_bits:
        reasons.append(f"key_bits {params.key_bits} is below the minimum {policy.min_key_bits}")
    if params.key_bits > policy.max_key_bits:
        reasons.append(f"key_bits {params.key_bits} is above the maximum {policy.max_key_bits}")
    if params.batch_size < policy.min_batch_size:
        reasons.append(
            f"batch_size {params.batch_size} is below the minimum {policy.min_batch_size}"
        )
    if params.epochs > policy.max_epochs:
        reasons.append(f"epochs {params.epochs} is above the maximum {policy.max_epochs}")
    values = {spec.name: getattr(params, spec.name) for spec in fields(params)}
    values["engine"] = params.engine or "fast"  # a job from before the engine was sent
    reasons += violations(m.TrainParams._parameter_constraints, values)
    reasons += violations(m.PreprocessParams._parameter_constraints, params.preprocess.to_dict())
    if reasons:
        # When the batch size is the only reason, the refusal names the size that would pass: a
        # job with batch_size = "auto" runs again with it (party_a.train).
        only_batch = len(reasons) == 1 and params.batch_size < policy.min_batch_size
        raise PolicyViolation(
            f"{name} refuses the training job: " + "; ".join(reasons),
            min_batch_size=policy.min_batch_size if only_batch else 0,
        )
