"""The training job file (job.toml), read by A's node.

[data]
dataset = "vip"                 # A's dataset name (in a.toml)
peer_dataset = "vip"            # B's dataset name (in b.toml); defaults to `dataset`
label_column = "vip_30d"        # overrides the dataset's label_column
target_description = "30-day VIP buyers"   # how the report names the positive class
validation_fraction = 0.2
seed = 42

[train]
epochs = "auto"                 # "auto": until converged, at most max_epochs; or a whole number
max_epochs = 100                # the "auto" budget (B's default policy allows 100)
batch_size = "auto"             # "auto": 1024, or as many rows as the wider party's columns need; or a number
learning_rate = 0.1             # adam's first step size; it decays as 1 / (1 + step / 20)
optimizer = "adam"              # sgd | momentum | adam (each party keeps its own state)
l2 = 1.0                        # L2 in scikit-learn's units (1/C on the summed loss; 1.0 = its default)
l1 = 0.0
eval_every = 0                  # validation metrics every k epochs (costs a partial-score exchange)

[early_stopping]
monitor = "score_change"        # score_change | loss | none
tolerance = 0.02                # converged when the joint score moves less than this (logits, RMS) ...
patience = 2                    # ... per epoch, this many epochs in a row


[crypto]
key_bits = 2048
obfuscation = "djn"             # djn | standard
score_frac_bits = 12            # fixed-point bits of the partial score inside the residual

[preprocess]
clip = 4.0
rare_min_fraction = 0.01
max_categories = 50
binning = "none"                # none | quantile
bins = 10
feature_bits = 8

[privacy]
gradient_noise = 0.0            # label DP: std of Gaussian noise A adds to B's mean gradient per batch
min_rows_per_column = 8         # batch rows per feature column, either party (docs/threat-model.md)

The intercept starts at the training rows' log-odds; each party's model is the average of its
weights over the last epoch. The run records why it stopped (``stopped`` in A's model metadata):
converged (with the tolerance), the epoch budget used up (not converged), or cancelled.
"loss" watches the quadratic bound of the loss that the protocol evaluates under encryption; it can
rise while the model still improves, so it is not the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fedlearn.config import Section, parse_toml, root_section
from fedlearn.constraints import Constraints, Interval, Options
from fedlearn.errors import ConfigError
from fedlearn.protocol.messages import PreprocessParams, TrainParams

#: Early-stopping monitors: the joint score's change per epoch, the loss bound, or none.
MONITORS = ("score_change", "loss", "none")
#: The "auto" epoch budget: B's default policy (``max_epochs = 100``) accepts it.
DEFAULT_MAX_EPOCHS = 100
#: ``batch_size = "auto"`` starts here; a party whose columns need more rows per batch (its
#: ``min_rows_per_column``) says how many, and the job runs again with that many (party_a.train).
DEFAULT_BATCH_SIZE = 1024

#: The ranges of the job's training and preprocessing parameters are their types' own tables,
#: the same ones B's policy check reads (fedlearn.constraints).
TRAIN = TrainParams._parameter_constraints
PREPROCESS = PreprocessParams._parameter_constraints


@dataclass(frozen=True)
class JobSpec:
    """A training job: what A sends B (``params``) and A's own settings (checked by the table)."""

    _parameter_constraints: ClassVar[Constraints] = {
        "monitor": Options(MONITORS),
        "max_epochs": Interval(int, 1, 10_000),
        "tolerance": Interval(float, 0.0, 1.0),
        "patience": Interval(int, 1, 10_000),
        "obfuscation": Options(("djn", "standard")),
        "eval_every": Interval(int, 0, 10_000),
        "gradient_noise": Interval(float, 0.0, 10.0),
        "min_rows_per_column": Interval(int, 1, 4096),
    }

    dataset: str
    peer_dataset: str
    label_column: str | None
    params: TrainParams
    monitor: str
    tolerance: float
    patience: int
    obfuscation: str
    eval_every: int
    source: str
    target_description: str | None = None
    gradient_noise: float = 0.0
    epochs_auto: bool = False  # True: ``params.epochs`` is a budget, the run stops when converged
    min_rows_per_column: int = 8
    batch_auto: bool = False  # True: ``params.batch_size`` may grow to fit the parties' columns


JOB = JobSpec._parameter_constraints


def _read(section: Section, table: Constraints, key: str, default: Any) -> Any:
    return section.get_constrained(key, table[key], default)


