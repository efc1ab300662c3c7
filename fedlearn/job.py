"""The training job file (job.toml), read by A's node.

[data]
dataset = "vip"                 # A's dataset name (in a.toml)
peer_dataset = "vip"            # B's dataset name (in b.toml); defaults to `dataset`
label_column = "vip_30d"        # overrides the dataset's label_column
target_description = "30-day VIP buyers"   # how the report names the positive class
validation_fraction = 0.2
seed = 42

[train]
epochs = 10
batch_size = 1024
learning_rate = 0.02
optimizer = "momentum"          # sgd | momentum | adam (each party keeps its own state)
l2 = 0.0
l1 = 0.0
eval_every = 0                  # validation metrics every k epochs (costs a partial-score exchange)

[early_stopping]
monitor = "loss"                # loss | weights | none
tolerance = 1e-4                # stop when the improvement is below this ...
patience = 2                    # ... for this many epochs in a row

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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedlearn.config import parse_toml, root_section
from fedlearn.crypto.engines import ENGINES
from fedlearn.model import OPTIMIZERS
from fedlearn.protocol.messages import PreprocessParams, TrainParams


@dataclass(frozen=True)
class JobSpec:
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


def parse_job(text: str, source: Path | str = "job.toml") -> JobSpec:
    """Parse and check a job file's text; ConfigError names the key and what was expected."""
    path = Path(source)
    root = root_section(parse_toml(text, path), path)
    data = root.get_table("data", required=True)
    dataset = data.get_name_value("dataset", required=True)
    peer_dataset = data.get_name_value("peer_dataset", dataset)
    label_column = data.get_str("label_column")
    target_description = data.get_str("target_description")
    validation_fraction = data.get_float("validation_fraction", 0.2, minimum=0.0, maximum=0.9)
    seed = data.get_int("seed", 42, minimum=0, maximum=2**63 - 1)
    data.finish()

    train = root.get_table("train")
    epochs = train.get_int("epochs", 10, minimum=1, maximum=10_000)
    batch_size = train.get_int("batch_size", 1024, minimum=1)
    learning_rate = train.get_float("learning_rate", 0.02, minimum=1e-12)
    optimizer = train.get_choice("optimizer", OPTIMIZERS, "momentum")
    l2 = train.get_float("l2", 0.0, minimum=0.0)
    l1 = train.get_float("l1", 0.0, minimum=0.0)
    eval_every = train.get_int("eval_every", 0, minimum=0)
    train.finish()

    stopping = root.get_table("early_stopping")
    monitor = stopping.get_choice("monitor", ("loss", "weights", "none"), "loss")
    tolerance = stopping.get_float("tolerance", 1e-4, minimum=0.0)
    patience = stopping.get_int("patience", 2, minimum=1)
    stopping.finish()

    crypto = root.get_table("crypto")
    key_bits = crypto.get_int("key_bits", 2048, minimum=256, maximum=8192)
    obfuscation = crypto.get_choice("obfuscation", ("djn", "standard"), "djn")
    score_frac_bits = crypto.get_int("score_frac_bits", 12, minimum=6, maximum=24)
    engine = crypto.get_choice("engine", ENGINES, "fast")
    crypto.finish()

    pre = root.get_table("preprocess")
    preprocess = PreprocessParams(
        clip=pre.get_float("clip", 4.0, minimum=0.5, maximum=100.0),
        rare_min_fraction=pre.get_float("rare_min_fraction", 0.01, minimum=0.0, maximum=0.5),
        max_categories=pre.get_int("max_categories", 50, minimum=1, maximum=10_000),
        binning=pre.get_choice("binning", ("none", "quantile"), "none"),
        bins=pre.get_int("bins", 10, minimum=2, maximum=1000),
        feature_bits=pre.get_int("feature_bits", 8, minimum=2, maximum=16),
    )
    pre.finish()

    privacy = root.get_table("privacy")
    gradient_noise = privacy.get_float("gradient_noise", 0.0, minimum=0.0, maximum=10.0)
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
    )
