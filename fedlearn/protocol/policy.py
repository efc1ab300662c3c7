"""What B accepts from a partner (b.toml [policy]), and the check of a training job against it.

The job's parameters arrive in A's OpenSession; B refuses the whole job up front, naming every reason,
rather than failing part way through training. Checks that need the aligned data (enough training rows,
batches larger than B's feature count) come after PSI, in ``train_b.prepare_training``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlearn.crypto.engines import ENGINES
from fedlearn.errors import PolicyViolation
from fedlearn.model import OPTIMIZERS
from fedlearn.protocol import messages as m


@dataclass(frozen=True)
class PeerPolicy:
    """What B accepts (b.toml [policy])."""

    min_key_bits: int = 2048
    min_batch_size: int = 256
    max_epochs: int = 100
    allow_partial_scores: bool = True


def check_train_job(name: str, policy: PeerPolicy, params: m.TrainParams) -> None:
    """Refuse a training job that ``policy`` does not allow.

    ``name`` is B's name, for the message. Raises ``PolicyViolation`` listing every reason at once.
    """
    reasons = []
    if params.key_bits < policy.min_key_bits:
        reasons.append(f"key_bits {params.key_bits} is below the minimum {policy.min_key_bits}")
    if params.batch_size < policy.min_batch_size:
        reasons.append(
            f"batch_size {params.batch_size} is below the minimum {policy.min_batch_size}"
        )
    if params.epochs > policy.max_epochs:
        reasons.append(f"epochs {params.epochs} is above the maximum {policy.max_epochs}")
    if params.epochs < 1:
        reasons.append("epochs must be at least 1")
    if (params.engine or "fast") not in ENGINES:
        reasons.append(f"unknown engine {params.engine!r}")
    if params.optimizer not in OPTIMIZERS:
        reasons.append(f"unknown optimizer {params.optimizer!r}")
    if not 0.0 <= params.validation_fraction < 1.0:
        reasons.append("validation_fraction must be in [0, 1)")
    if not 6 <= params.score_frac_bits <= 24:
        reasons.append("score_frac_bits must be in [6, 24]")
    if not 2 <= params.preprocess.feature_bits <= 16:
        reasons.append("feature_bits must be in [2, 16]")
    if not params.learning_rate > 0:
        reasons.append("learning_rate must be positive")
    if reasons:
        raise PolicyViolation(f"{name} refuses the training job: " + "; ".join(reasons))
