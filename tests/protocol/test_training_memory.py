"""The encrypted training protocol in memory (both roles, one process, 512-bit keys).

- the encrypted run reproduces the plaintext reference (same schedule, same linearised residual,
  the same stale slopes in the epochs that reuse [[beta]]);
- its held-out AUC is within 0.005 of scikit-learn on FATE's breast and default_credit splits;
- on the demo data, B's columns add value over A's alone;
- B's policy, an empty intersection and bad data end in clear errors and no model on either side.

The common row order after PSI sorts the intersection by SHA-256(job seed, id), so the split and the
batches depend only on the job's seed (42 here, the default), as scikit-learn's would on random_state.
"""

from __future__ import annotations

import dataclasses
import gzip
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fedlearn import metrics
from fedlearn.config import DatasetSpec
from fedlearn.data import load_party_table
from fedlearn.datasets import make_vip
from fedlearn.errors import DataError, NoCommonIds, PolicyViolation
from fedlearn.job import parse_job
from fedlearn.model import (
    PlainRun,
    fit_plain_reference,
    log_odds,
    logistic_loss,
    slopes_refreshed,
)
from fedlearn.protocol import held
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.train import train
from party_b.node import NodeB
from tests.protocol.harness import (
    TEST_POLICY,
    TEST_ROWS_PER_COLUMN,
    MemoryRun,
    fate_specs,
    job_text,
    rebuild,
    run_memory,
)

#: The job defaults (fedlearn/job.py): adam, learning rate 0.1 decaying; a fixed 10 epochs here
#: (early stopping off) so that the comparison with the reference covers the same steps.
EPOCHS = 10
LEARNING_RATE = 0.1
AUC_TOLERANCE = 0.005


def _seeded_run(name: str, batch_size: int, tmp: Path) -> tuple[MemoryRun, float]:
    a_spec, b_spec = fate_specs(name)
    started = time.perf_counter()
    run = run_memory(
        a_spec,
        b_spec,
        job_text(epochs=EPOCHS, batch_size=batch_size, learning_rate=LEARNING_RATE),
        tmp,
    )
    return run, time.perf_counter() - started


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory: pytest.TempPathFactory) -> MemoryRun:
    # The parties hold the reused ciphertexts in temporary files here (as beyond ~128k rows at 2048 bits),
    # in memory in the default_credit run: both must give the reference's weights.
    stores: list[held.HeldCiphertexts] = []
    opened = held.HeldCiphertexts.__init__

    def recording(self: held.HeldCiphertexts, *args: object, **kwargs: object) -> None:
        opened(self, *args, **kwargs)  # type: ignore[arg-type]
        assert self.in_file
        stores.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(held, "MEMORY_LIMIT_BYTES", 0)
        patch.setattr(held.HeldCiphertexts, "__init__", recording)
        run, _ = _seeded_run("breast", 64, tmp_path_factory.mktemp("breast"))
    # B's [[beta]]_A and [[gamma w]]_A, A's [[gamma w]]_B: used, then closed with the session
    assert len(stores) == 3 and all(store.present.size == 0 for store in stores)
    return run


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory: pytest.TempPathFactory) -> MemoryRun:
    # 48 s on a quiet core (PSI 6 s, encryption 17 s, mat-vec 15 s); 70-80 s on the shared machine.
    run, _ = _seeded_run("default_credit", 1024, tmp_path_factory.mktemp("credit"))
    return run


def _protocol_weights(run: MemoryRun) -> tuple[np.ndarray, np.ndarray]:
    w_a = np.array([*run.meta["a_weights"].values(), run.meta["intercept"]])
    return w_a, np.asarray(run.b_shard["weights"], dtype=np.float64)


