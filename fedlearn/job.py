"""The training job file (job.toml), read by A's node.

    [data]
    dataset = "vip"                 # A's dataset name (in a.toml)
    peer_dataset = "vip"            # B's dataset name (in b.toml); defaults to `dataset`
    label_column = "vip_30d"        # overrides the dataset's label_column
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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedlearn.config import parse_toml, root_section
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


def parse_job(text: str, source: Path | str = "job.toml") -> JobSpec:
    """Parse and check a job file's text; ConfigError names the key and what was expected."""
    path = Path(source)
    root = root_section(parse_toml(text, path), path)
    data = root.table("data", required=True)
    dataset = data.name_value("dataset", required=True)
    peer_dataset = data.name_value("peer_dataset", dataset)
    label_column = data.str("label_column")
    validation_fraction = data.float("validation_fraction", 0.2, minimum=0.0, maximum=0.9)
    seed = data.int("seed", 42, minimum=0, maximum=2**63 - 1)
    data.finish()

    train = root.table("train")
    epochs = train.int("epochs", 10, minimum=1, maximum=10_000)
    batch_size = train.int("batch_size", 1024, minimum=1)
    learning_rate = train.float("learning_rate", 0.02, minimum=1e-12)
    optimizer = train.choice("optimizer", OPTIMIZERS, "momentum")
    l2 = train.float("l2", 0.0, minimum=0.0)
    l1 = train.float("l1", 0.0, minimum=0.0)
    eval_every = train.int("eval_every", 0, minimum=0)
    train.finish()

    stopping = root.table("early_stopping")
    monitor = stopping.choice("monitor", ("loss", "weights", "none"), "loss")
    tolerance = stopping.float("tolerance", 1e-4, minimum=0.0)
    patience = stopping.int("patience", 2, minimum=1)
    stopping.finish()

    crypto = root.table("crypto")
    key_bits = crypto.int("key_bits", 2048, minimum=256, maximum=8192)
    obfuscation = crypto.choice("obfuscation", ("djn", "standard"), "djn")
    score_frac_bits = crypto.int("score_frac_bits", 12, minimum=6, maximum=24)
    crypto.finish()

    pre = root.table("preprocess")
    preprocess = PreprocessParams(
        clip=pre.float("clip", 4.0, minimum=0.5, maximum=100.0),
        rare_min_fraction=pre.float("rare_min_fraction", 0.01, minimum=0.0, maximum=0.5),
        max_categories=pre.int("max_categories", 50, minimum=1, maximum=10_000),
        binning=pre.choice("binning", ("none", "quantile"), "none"),
        bins=pre.int("bins", 10, minimum=2, maximum=1000),
        feature_bits=pre.int("feature_bits", 8, minimum=2, maximum=16),
    )
    pre.finish()
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
    )
    return JobSpec(dataset, peer_dataset, label_column, params, monitor, tolerance, patience,
                   obfuscation, eval_every, str(source))
