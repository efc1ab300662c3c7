"""Training through both nodes as real processes (issue 3): a model on both sides, and faults."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlearn.launch import NodeProcess
from fedlearn.store import ModelStore
from tests.e2e.conftest import Nodes, running_nodes, small_demo

pytestmark = pytest.mark.e2e


def test_training_through_the_nodes_saves_both_shards(nodes: Nodes) -> None:
    result = nodes.cli("train", "--job", str(nodes.demo.job))
    assert result.returncode == 0, result.stderr
    assert "validation metric" in result.stdout and "joint" in result.stdout
    model_id = result.stdout.split("model: ", 1)[1].split()[0]
    a_shard = ModelStore(nodes.demo.root / "models-a").load(model_id)
    b_shard = ModelStore(nodes.demo.root / "models-b").load(model_id)
    assert a_shard["partner"] == "party-b" and b_shard["partner"] == "party-a"
    # Each side holds only its own weights.
    assert set(a_shard["a_weights"]) == set(a_shard["feature_names"])
    assert "weights" not in a_shard and "a_weights" not in b_shard
    assert a_shard["metrics"]["joint"]["auc"] > a_shard["metrics"]["a_only"]["auc"]
    # Every training row crosses as ciphertexts both ways (at least 64 bytes each at 512 bits).
    train_rows = a_shard["rows"]["train"] * a_shard["epochs_completed"]
    assert a_shard["traffic"]["a_to_b_bytes"] > 2 * 64 * train_rows
    assert a_shard["traffic"]["b_to_a_bytes"] > 64 * train_rows
    listing = nodes.cli("models")
    assert model_id in listing.stdout


def test_an_auto_batch_job_runs_again_at_b_s_minimum_through_the_nodes(tmp_path: Path) -> None:
    # B's minimum batch is its only reason to refuse "auto"'s first 1024 rows: the refusal carries
    # the size over gRPC (trailing metadata) and the job runs again at it.
    demo = small_demo(tmp_path)
    b_text = demo.b_config.read_text()
    demo.b_config.write_text(b_text.replace("min_batch_size = 64", "min_batch_size = 1100"))
    demo.job.write_text(demo.job.read_text().replace("batch_size = 256", 'batch_size = "auto"'))
    with running_nodes(demo) as nodes:
        result = nodes.cli("train", "--job", str(demo.job))
    assert result.returncode == 0, result.stderr
    assert 'batch_size = "auto": training again with 1100 rows per batch instead of 1024' in (
        result.stderr
    )
    model_id = result.stdout.split("model: ", 1)[1].split()[0]
    assert ModelStore(demo.root / "models-a").load(model_id)["job"]["batch_size"] == 1100


def test_policy_refusal_reaches_the_operator(nodes: Nodes, tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(nodes.demo.job.read_text().replace("epochs = 2", "epochs = 500"))
    before = set(ModelStore(nodes.demo.root / "models-b").list_ids())
    result = nodes.cli("train", "--job", str(job))
    assert result.returncode == 5, result.stderr
    assert "epochs 500 is above the maximum 100" in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("fedlearn: error: party-b at ") and error.count("party-b") == 1, error
    assert set(ModelStore(nodes.demo.root / "models-b").list_ids()) == before


def test_peer_killed_mid_training(tmp_path: Path) -> None:
    demo = small_demo(tmp_path / "kill", rows=6000)
    demo.job.write_text(
        demo.job.read_text()
        .replace("epochs = 2", "epochs = 20")
        .replace('monitor = "score_change"', 'monitor = "none"')
    )
    b = NodeProcess("b", demo.b_config, demo.root / "b.log")
    a = NodeProcess("a", demo.a_config, demo.root / "a.log")
    try:
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedlearn.cli",
                "train",
                "--job",
                str(demo.job),
                "--config",
                str(demo.a_config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert cli.stderr is not None
        deadline = time.monotonic() + 120
        for line in cli.stderr:  # wait until the encrypted batches are running
            if "[training]" in line or time.monotonic() > deadline:
                break
        b.kill()
        _, err = cli.communicate(timeout=120)
        assert cli.returncode == 4, err
        assert "party-b" in err
        # A's node keeps serving, and no model is registered on either side.
        listing = subprocess.run(
            [sys.executable, "-m", "fedlearn.cli", "models", "--config", str(demo.a_config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listing.returncode == 0, listing.stderr
        assert "no models yet" in listing.stdout
        assert ModelStore(demo.root / "models-b").list_ids() == []
        assert not any((demo.root / "models-a").glob("*/model.json"))
    finally:
        assert a.stop() == 0
        b.stop()


def test_scoring_validation_rows_through_the_cli_reproduces_training_metrics(
    nodes: Nodes, tmp_path: Path
) -> None:
    """Issue 4 item 5, through both node processes and `fedlearn score`."""
    import numpy as np

    from fedlearn import metrics
    from fedlearn.crypto.psi import common_order
    from fedlearn.data import read_table
    from fedlearn.model import split_train_validation

    trained = nodes.cli("train", "--job", str(nodes.demo.job))
    assert trained.returncode == 0, trained.stderr
    model_id = trained.stdout.split("model: ", 1)[1].split()[0]
    meta = ModelStore(nodes.demo.root / "models-a").load(model_id)
    data = nodes.demo.data
    a_rows = read_table(data.a_train_csv)
    a_rows[data.id_column] = a_rows[data.id_column].str.strip()
    b_ids = {i.strip() for i in read_table(data.b_features_csv)[data.id_column]}
    common = [i for i in a_rows[data.id_column] if i in b_ids]
    ordered = [common[i] for i in common_order(common, meta["job"]["seed"])]
    _, validation = split_train_validation(
        len(ordered), meta["job"]["validation_fraction"], meta["job"]["seed"]
    )
    validation_ids = {ordered[i] for i in validation}
    subset = a_rows[a_rows[data.id_column].isin(validation_ids)]
    new_users = tmp_path / "validation_users.parquet"
    subset.to_parquet(new_users, index=False)
    output = tmp_path / "scores.csv"
    scored = nodes.cli(
        "score", "--model", model_id, "--input", str(new_users), "--output", str(output)
    )
    assert scored.returncode == 0, scored.stderr
    scores = read_table(output)
    assert len(scores) == len(validation_ids)
    assert scores["partner_matched"].str.lower().eq("true").all()  # validation rows are all aligned
    labels = subset.set_index(data.id_column)[data.label_column].astype(int)
    y = labels.reindex(scores[data.id_column]).to_numpy()
    s = scores["score"].astype(float).to_numpy()
    assert metrics.auc(y, s) == pytest.approx(meta["metrics"]["joint"]["auc"], abs=1e-9)
    assert metrics.ks(y, s) == pytest.approx(meta["metrics"]["joint"]["ks"], abs=1e-9)
    assert np.isfinite(s).all()
