"""fedlearn.checkpoint: atomic, checksummed epoch files, bounded retention, exact optimizer state."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlearn.checkpoint import (
    MAX_AGE_S,
    CheckpointStore,
    DamagedCheckpoint,
    data_fingerprint,
    latest_common_epoch,
    optimizer_state,
    partner_job_key,
    restore_optimizer,
)
from fedlearn.errors import DataError
from fedlearn.model import Optimizer


def test_epochs_are_kept_two_at_a_time_and_read_back_exactly(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    weights = np.random.default_rng(3).normal(size=5)
    for epoch in range(1, 5):
        store.save("job-1", epoch, {"weights": [float(w) * epoch for w in weights]})
    assert store.epochs("job-1") == [3, 4]
    assert store.load("job-1", 4)["weights"] == [float(w) * 4 for w in weights]  # bit for bit
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_damaged_or_newer_checkpoint_is_refused_and_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("job-1", 1, {"weights": [1.0]})
    path = store.save("job-1", 2, {"weights": [2.0]})
    path.write_text(path.read_text().replace("2.0", "2.5"))  # altered
    with pytest.raises(DamagedCheckpoint, match="checksum"):
        store.load("job-1", 2)
    assert store.epochs("job-1") == [1]  # the resume falls back to the epoch before
    path.write_text(path.read_text()[:30])  # cut off
    with pytest.raises(DamagedCheckpoint, match="cut off"):
        store.load("job-1", 2)
    content = json.loads(store.folder("job-1").joinpath("epoch-000001.json").read_text())
    content["format_version"] = 99
    store.folder("job-1").joinpath("epoch-000001.json").write_text(json.dumps(content))
    with pytest.raises(DamagedCheckpoint, match="format"):
        store.load("job-1", 1)


def test_job_folders_are_bounded_in_number_and_age_and_leftovers_swept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, max_jobs=3)
    for job in range(5):
        store.save(f"job-{job}", 1, {})
        os.utime(store.folder(f"job-{job}"), (time.time() + job, time.time() + job))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-2", "job-3", "job-4"]
    old = time.time() - MAX_AGE_S - 10
    os.utime(store.folder("job-2"), (old, old))
    (store.folder("job-3") / ".epoch-000002.json.abc.tmp").write_text("half")  # a killed writer
    assert store.sweep() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-3", "job-4"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_jobs_refused_at_the_start_never_push_out_an_interrupted_jobs_epochs(
    tmp_path: Path,
) -> None:
    """A string of jobs that failed before their first epoch (only A's job file in their folder)
    goes first, however new: the interrupted job's epochs stay resumable."""
    store = CheckpointStore(tmp_path, max_jobs=3)
    store.write_file("interrupted", "job.toml", "[data]\n")
    store.save("interrupted", 4, {"weights": [1.0]})
    os.utime(store.folder("interrupted"), (time.time() - 60, time.time() - 60))
    for attempt in range(20):
        store.write_file(f"refused-{attempt}", "job.toml", "[data]\n")
        os.utime(store.folder(f"refused-{attempt}"), (time.time() + attempt,) * 2)
    assert store.epochs("interrupted") == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interrupted", "refused-18", "refused-19"]


def test_names_that_could_be_paths_never_become_folders(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for bad in ("../x", "a/b", "", "x" * 101, ".hidden"):
        with pytest.raises(DataError):
            store.save(bad, 1, {})
    key = partner_job_key("party-a", "job-1")
    assert len(key) == 32 and key != partner_job_key("party-c", "job-1")
    with pytest.raises(DataError):
        partner_job_key("party-a", "../../etc")


def test_optimizer_state_continues_the_same_steps() -> None:
    rng = np.random.default_rng(5)
    gradients = rng.normal(size=(6, 4))
    whole = Optimizer("adam", 0.1, np.ones(4), l2=0.01)
    weights = np.zeros(4)
    for g in gradients:
        weights = whole.step(weights, g)
    first = Optimizer("adam", 0.1, np.ones(4), l2=0.01)
    half = np.zeros(4)
    for g in gradients[:3]:
        half = first.step(half, g)
    state = json.loads(json.dumps(optimizer_state(first)))  # through JSON, as on disk
    second = Optimizer("adam", 0.1, np.ones(4), l2=0.01)
    restore_optimizer(second, state)
    for g in gradients[3:]:
        half = second.step(half, g)
    np.testing.assert_array_equal(half, weights)  # the learning-rate schedule and moments too
    with pytest.raises(DamagedCheckpoint):
        restore_optimizer(Optimizer("sgd", 0.1, np.ones(4)), state)


def test_fingerprint_and_common_epoch() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    ids = np.array(["u1", "u2"])
    base = data_fingerprint(ids, frame)
    assert base == data_fingerprint(ids.copy(), frame.copy())
    assert base != data_fingerprint(ids[::-1], frame)
    assert base != data_fingerprint(ids, frame.assign(x=[1.0, 2.5]))
    assert base != data_fingerprint(ids, frame, np.array([0, 1]))
    assert latest_common_epoch([3, 4], [4, 5]) == 4
    assert latest_common_epoch([1, 2], [3, 4]) == 0
