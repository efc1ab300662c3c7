"""A brings the label alone (a brand-new user's app knows little): B's columns and A's intercept
make the joint model, users B lacks get the label rate; B with no columns is refused before PSI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlearn import metrics
from fedlearn.config import DatasetSpec
from fedlearn.datasets import make_vip
from fedlearn.errors import DataError
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.store import ModelStore
from party_a.score import score
from tests.protocol.harness import b_node, job_text, run_memory


def test_a_with_the_label_alone_trains_and_scores(tmp_path: Path) -> None:
    vip = make_vip(tmp_path / "data", rows=3000, seed=3)
    a = pd.read_csv(vip.a_train_csv, dtype={vip.id_column: str})
    a[[vip.id_column, vip.label_column]].to_csv(tmp_path / "a.csv", index=False)
    a_spec = DatasetSpec("d", tmp_path / "a.csv", vip.id_column, vip.label_column, None, [])
    b_spec = DatasetSpec(
        "d", vip.b_features_csv, vip.id_column, None, None, list(vip.b_categorical)
    )
    run = run_memory(a_spec, b_spec, job_text(epochs=3), tmp_path)
    meta = run.meta
    assert meta["a_weights"] == {} and any("label alone" in note for note in meta["notes"])
    assert meta["metrics"]["joint"]["auc"] > 0.7  # B's columns carry the model
    assert meta["metrics"]["a_only"]["auc"] == 0.5  # one score for all: the label rate

    model = ModelStore(tmp_path / "a-models").load(meta["model_id"])
    new = pd.read_csv(vip.a_new_users_csv, dtype={vip.id_column: str})[[vip.id_column]]
    new.to_csv(tmp_path / "new.csv", index=False)  # A's new users: IDs and nothing else
    role = b_node(tmp_path, b_spec)
    try:
        result = score(
            InMemoryPeer(role, identity="party-a"),
            model=model,
            input_path=tmp_path / "new.csv",
            output_path=tmp_path / "out.csv",
            expected_partner="party-b",
        )
    finally:
        role.close()
    out = pd.read_csv(tmp_path / "out.csv")
    assert result.rows == len(new) and 0 < result.matched < result.rows
    unmatched = out.loc[out["model"] == "a_only", "score"].to_numpy()
    rate = a[vip.label_column].mean()
    assert np.ptp(unmatched) == 0 and abs(unmatched[0] - rate) < 0.03
    truth = pd.read_csv(vip.a_new_users_truth_csv, dtype={vip.id_column: str})
    joint = out["model"] == "joint"
    y = truth.set_index(vip.id_column).loc[out.loc[joint, vip.id_column], vip.label_column]
    assert metrics.auc(y.to_numpy(), out.loc[joint, "score"].to_numpy()) > 0.7


def test_b_with_no_columns_is_refused_before_the_psi(tmp_path: Path) -> None:
    pd.DataFrame({"id": [f"u{i}" for i in range(300)]}).to_csv(tmp_path / "b.csv", index=False)
    role = b_node(tmp_path, DatasetSpec("d", tmp_path / "b.csv", "id", None, None, []))
    request = m.OpenSessionRequest(
        purpose=m.Purpose.TRAIN,
        dataset="d",
        train=m.TrainParams(epochs=5, batch_size=256, key_bits=512),
        training_protocol=m.TRAINING_PROTOCOL,
    )
    try:
        with pytest.raises(DataError) as refused:
            role.open_session(request, "party-a")
        assert role._sessions == {}
        assert refused.value.public is not None
        assert "dataset 'd' has no feature columns" in refused.value.public
        # Aligning needs no columns.
        align = m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="d", psi_salt=b"s" * 32)
        role.open_session(align, "party-a")
    finally:
        role.close()