def _reference(run: MemoryRun, data: dict[str, np.ndarray]) -> PlainRun:
    params = run.job.params
    train_rows = data["train"]
    x_a = np.hstack([data["x_a"], np.ones((len(data["y"]), 1))])
    return fit_plain_reference(
        x_a[train_rows],
        data["x_b"][train_rows],
        data["y"][train_rows],
        epochs=params.epochs,
        batch_size=params.batch_size,
        seed=params.seed,
        optimizer=params.optimizer,
        learning_rate=params.learning_rate,
        l2=params.l2,
        l1=params.l1,
    )


def _sklearn_auc(data: dict[str, np.ndarray]) -> float:
    x = np.hstack([data["x_a"], data["x_b"]])
    y, train_rows, validation_rows = data["y"], data["train"], data["validation"]
    model = LogisticRegression(max_iter=5000).fit(x[train_rows], y[train_rows])
    return metrics.auc(y[validation_rows], model.predict_proba(x[validation_rows])[:, 1])


def _check_matches_reference(run: MemoryRun) -> None:
    data = rebuild(run)
    reference = _reference(run, data)
    ref_a, ref_b, ref_losses = reference.w_a, reference.w_b, reference.losses
    w_a, w_b = _protocol_weights(run)
    assert w_a.shape == ref_a.shape and w_b.shape == ref_b.shape
    np.testing.assert_allclose(w_a, ref_a, atol=1e-4, rtol=0)
    np.testing.assert_allclose(w_b, ref_b, atol=1e-4, rtol=0)
    losses = [record["loss"] for record in run.meta["loss_history"]]
    # The bound grows with B's scores (u_B^2 / 8: 3.07 on breast after 10 epochs); the fixed-point
    # encoding's error grows with it, hence a relative tolerance too.
    np.testing.assert_allclose(losses, ref_losses, atol=1e-4, rtol=1e-4)
    changes = [record["score_change"] for record in run.meta["loss_history"]]
    np.testing.assert_allclose(changes, reference.changes, atol=1e-3, rtol=0)
    # The slopes were reused where the public schedule says so (default_credit: 3 of 10 epochs,
    # breast: 1), and only there: the reference replays the same stale slopes.
    forwards = [r.message for r in run.record if isinstance(r.message, m.BatchForwardRequest)]
    reused = [f.reuse_slopes for f in forwards]
    epochs, batches = run.job.params.epochs, max(f.header.batch for f in forwards) + 1
    assert reused == [not slopes_refreshed(f.header.epoch, epochs, batches) for f in forwards]
    assert any(reused) and not all(reused)
    # The history says which epochs refreshed, and how long each took.
    history = run.meta["loss_history"]
    epoch_reused = {f.header.epoch: f.reuse_slopes for f in forwards}
    assert [r["refreshed"] for r in history] == [not epoch_reused[e] for e in range(len(history))]
    assert all(r["seconds"] > 0 for r in history)
    # The weights moved: a run that learned nothing would match a reference that learned nothing.
    # (The loss *bound* the protocol evaluates may rise as B's scores grow: its u_B^2 / 8 term; the
    # logistic loss of the model on the training rows is what must fall.)
    assert np.abs(ref_b).max() > 0.05
    train, y = data["train"], data["y"][data["train"]]
    x_a = np.hstack([data["x_a"], np.ones((len(data["y"]), 1))])[train]
    start = np.zeros_like(w_a)
    start[-1] = log_odds(y)
    before = logistic_loss(x_a @ start, y).mean()
    after = logistic_loss(x_a @ w_a + data["x_b"][train] @ w_b, y).mean()
    assert after < before


def _check_auc(run: MemoryRun) -> None:
    data = rebuild(run)
    reference_auc = _sklearn_auc(data)
    joint_auc = run.meta["metrics"]["joint"]["auc"]
    assert joint_auc >= reference_auc - AUC_TOLERANCE, (joint_auc, reference_auc)


# ---- (a) the encrypted protocol equals the plaintext reference -------------------------------------


def test_breast_weights_and_loss_equal_plaintext_reference(breast_run: MemoryRun) -> None:
    _check_matches_reference(breast_run)


def test_default_credit_weights_and_loss_equal_plaintext_reference(credit_run: MemoryRun) -> None:
    _check_matches_reference(credit_run)