def parse_job(text: str, source: Path | str = "job.toml") -> JobSpec:
    """Parse and check a job file's text; ConfigError names the key and what was expected."""
    path = Path(source)
    root = root_section(parse_toml(text, path), path)
    data = root.get_table("data", required=True)
    dataset = data.get_name_value("dataset", required=True)
    peer_dataset = data.get_name_value("peer_dataset", dataset)
    label_column = data.get_str("label_column")
    target_description = data.get_str("target_description")
    validation_fraction = _read(data, TRAIN, "validation_fraction", 0.2)
    seed = _read(data, TRAIN, "seed", 42)
    data.finish()

    train = root.get_table("train")
    epochs, epochs_auto = _epochs(train)
    batch_size, batch_auto = _batch_size(train)
    learning_rate = _read(train, TRAIN, "learning_rate", 0.1)
    optimizer = _read(train, TRAIN, "optimizer", "adam")
    l2 = _read(train, TRAIN, "l2", 1.0)
    l1 = _read(train, TRAIN, "l1", 0.0)
    eval_every = _read(train, JOB, "eval_every", 0)
    train.finish()

    stopping = root.get_table("early_stopping")
    monitor = _read(stopping, JOB, "monitor", "score_change")
    tolerance = _read(stopping, JOB, "tolerance", 0.02 if monitor == "score_change" else 1e-4)
    patience = _read(stopping, JOB, "patience", 2)
    stopping.finish()

    crypto = root.get_table("crypto")
    key_bits = _read(crypto, TRAIN, "key_bits", 2048)
    obfuscation = _read(crypto, JOB, "obfuscation", "djn")
    score_frac_bits = _read(crypto, TRAIN, "score_frac_bits", 12)
    engine = _read(crypto, TRAIN, "engine", "fast")
    crypto.finish()

    pre = root.get_table("preprocess")
    defaults = PreprocessParams()
    preprocess = PreprocessParams(
        **{key: _read(pre, PREPROCESS, key, getattr(defaults, key)) for key in PREPROCESS}
    )
    pre.finish()

    privacy = root.get_table("privacy")
    gradient_noise = _read(privacy, JOB, "gradient_noise", 0.0)
    min_rows_per_column = _read(privacy, JOB, "min_rows_per_column", 8)
    privacy.finish()
    root.finish()

    params = TrainParams(
        epochs=epochs,
        batch_size=batch_size,
        validation_fraction=validation_fraction,
        seed=seed,
        optimizer=optimizer,
        learning_rate=learning_rate,
        l2=l2,
        l1=l1,
        key_bits=key_bits,
        score_frac_bits=score_frac_bits,
        preprocess=preprocess,
        engine=engine,
    )
    return JobSpec(
        dataset,
        peer_dataset,
        label_column,
        params,
        monitor,
        tolerance,
        patience,
        obfuscation,
        eval_every,
        str(source),
        target_description,
        gradient_noise,
        epochs_auto,
        min_rows_per_column,
        batch_auto,
    )


def _batch_size(train: Section) -> tuple[int, bool]:
    """([train] batch_size to start with, whether it is "auto").

    ``batch_size = "auto"`` (the default) starts at ``DEFAULT_BATCH_SIZE`` and grows when a
    party's columns need more rows per batch (its ``min_rows_per_column``): that party's refusal
    names the size, and the job runs again with it. A whole number is used as it is.
    """
    if _is_auto(train, "batch_size"):
        return DEFAULT_BATCH_SIZE, True
    return _read(train, TRAIN, "batch_size", DEFAULT_BATCH_SIZE), False


def _is_auto(section: Section, key: str) -> bool:
    """Whether ``key`` is "auto" (also when it is absent); a number is not, other text is refused."""
    value = section.data.get(key, "auto")
    if not isinstance(value, str):
        return False
    section.get_str(key)  # mark the key as read
    if value != "auto":
        raise ConfigError(f'{section.where(key)}: expected "auto" or a whole number, got {value!r}')
    return True


def _epochs(train: Section) -> tuple[int, bool]:
    """([train] epochs as the budget B checks, whether it is "auto"); ``max_epochs`` is the budget.

    ``epochs = "auto"`` (the default) trains until converged, at most ``max_epochs``; a whole number
    is the budget itself (``max_epochs`` is then refused as contradictory).
    """
    if _is_auto(train, "epochs"):
        return _read(train, JOB, "max_epochs", DEFAULT_MAX_EPOCHS), True
    if "max_epochs" in train.data:
        raise ConfigError(
            f'{train.where("max_epochs")}: only used with epochs = "auto"; with a whole number '
            "of epochs that number is the budget"
        )
    return _read(train, TRAIN, "epochs", None), False
