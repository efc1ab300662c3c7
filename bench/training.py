"""Shared pieces of the training benchmarks: run a job through both nodes, read A's timings, compare.

Every benchmark here runs the two nodes as real processes on loopback with mTLS
(:mod:`bench.nodes`), trains with ``fedlearn train --job``, and reads A's model metadata: per-phase
seconds as A's driver measures them (``meta["timings"]``) and the bytes each way (``meta["traffic"]``).

A's phases: ``encryption`` (A's encryptions of alpha per row, and of beta in the epochs that refresh it), ``matvec`` (A's residual powmods, its
X_A^T [[d]], packing and the loss dot product), ``decryption`` (A decrypting B's packed gradient),
``network`` (A waiting on B: transfer plus whatever of B's work A does not overlap), ``loss`` (the
epoch loss exchange). Their sum over the training loop is the epoch time.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from bench.nodes import fedlearn, running_nodes, write_configs
from fedlearn import metrics
from fedlearn.crypto.psi import common_order
from fedlearn.crypto.wire import ciphertext_width
from fedlearn.data import PartyTable, load_party_table
from fedlearn.model import max_batch_rows, slopes_refreshed, split_train_validation
from fedlearn.preprocess import Preprocessor, PreprocessParams
from fedlearn.protocol.steps import gradient_layout

#: A's phases inside the training loop, in the order the tables show them.
LOOP_PHASES = ("encryption", "matvec", "decryption", "network", "loss")
PHASE_NAMES = {
    "keys": "key generation (A)",
    "alignment": "alignment (open session + PSI)",
    "preprocessing": "preprocessing",
    "encryption": "encryption (A)",
    "matvec": "mat-vec, residual, packing (A)",
    "decryption": "decryption (A)",
    "network": "waiting on B (network + B's work)",
    "loss": "epoch loss exchange",
    "evaluation": "evaluation",
}


@dataclass(frozen=True)
class Job:
    """The benchmark's job file, written for ``fedlearn train --job``."""

    epochs: int | str  # a whole number (early stopping off), or "auto": the job defaults
    batch_size: int = 1024
    key_bits: int = 2048
    engine: str = "fast"
    validation_fraction: float = 0.2
    seed: int = 42
    monitor: str = "none"
    min_rows_per_column: int = 8  # A's [privacy] limit (docs/threat-model.md)

    def toml(self) -> str:
        # "auto": the product's defaults, epochs and early stopping as shipped.
        fixed = self.epochs != "auto"
        epochs = f"epochs = {self.epochs}\n" if fixed else ""
        stopping = f'[early_stopping]\nmonitor = "{self.monitor}"\n' if fixed else ""
        return f"""[data]
dataset = "d"
validation_fraction = {self.validation_fraction}
seed = {self.seed}
[train]
{epochs}batch_size = {self.batch_size}
{stopping}[crypto]
key_bits = {self.key_bits}
engine = "{self.engine}"
[privacy]
min_rows_per_column = {self.min_rows_per_column}
"""


def train_through_nodes(
    root: Path,
    a_data: Path,
    b_data: Path,
    jobs: list[Job],
    *,
    workers: int = 1,
    id_column: str = "id",
    label_column: str = "y",
    min_rows_per_column: int = 8,
) -> list[dict[str, Any]]:
    """Start both nodes once, run each job in turn; A's model metadata of each, plus wall seconds.

    ``min_rows_per_column`` is B's policy value (each job carries A's own).
    """
    root.mkdir(parents=True, exist_ok=True)
    a_cfg, b_cfg = write_configs(
        root,
        a_data=a_data,
        b_data=b_data,
        id_column=id_column,
        label_column=label_column,
        workers=workers,
        min_rows_per_column=min_rows_per_column,
    )
    results = []
    with running_nodes(a_cfg, b_cfg):
        for index, job in enumerate(jobs):
            path = root / f"job-{index}.toml"
            path.write_text(job.toml())
            started = time.perf_counter()
            out = fedlearn(a_cfg, "train", "--job", str(path))
            wall = time.perf_counter() - started
            model_id = out.split("model: ", 1)[1].split()[0]
            meta = json.loads((root / "models-a" / model_id / "model.json").read_text())
            meta["bench_wall_s"] = wall
            results.append(meta)
    return results


def loop_seconds(meta: dict[str, Any]) -> float:
    """Seconds A spent in the training loop (all epochs): the sum of the loop phases."""
    timings = meta["timings"]
    return float(sum(timings.get(phase, 0.0) for phase in LOOP_PHASES))


def per_epoch(meta: dict[str, Any]) -> dict[str, float]:
    """Loop phases divided by the epochs completed, plus ``epoch`` (their sum)."""
    epochs = max(1, int(meta["epochs_completed"]))
    timings = meta["timings"]
    result = {phase: float(timings.get(phase, 0.0)) / epochs for phase in LOOP_PHASES}
    result["epoch"] = sum(result.values())
    return result