# ---- (b) accuracy against scikit-learn on the joined plaintext columns ---------------------------


def test_breast_auc_close_to_sklearn(breast_run: MemoryRun) -> None:
    # Measured with this split: protocol 0.9968, scikit-learn 0.9961. Caution: breast's 114
    # validation rows make this noisy, and over 30 random PSI orders the linearised residual
    # trailed scikit-learn by more than 0.005 in 40% of them (mean 0.004, max 0.019), while
    # mini-batch descent with the exact sigmoid stayed within 0.004. See the report on issue 3.
    _check_auc(breast_run)


def test_default_credit_auc_close_to_sklearn(credit_run: MemoryRun) -> None:
    # Measured with this split: protocol 0.7163, scikit-learn 0.7192, A only 0.6603. Over 10 random
    # PSI orders (plaintext reference) the gap was 0.003 on average, at most 0.004.
    _check_auc(credit_run)
    assert credit_run.meta["metrics"]["joint"]["auc"] > credit_run.meta["metrics"]["a_only"]["auc"]


# ---- (c) the demo data: B's columns add value --------------------------------------------------------


def test_demo_joint_auc_beats_a_only(tmp_path: Path) -> None:
    paths = make_vip(tmp_path / "data", rows=4000, seed=5)
    a_spec = DatasetSpec(
        "vip",
        paths.a_train_csv,
        paths.id_column,
        paths.label_column,
        list(paths.a_columns),
        list(paths.a_categorical),
    )
    b_spec = DatasetSpec(
        "vip",
        paths.b_features_csv,
        paths.id_column,
        None,
        list(paths.b_columns),
        list(paths.b_categorical),
    )
    run = run_memory(
        a_spec,
        b_spec,
        job_text("vip", epochs=EPOCHS, batch_size=1024, learning_rate=LEARNING_RATE),
        tmp_path,
    )
    found = run.meta["metrics"]
    assert run.meta["rows"]["aligned"] == 3200  # B knows 80% of A's 4000 users
    # Measured on one split: joint 0.77, A only 0.57.
    assert found["joint"]["auc"] > found["a_only"]["auc"] + 0.05, found


# ---- (d, e, f) refusals and bad data: a clear error and no model on either side -----------------


def _no_models(tmp: Path) -> None:
    assert ModelStore(tmp / "a-models").list_ids() == []
    assert ModelStore(tmp / "b-models").list_ids() == []


def test_policy_refusal_names_every_reason(tmp_path: Path) -> None:
    a_spec, b_spec = fate_specs("breast")
    policy = PeerPolicy(min_key_bits=1024, min_batch_size=128, max_epochs=5)
    job = job_text(epochs=6, batch_size=64, key_bits=512)
    with pytest.raises(PolicyViolation) as refused:
        run_memory(a_spec, b_spec, job, tmp_path, policy=policy)
    message = str(refused.value)
    assert "key_bits 512 is below the minimum 1024" in message
    assert "batch_size 64 is below the minimum 128" in message
    assert "epochs 6 is above the maximum 5" in message
    _no_models(tmp_path)


def test_batches_not_larger_than_features_are_refused(tmp_path: Path) -> None:
    # breast: B has 20 columns; batches of 16 rows would let A solve for B's per-row data.
    a_spec, b_spec = fate_specs("breast")
    with pytest.raises(PolicyViolation, match=r"allow at most 5 feature columns per party.*has 20"):
        run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=16), tmp_path)
    _no_models(tmp_path)


def _auto_batch_job(privacy_rows: int) -> str:
    text = job_text(epochs=1, batch_size=1, privacy="")  # batch_size replaced just below
    text = text.replace("batch_size = 1\n", 'batch_size = "auto"\n')
    return text.replace(
        f"min_rows_per_column = {TEST_ROWS_PER_COLUMN}", f"min_rows_per_column = {privacy_rows}"
    )


