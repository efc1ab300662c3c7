"""Run the training protocol in memory (both roles, one process) and rebuild its split for comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedlearn.config import DatasetSpec
from fedlearn.crypto.psi import common_order
from fedlearn.data import PartyTable, load_party_table
from fedlearn.job import JobSpec, parse_job
from fedlearn.model import split_train_validation
from fedlearn.preprocess import Preprocessor
from fedlearn.protocol.in_memory import InMemoryPeer, RecordedMessage
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.train import train
from party_b.node import NodeB

# FATE's public vertical splits, carried in the repository (data/fate/README.md: source and licence).
FATE = Path(__file__).resolve().parents[2] / "data" / "fate"

#: Tests run FATE's breast split (20 columns at B) with batches of 65-151 rows: 3 rows per column.
TEST_ROWS_PER_COLUMN = 3
TEST_POLICY = PeerPolicy(
    min_key_bits=512,
    min_batch_size=16,
    max_epochs=50,
    allow_partial_scores=True,
    min_rows_per_column=TEST_ROWS_PER_COLUMN,
)


def job_text(
    dataset: str = "d",
    *,
    epochs: int = 5,
    batch_size: int = 128,
    key_bits: int = 512,
    extra: str = "",
    learning_rate: float = 0.05,
    seed: int = 42,
    privacy: str = "",
) -> str:
    return f"""
[data]
dataset = "{dataset}"
seed = {seed}
[train]
epochs = {epochs}
batch_size = {batch_size}
learning_rate = {learning_rate}
[early_stopping]
monitor = "none"
[privacy]
min_rows_per_column = {TEST_ROWS_PER_COLUMN}
{privacy}
[crypto]
key_bits = {key_bits}
{extra}
"""


@dataclass
class MemoryRun:
    meta: dict[str, Any]
    b_shard: dict[str, Any]
    record: list[RecordedMessage]
    a_table: PartyTable
    b_table: PartyTable
    common_ids: np.ndarray  # the aligned IDs in the session's common order
    job: JobSpec


def b_node(tmp: Path, spec: DatasetSpec, policy: PeerPolicy = TEST_POLICY) -> NodeB:
    """B's node over one dataset, its models in ``tmp / "b-models"``, party-a its only partner."""
    return NodeB(
        name="party-b",
        datasets={spec.name: spec},
        policy=policy,
        model_dir=tmp / "b-models",
        allowed_partners={"party-a"},
    )


def run_memory(
    a_spec: DatasetSpec,
    b_spec: DatasetSpec,
    job_toml: str,
    tmp: Path,
    policy: PeerPolicy = TEST_POLICY,
) -> MemoryRun:
    role = b_node(tmp, b_spec, policy)
    record: list[RecordedMessage] = []
    peer = InMemoryPeer(role, identity="party-a", record=record)
    a_table = load_party_table(
        a_spec.path,
        id_column=a_spec.id_column,
        label_column=a_spec.label_column,
        features=a_spec.features,
        categorical=a_spec.categorical,
        require_label=True,
    )
    job = parse_job(job_toml)
    try:
        meta = train(
            peer,
            table=a_table,
            spec=a_spec,
            job=job,
            own_name="party-a",
            store=ModelStore(tmp / "a-models"),
        )
    finally:
        role.close()
    b_shard = ModelStore(tmp / "b-models").load(meta["model_id"])
    b_table = role._load_table(b_spec)
    matched = np.intersect1d(a_table.ids, b_table.ids)  # what PSI finds, computed in plaintext
    common = matched[common_order([str(i) for i in matched], job.params.seed)]
    return MemoryRun(meta, b_shard, record, a_table, b_table, common, job)


def fate_specs(name: str) -> tuple[DatasetSpec, DatasetSpec]:
    a = DatasetSpec("d", FATE / f"{name}_hetero_guest.csv.gz", "id", "y", None, [])
    b = DatasetSpec("d", FATE / f"{name}_hetero_host.csv.gz", "id", None, None, [])
    return a, b


def rebuild(run: MemoryRun) -> dict[str, np.ndarray]:
    """Both parties' preprocessed matrices, labels and split, in the session's order (plaintext)."""
    params = run.job.params
    ia = pd.Index(run.a_table.ids).get_indexer(run.common_ids)
    ib = pd.Index(run.b_table.ids).get_indexer(run.common_ids)
    train_rows, validation_rows = split_train_validation(
        len(run.common_ids), params.validation_fraction, params.seed
    )
    config = params.preprocess

    def matrix(table: PartyTable, rows: np.ndarray) -> np.ndarray:
        frame = table.features.iloc[rows].reset_index(drop=True)
        prep = Preprocessor(
            numeric=table.numeric_columns, categorical=table.categorical_columns, config=config
        )
        prep.fit(frame.iloc[train_rows])
        return np.asarray(prep.quantize(prep.transform(frame)) / prep.scales_)

    assert run.a_table.labels is not None
    return {
        "x_a": matrix(run.a_table, ia),
        "x_b": matrix(run.b_table, ib),
        "y": run.a_table.labels[ia].astype(float),
        "train": train_rows,
        "validation": validation_rows,
    }
