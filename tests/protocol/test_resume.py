"""Resume from checkpoints in memory (both roles, one process, 512-bit keys, FATE's breast split).

A job stopped mid-epoch (A raising inside a batch, as a kill would leave it) and resumed with a new
B node over the same model folder ends with the same model as an uninterrupted run, to the
fixed-point precision; a changed job or changed data is refused; B's resume fields from A are
checked (a job id with a path part, an epoch list out of range).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn import model
from fedlearn.checkpoint import CheckpointStore, partner_job_key
from fedlearn.config import DatasetSpec
from fedlearn.data import load_party_table
from fedlearn.errors import DataError, InvalidPeerData, PolicyViolation
from fedlearn.job import parse_job
from fedlearn.progress import ProgressEvent
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.train_b import TrainingB
from fedlearn.store import ModelStore
from party_a.train import train
from tests.protocol.harness import b_node, fate_specs, job_text

EPOCHS = 4
JOB_ID = "job-20261202-120000-abcd"


class Killed(Exception):
    """Stands for a SIGKILL of A mid-epoch: raised from a progress event inside a batch."""


def _run(
    tmp: Path,
    job_toml: str,
    *,
    resume: bool = False,
    kill_at: tuple[int, int] | None = None,
    a_spec: DatasetSpec | None = None,
    b_spec: DatasetSpec | None = None,
    events: list[ProgressEvent] | None = None,
) -> dict[str, Any]:
    default_a, default_b = fate_specs("breast")
    a_spec, b_spec = a_spec or default_a, b_spec or default_b
    node = b_node(tmp, b_spec)
    table = load_party_table(
        a_spec.path, id_column="id", label_column="y", features=None, categorical=[],
        require_label=True,
    )  # fmt: skip

    def progress(event: ProgressEvent) -> None:
        if events is not None:
            events.append(event)
        if kill_at is not None and (event.epoch, event.batch) == kill_at and not event.message:
            raise Killed

    try:
        return train(
            InMemoryPeer(node, identity="party-a"),
            table=table,
            spec=a_spec,
            job=parse_job(job_toml),
            own_name="party-a",
            store=ModelStore(tmp / "a-models"),
            progress=progress,
            job_id=JOB_ID,
            checkpoints=CheckpointStore(tmp / "a-checkpoints"),
            resume=resume,
        )
    finally:
        node.close()


def _weights(tmp: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    b_shard = ModelStore(tmp / "b-models").load(meta["model_id"])
    w_a = np.array([*meta["a_weights"].values(), meta["intercept"]])
    return w_a, np.asarray(b_shard["weights"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("whole")
    return tmp, _run(tmp, job_text(epochs=EPOCHS, batch_size=64))


def test_a_job_killed_mid_epoch_resumes_to_the_same_model(
    uninterrupted: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    whole_tmp, whole = uninterrupted
    job = job_text(epochs=EPOCHS, batch_size=64)
    with pytest.raises(Killed):
        _run(tmp_path, job, kill_at=(3, 2))  # in epoch 3, after 2 epochs were checkpointed
    a_held = CheckpointStore(tmp_path / "a-checkpoints").epochs(JOB_ID)
    b_held = CheckpointStore(tmp_path / "b-models" / ".checkpoints").epochs(
        partner_job_key("party-a", JOB_ID)
    )
    assert a_held == [1, 2] and b_held == [1, 2]  # the last two epochs each
    events: list[ProgressEvent] = []
    resumed = _run(tmp_path, job, resume=True, events=events)
    w_a, w_b = _weights(tmp_path, resumed)
    want_a, want_b = _weights(whole_tmp, whole)
    precision = 2.0 ** -resumed["job"]["score_frac_bits"]
    np.testing.assert_allclose(w_a, want_a, rtol=0, atol=precision)
    np.testing.assert_allclose(w_b, want_b, rtol=0, atol=precision)
    assert [r["loss"] for r in resumed["loss_history"]] == pytest.approx(
        [r["loss"] for r in whole["loss_history"]], abs=1e-9
    )
    assert resumed["epochs_completed"] == EPOCHS
    # Every training event of the resumed session has an ETA (batch and epoch-end events alike:
    # a job record keeps the latest one), counted from this session's pace, 0 at the last epoch.
    training = [e for e in events if e.phase == "training" and e.batches]
    assert {e.epoch for e in training} == {3, 4}
    assert all(math.isfinite(e.eta_s) and e.eta_s >= 0 for e in training)
    assert training[-1].message.startswith(f"epoch {EPOCHS}:") and training[-1].eta_s == 0
    assert training[0].eta_s > 0
    # Saved at both sides: A's checkpoints are gone, B keeps only the last epoch.
    assert not (tmp_path / "a-checkpoints" / JOB_ID).exists()
    assert CheckpointStore(tmp_path / "b-models" / ".checkpoints").epochs(
        partner_job_key("party-a", JOB_ID)
    ) == [EPOCHS]


def test_b_one_epoch_ahead_resumes_from_the_latest_common_epoch(
    uninterrupted: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A killed between B's checkpoint of an epoch and its own: both resume from the one before."""
    whole_tmp, whole = uninterrupted
    job = job_text(epochs=EPOCHS, batch_size=64)
    with pytest.raises(Killed):
        _run(tmp_path, job, kill_at=(4, 1))
    (tmp_path / "a-checkpoints" / JOB_ID / "epoch-000003.json").unlink()  # A never wrote epoch 3
    resumed = _run(tmp_path, job, resume=True)
    np.testing.assert_allclose(
        np.concatenate(_weights(tmp_path, resumed)),
        np.concatenate(_weights(whole_tmp, whole)),
        rtol=0,
        atol=2.0**-12,
    )