@pytest.mark.parametrize(
    ("policy_change", "privacy_rows", "expected"),
    [
        # breast: B has 20 columns, A 10 and the intercept. B asks 8 rows per column: 160.
        ({"min_rows_per_column": 8}, 8, 160),
        # A's [privacy] rows per column apply to B's columns too, and A learns B's count at the
        # first batch: after B's 160, A's 20 x B's 20 = 400 (A's own 11 x 20 = 220 already fits:
        # 455 training rows cut in batches of 160 are batches of 227 and 228 rows).
        ({"min_rows_per_column": 8}, 20, 400),
        # B's minimum batch, when it is B's only reason to refuse.
        ({"min_batch_size": 200}, TEST_ROWS_PER_COLUMN, 200),
    ],
)
def test_an_auto_batch_grows_to_what_the_parties_need(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy_change: dict[str, Any],
    privacy_rows: int,
    expected: int,
) -> None:
    # The "auto" start is lowered from 1024 (a full batch on breast) so that a party refuses it.
    monkeypatch.setattr("fedlearn.job.DEFAULT_BATCH_SIZE", 16)
    policy = dataclasses.replace(TEST_POLICY, **policy_change)
    a_spec, b_spec = fate_specs("breast")
    run = run_memory(a_spec, b_spec, _auto_batch_job(privacy_rows), tmp_path, policy=policy)
    assert run.meta["job"]["batch_size"] == expected
    assert run.b_shard["model_id"] == run.meta["model_id"]


def test_a_fixed_batch_size_is_not_changed(tmp_path: Path) -> None:
    a_spec, b_spec = fate_specs("breast")
    with pytest.raises(PolicyViolation) as refused:
        run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=16), tmp_path)
    assert refused.value.min_batch_size == 60  # the hint is there; only "auto" acts on it
    _no_models(tmp_path)


def test_partner_not_allowed_is_refused(tmp_path: Path) -> None:
    a_spec, b_spec = fate_specs("breast")
    role = NodeB(
        name="party-b",
        datasets={b_spec.name: b_spec},
        policy=PeerPolicy(min_key_bits=512, min_batch_size=16),
        model_dir=tmp_path / "b-models",
        allowed_partners={"party-c"},
    )
    a_table = load_party_table(a_spec.path, id_column="id", label_column="y", require_label=True)
    try:
        with pytest.raises(PolicyViolation, match="'party-a' is not allowed by party-b"):
            train(
                InMemoryPeer(role, identity="party-a"),
                table=a_table,
                spec=a_spec,
                job=parse_job(job_text(epochs=1, batch_size=64)),
                own_name="party-a",
                store=ModelStore(tmp_path / "a-models"),
            )
    finally:
        role.close()
    _no_models(tmp_path)


@pytest.fixture
def disjoint_ids(tmp_path: Path) -> tuple[DatasetSpec, DatasetSpec]:
    (tmp_path / "a.csv").write_text(
        "id,x1,y\n" + "".join(f"a{i},{i % 7},{i % 2}\n" for i in range(200))
    )
    (tmp_path / "b.csv").write_text("id,z1\n" + "".join(f"b{i},{i % 5}\n" for i in range(200)))
    return (
        DatasetSpec("d", tmp_path / "a.csv", "id", "y", None, []),
        DatasetSpec("d", tmp_path / "b.csv", "id", None, None, []),
    )


def test_empty_intersection_is_a_data_error_and_saves_no_model(
    tmp_path: Path, disjoint_ids: tuple[DatasetSpec, DatasetSpec]
) -> None:
    with pytest.raises(NoCommonIds, match="no IDs in common") as refused:
        run_memory(*disjoint_ids, job_text(epochs=1, batch_size=16), tmp_path)
    # A adds how its own IDs look (B's message names none of B's)
    assert "A's IDs are text IDs in lower case (e.g. 'a0')" in str(refused.value)
    assert "'b0'" not in str(refused.value)
    _no_models(tmp_path)


