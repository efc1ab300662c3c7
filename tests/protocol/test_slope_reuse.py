"""[[beta]] reused across epochs on the public schedule (docs/protocol.md section 2).

A reuse claim from A is untrusted: B accepts it only for rows whose [[beta]] A sent earlier in the
same session. A cheating A that claims reuse for rows it never sent, or in a new session for slopes
of an old one, ends the session. That the encrypted run with reuse equals the plaintext replay of
the same schedule is checked in tests/protocol/test_training_memory.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from fedlearn.data import load_party_table
from fedlearn.errors import SessionEnded
from fedlearn.job import parse_job
from fedlearn.model import slopes_refreshed
from fedlearn.protocol import held, train_a
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.train_a import TrainingA
from fedlearn.store import ModelStore
from party_a.train import train
from party_b.node import NodeB
from tests.protocol.harness import TEST_POLICY, fate_specs, job_text, run_memory

JOB = job_text(epochs=4, batch_size=128)


def test_schedule_is_fresh_first_and_last_and_reuses_between() -> None:
    # default_credit: 23 batches per epoch, so the first 40 steps are in epochs 0 and 1.
    assert [slopes_refreshed(e, 10, 23) for e in range(10)] == [
        True, True, True, False, True, False, True, False, True, True,
    ]  # fmt: skip
    # 7 batches per epoch: the first 40 steps take 6 epochs.
    assert [slopes_refreshed(e, 10, 7) for e in range(10)] == [
        True, True, True, True, True, True, True, False, True, True,
    ]  # fmt: skip
    assert slopes_refreshed(0, 1, 1000) and slopes_refreshed(0, 100, 1)
    assert all(slopes_refreshed(e, 100, 1) for e in range(40))  # one batch per epoch


def test_reuse_for_rows_whose_slope_was_not_sent_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A sends fresh slopes for the first batch of epoch 0, then claims reuse for the second."""
    honest = TrainingA._residual_terms
    calls: list[int] = []

    def cheating(
        self: TrainingA, epoch: int, rows: np.ndarray, u_a: np.ndarray, y: np.ndarray
    ) -> tuple[list[int], list[int], list[int], str]:
        alpha, beta, gamma, mode = honest(self, epoch, rows, u_a, y)
        calls.append(epoch)
        return alpha, beta, gamma, "reuse" if len(calls) == 2 else mode

    monkeypatch.setattr(TrainingA, "_residual_terms", cheating)
    with caplog.at_level("WARNING"), pytest.raises(SessionEnded, match="ended the session"):
        run_memory(*fate_specs("breast"), JOB, tmp_path)
    assert calls == [0, 0]  # B refused the second batch
    assert "whose slope was not sent in this session" in caplog.text


def _breast_b(tmp: Path) -> NodeB:
    """B's node over breast's B split, kept across the jobs of one test."""
    return NodeB(
        name="party-b",
        datasets={"d": fate_specs("breast")[1]},
        policy=TEST_POLICY,
        model_dir=tmp / "b-models",
        allowed_partners={"party-a"},
    )


def _train(role: NodeB, tmp: Path, job: str) -> dict[str, object]:
    a_spec, _ = fate_specs("breast")
    table = load_party_table(a_spec.path, id_column="id", label_column="y", require_label=True)
    return train(
        InMemoryPeer(role, identity="party-a"),
        table=table,
        spec=a_spec,
        job=parse_job(job),
        own_name="party-a",
        store=ModelStore(tmp / "a-models"),
    )


def test_reuse_in_a_new_session_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """B holds every row's slope after a session's first epoch; a second session with the same B
    (fresh keys) holds none, and A reusing the first session's slopes there is refused."""
    first: list[TrainingA] = []
    start = TrainingA.start.__func__  # type: ignore[attr-defined]

    def remembering(cls: type[TrainingA], *args: object, **kwargs: object) -> TrainingA:
        training: TrainingA = start(cls, *args, **kwargs)
        if first:  # the second session starts with the first one's terms, as if B still held them
            held = first[0]
            training.held = held.held.copy()
            assert training.held_corrections is not None
            training.held_corrections.present[:] = held.held  # as if B held their ciphertexts
            training.held_slopes, training.held_offsets = held.held_slopes, held.held_offsets
            training.held_curvatures = held.held_curvatures
        else:
            first.append(training)
        return training

    monkeypatch.setattr(TrainingA, "start", classmethod(remembering))
    role = _breast_b(tmp_path)
    try:
        _train(role, tmp_path, job_text(epochs=1, batch_size=128))
        assert np.count_nonzero(first[0].held) > 0
        assert np.all(np.abs(first[0].held_slopes) <= 2**14)  # |slope| <= 1/4 at 16 bits
        monkeypatch.setattr(train_a, "slopes_refreshed", lambda epoch, epochs, batches: False)
        with caplog.at_level("WARNING"), pytest.raises(SessionEnded, match="ended the session"):
            _train(role, tmp_path, JOB)
    finally:
        role.close()
    assert "whose slope was not sent in this session" in caplog.text


def test_a_full_disk_for_held_slopes_ends_the_session_and_b_serves_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """B keeps A's [[beta]] in its temporary file: when the disk is full the session ends (A is told
    to look in B's log, which names the error and no path), nothing is left, and B trains the next
    job once there is space."""
    monkeypatch.setattr(held, "MEMORY_LIMIT_BYTES", 0)

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    role = _breast_b(tmp_path)
    try:
        with monkeypatch.context() as disk:
            disk.setattr(held.os, "pwrite", full)
            with caplog.at_level("WARNING"), pytest.raises(SessionEnded, match="party-b's log"):
                _train(role, tmp_path, JOB)
        assert "No space left on device" in caplog.text
        assert str(tmp_path) not in caplog.text
        saved = tmp_path / "a-models"
        assert not saved.exists() or [p for p in saved.iterdir() if p.name[0] != "."] == []
        meta = _train(role, tmp_path, JOB)
        assert len([p for p in saved.iterdir() if p.name[0] != "."]) == 1
        assert meta["epochs_completed"] == 4
    finally:
        role.close()