def test_a_changed_job_or_changed_data_is_refused(tmp_path: Path) -> None:
    job = job_text(epochs=EPOCHS, batch_size=64)
    with pytest.raises(Killed):
        _run(tmp_path, job, kill_at=(2, 1))
    with pytest.raises(PolicyViolation, match="params differ from its checkpoint"):
        _run(tmp_path, job_text(epochs=EPOCHS, batch_size=64, learning_rate=0.07), resume=True)
    # A's data changed (one row fewer): the aligned rows differ, and A refuses.
    a_spec, _ = fate_specs("breast")
    rows = a_spec.path.read_bytes()
    lines = gzip.decompress(rows).decode().splitlines()
    smaller = tmp_path / "guest.csv"
    smaller.write_text("\n".join(lines[:-1]) + "\n")
    changed = DatasetSpec("d", smaller, "id", "y", None, [])
    with pytest.raises((DataError, PolicyViolation), match="changed"):
        _run(tmp_path, job, resume=True, a_spec=changed)


def test_b_checks_the_resume_fields_a_sends(tmp_path: Path) -> None:
    _, b_spec = fate_specs("breast")
    node = b_node(tmp_path, b_spec)
    try:
        from fedlearn.crypto.keys import generate_keypair, public_key_to_bytes

        key = generate_keypair(512)
        base = m.OpenSessionRequest(
            purpose=m.Purpose.TRAIN,
            dataset="d",
            psi_salt=b"\1" * 32,
            train=parse_job(job_text(epochs=EPOCHS, batch_size=64)).params,
            paillier_key=m.PaillierKey(n=public_key_to_bytes(key.public_key)),
        )
        for job_id, epochs in (("../etc", (1,)), ("x" * 500, (1,)), (JOB_ID, (EPOCHS + 1,))):
            request = m.OpenSessionRequest(
                **{**base.__dict__, "job_id": job_id, "resume_epochs": epochs}
            )
            with pytest.raises(InvalidPeerData):
                node.open_session(request, "party-a")
        assert not (tmp_path / "b-models" / ".checkpoints").exists() or not any(
            (tmp_path / "b-models" / ".checkpoints").iterdir()
        )
    finally:
        node.close()


def test_a_job_resumed_into_an_epoch_that_reuses_slopes_ends_with_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resumed session has fresh keys, so B holds no [[beta]]: A sends the slopes it held (from
    its checkpoint), not fresh ones, and the resumed run computes what the uninterrupted one did."""
    import fedlearn.model

    # Fresh slopes in epochs 1 and 4 (1-based) only: epochs 2 and 3 reuse them.
    monkeypatch.setattr(fedlearn.model, "SLOPE_FRESH_EPOCHS", 1)
    monkeypatch.setattr(fedlearn.model, "SLOPE_FRESH_STEPS", 0)
    monkeypatch.setattr(fedlearn.model, "SLOPE_REFRESH_EVERY", 4)
    job = job_text(epochs=EPOCHS, batch_size=64)
    whole = _run(tmp_path / "whole", job)
    with pytest.raises(Killed):
        _run(tmp_path / "killed", job, kill_at=(3, 2))  # in epoch 3, a reuse epoch
    resumed = _run(tmp_path / "killed", job, resume=True)
    np.testing.assert_allclose(
        np.concatenate(_weights(tmp_path / "killed", resumed)),
        np.concatenate(_weights(tmp_path / "whole", whole)),
        rtol=0,
        atol=2.0**-12,
    )


def test_a_job_killed_in_a_reuse_epoch_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed in an epoch that reuses the held terms: the new session's B holds no ciphertext of
    A's, so A re-sends its held slopes and curvatures with ``held_basis`` and B re-forms the
    correction from the w it kept in its checkpoint; the model equals the uninterrupted run's."""
    monkeypatch.setattr(model, "SLOPE_FRESH_STEPS", 1)  # epochs 0-1 refresh, 2 reuses, 3 is last
    monkeypatch.setattr(model, "SLOPE_REFRESH_EVERY", 4)
    assert [model.slopes_refreshed(e, EPOCHS, 5) for e in range(EPOCHS)] == [
        True, True, False, True,
    ]  # fmt: skip
    held_basis: list[bool] = []
    real_basis = TrainingB._basis

    def recording(self: TrainingB, request: m.BatchForwardRequest, *args: Any) -> list[int]:
        held_basis.append(request.held_basis)
        return real_basis(self, request, *args)

    monkeypatch.setattr(TrainingB, "_basis", recording)
    job = job_text(epochs=EPOCHS, batch_size=64)
    whole = _run(tmp_path / "whole", job)
    assert not any(held_basis)
    with pytest.raises(Killed):
        _run(tmp_path / "cut", job, kill_at=(3, 2))  # in epoch 3 (0-based 2, a reuse epoch)
    resumed = _run(tmp_path / "cut", job, resume=True)
    assert any(held_basis)  # the resumed reuse epoch re-sent the held terms
    precision = 2.0 ** -resumed["job"]["score_frac_bits"]
    for got, want in zip(
        _weights(tmp_path / "cut", resumed), _weights(tmp_path / "whole", whole), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=0, atol=precision)
    assert [r["loss"] for r in resumed["loss_history"]] == pytest.approx(
        [r["loss"] for r in whole["loss_history"]], abs=1e-9
    )