def test_label_not_0_1_is_a_data_error_at_load(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,x1,y\nu1,0.5,0\nu2,1.5,1\nu3,2.5,2\n")
    with pytest.raises(DataError, match=r"label column 'y' must hold 0/1.*'2'.*row 3"):
        load_party_table(path, id_column="id", label_column="y", require_label=True)


def test_text_in_numeric_column_is_a_data_error_at_load(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,x1,y\nu1,0.5,0\nu2,n/a?,1\nu3,2.5,1\n")
    with pytest.raises(DataError, match=r"'x1'.*non-numeric.*row 2"):
        load_party_table(path, id_column="id", label_column="y", require_label=True)


def test_text_in_bs_numeric_column_stops_training_with_no_model(tmp_path: Path) -> None:
    a_spec, _ = fate_specs("breast")
    lines = gzip.decompress(fate_specs("breast")[1].path.read_bytes()).decode().splitlines()
    header, first, *rest = lines
    cells = first.split(",")
    cells[1] = "high"
    (tmp_path / "b.csv").write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    b_spec = DatasetSpec("d", tmp_path / "b.csv", "id", None, None, [])
    with pytest.raises(DataError, match="non-numeric"):
        run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=64), tmp_path)
    _no_models(tmp_path)


def test_a_constant_column_is_named_in_the_models_notes_and_bs_in_bs_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_spec, b_spec = fate_specs("breast")
    for name, spec in (("a", a_spec), ("b", b_spec)):
        frame = pd.read_csv(spec.path)
        frame[f"{name}_constant"] = 1.0
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    a_spec = DatasetSpec("d", tmp_path / "a.csv", "id", "y", None, [])
    b_spec = DatasetSpec("d", tmp_path / "b.csv", "id", None, None, [])
    with caplog.at_level("WARNING", logger="fedlearn.protocol.train_b"):
        run = run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=128), tmp_path)
    (note,) = run.meta["notes"]
    assert "column(s) a_constant hold one value on every training row" in note
    assert "column(s) b_constant hold one value on every training row" in caplog.text


def test_too_few_training_rows_for_bs_minimum_batch_says_what_would_allow_it(
    tmp_path: Path,
) -> None:
    a_spec, b_spec = fate_specs("breast")
    strict = PeerPolicy(min_key_bits=512, min_batch_size=1000, allow_partial_scores=True)
    with pytest.raises(
        PolicyViolation, match=r"only \d+ aligned training rows.*validation_fraction"
    ):
        run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=1000), tmp_path, policy=strict)
    _no_models(tmp_path)


def test_closing_bs_node_waits_for_the_sessions_its_partner_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closes its session at the end of the job; B drops it in a thread of its own. Closing B's
    # node must wait for that drop, or a stopped node may still hold the session's ciphertexts.
    dropped_by_partner: list[str] = []
    drop = NodeB._drop

    def slow_drop(self: NodeB, session: Any) -> None:
        time.sleep(0.5)
        drop(self, session)
        if threading.current_thread().name == "b-drop":
            dropped_by_partner.append(session.session_id)

    monkeypatch.setattr(NodeB, "_drop", slow_drop)
    a_spec, b_spec = fate_specs("breast")
    run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=128), tmp_path)  # closes B's node
    assert len(dropped_by_partner) == 1


def test_a_column_that_leaks_the_label_is_named_at_once_and_in_the_models_notes(
    tmp_path: Path,
) -> None:
    a_spec, b_spec = fate_specs("breast")
    frame = pd.read_csv(a_spec.path)
    frame["vip_since_days"] = np.where(frame["y"] == 1, 3.0, -1.0)  # known only after the outcome
    frame.to_csv(tmp_path / "a.csv", index=False)
    a_spec = DatasetSpec("d", tmp_path / "a.csv", "id", "y", None, [])
    run = run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=128), tmp_path)
    (note,) = run.meta["notes"]
    assert "column(s) vip_since_days (AUC 1.000) alone separate the label" in note
    assert "known on the day a user signs up" in note