def traffic_mb(meta: dict[str, Any]) -> tuple[float, float]:
    """Megabytes (10^6) A -> B and B -> A during training, as A's node counted them."""
    traffic = meta.get("traffic", {})
    return traffic.get("a_to_b_bytes", 0) / 1e6, traffic.get("b_to_a_bytes", 0) / 1e6


def payload_mb(
    train_rows: int, batch_size: int, f_a: int, f_b: int, key_bits: int, epochs: int
) -> tuple[float, float]:
    """Megabytes A -> B and B -> A of the training messages' bulk fields, from the protocol's counts
    (docs/protocol.md section 8): ciphertexts at the byte length of n^2, masked slots at their
    width. ``f_a`` includes the intercept; A's slopes cross only in the epochs that refresh them
    (``slopes_refreshed`` over a budget of ``epochs``, all run). Protobuf framing and headers are not
    included."""
    n = (1 << (key_bits - 1)) + 1
    rows = max_batch_rows(train_rows, batch_size)
    layout = gradient_layout(n, max_rows=rows, feature_bits=8, score_frac_bits=12)
    width = ciphertext_width(n)
    batches = max(1, train_rows // batch_size)
    fresh = sum(slopes_refreshed(epoch, epochs, batches) for epoch in range(epochs))
    a_to_b = (
        train_rows * width
        + batches * (layout.ciphertext_count(f_a) * width + f_b * layout.slot_bytes)
        + width
    )
    b_to_a = (
        train_rows * width
        + batches * (width + layout.ciphertext_count(f_b) * width + f_a * layout.slot_bytes)
        + width
    )
    return (epochs * a_to_b + fresh * train_rows * width) / 1e6, epochs * b_to_a / 1e6


@dataclass
class Aligned:
    """Both parties' quantised features on the protocol's split (plaintext, for references)."""

    x_a_q: np.ndarray  # (rows, f_A) int, A's columns without the intercept
    x_b_q: np.ndarray  # (rows, f_B) int
    scales_a: np.ndarray
    scales_b: np.ndarray
    y: np.ndarray
    train: np.ndarray
    validation: np.ndarray


def aligned(
    a_data: Path,
    b_data: Path,
    *,
    seed: int,
    validation_fraction: float,
    id_column: str = "id",
    label_column: str = "y",
) -> Aligned:
    """The protocol's split and preprocessing, rebuilt in plaintext from both files.

    The split: the intersection IDs sorted by ``common_order(ids, seed)``, then
    ``split_train_validation``; each party's ``Preprocessor`` (job defaults) fitted on the training
    rows and its features quantised as the protocol quantises them (tests/protocol/harness.py).
    """
    a = load_party_table(
        a_data,
        id_column=id_column,
        label_column=label_column,
        features=None,
        categorical=[],
        require_label=True,
    )
    b = load_party_table(
        b_data,
        id_column=id_column,
        label_column=None,
        features=None,
        categorical=[],
        require_label=False,
    )
    common = np.intersect1d(a.ids.astype(str), b.ids.astype(str))
    common = common[common_order([str(i) for i in common], seed)]
    rows_a = pd.Index(a.ids.astype(str)).get_indexer(common)
    rows_b = pd.Index(b.ids.astype(str)).get_indexer(common)
    assert a.labels is not None
    y = np.asarray(a.labels)[rows_a].astype(np.float64)
    train_rows, validation_rows = split_train_validation(len(common), validation_fraction, seed)
    config = PreprocessParams()

    def quantised(table: PartyTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame = table.features.iloc[rows].reset_index(drop=True)
        prep = Preprocessor(
            numeric=table.numeric_columns, categorical=table.categorical_columns, config=config
        )
        prep.fit(frame.iloc[train_rows])
        x_q = np.asarray(prep.quantize(prep.transform(frame)), dtype=np.int64)
        return x_q, np.asarray(prep.scales_, dtype=np.float64)

    x_a_q, scales_a = quantised(a, rows_a)
    x_b_q, scales_b = quantised(b, rows_b)
    return Aligned(x_a_q, x_b_q, scales_a, scales_b, y, train_rows, validation_rows)


def sklearn_aucs(data: Aligned) -> dict[str, float]:
    """scikit-learn's held-out AUC on the same split and dequantised features: joint and A only."""
    x_a, x_b = data.x_a_q / data.scales_a, data.x_b_q / data.scales_b
    y, train, validation = data.y, data.train, data.validation
    result = {}
    for name, x in (("sklearn_joint", np.hstack([x_a, x_b])), ("sklearn_a_only", x_a)):
        model = LogisticRegression(max_iter=5000).fit(x[train], y[train])
        score = model.predict_proba(x[validation])[:, 1]
        result[name] = float(metrics.auc(y[validation], score))
    return result


def machine() -> dict[str, Any]:
    import os

    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"
