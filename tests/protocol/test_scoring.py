"""Batch scoring in memory (both roles in one process, 512-bit keys): ``party_a.score.score``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedlearn import metrics
from fedlearn.config import DatasetSpec
from fedlearn.data import load_features_frame, load_party_table, read_table
from fedlearn.datasets import VipPaths, make_vip
from fedlearn.errors import DataError, InvalidPeerData, NotFound, PolicyViolation
from fedlearn.model import split_train_validation
from fedlearn.preprocess import Preprocessor
from fedlearn.progress import ProgressEvent
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.score import ScoreResult, _ranks, score
from party_b.node import NodeB
from tests.protocol.harness import TEST_POLICY, MemoryRun, job_text, run_memory

PARTNER = "party-b"


@dataclass
class Trained:
    tmp: Path
    vip: VipPaths
    b_spec: DatasetSpec
    run: MemoryRun
    model: dict[str, Any]  # A's metadata as loaded from A's model store (a JSON round trip)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    tmp = tmp_path_factory.mktemp("scoring")
    vip = make_vip(tmp / "data", rows=3000, seed=3)
    a_spec = DatasetSpec(
        "d", vip.a_train_csv, vip.id_column, vip.label_column, None, list(vip.a_categorical)
    )
    b_spec = DatasetSpec(
        "d", vip.b_features_csv, vip.id_column, None, None, list(vip.b_categorical)
    )
    run = run_memory(a_spec, b_spec, job_text(epochs=3), tmp)
    model = ModelStore(tmp / "a-models").load(run.meta["model_id"])
    return Trained(tmp, vip, b_spec, run, model)


def _role(trained: Trained, policy: PeerPolicy = TEST_POLICY) -> NodeB:
    return NodeB(
        name=PARTNER,
        datasets={trained.b_spec.name: trained.b_spec},
        policy=policy,
        model_dir=trained.tmp / "b-models",
        allowed_partners={"party-a"},
    )


@pytest.fixture
def role(trained: Trained) -> Iterator[NodeB]:
    b = _role(trained)
    yield b
    b.close()


@pytest.fixture
def peer(role: NodeB) -> InMemoryPeer:
    return InMemoryPeer(role, identity="party-a")


def _score(
    peer: Any, trained: Trained, input_path: Path, output_path: Path, **kw: Any
) -> ScoreResult:
    kw.setdefault("model", trained.model)
    kw.setdefault("expected_partner", PARTNER)
    return score(peer, input_path=input_path, output_path=output_path, **kw)


def _raw(path: Path) -> pd.DataFrame:
    """A file's cells as text, IDs normalised (stripped)."""
    frame = read_table(path)
    frame["user_id"] = frame["user_id"].str.strip()
    return frame


def _own_logits(model: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """u_A recomputed from the model metadata, for the rows of ``frame`` (text cells)."""
    table = load_features_frame(
        frame,
        id_column=model["id_column"],
        features=model["numeric_columns"] + model["categorical_columns"],
        categorical=model["categorical_columns"],
    )
    prep = Preprocessor.from_dict(model["preprocessor"])
    x = prep.quantize(prep.transform(table.features)) / prep.scales_
    weights = np.array([model["a_weights"][name] for name in prep.output_names_])
    return np.asarray(x @ weights + model["intercept"])


def _a_only_probabilities(model: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """The A-only model's calibrated probabilities, recomputed from the model metadata."""
    table = load_features_frame(
        frame,
        id_column=model["id_column"],
        features=model["numeric_columns"] + model["categorical_columns"],
        categorical=model["categorical_columns"],
    )
    prep = Preprocessor.from_dict(model["preprocessor"])
    x = prep.quantize(prep.transform(table.features)) / prep.scales_
    fallback = model["a_only_model"]
    weights = np.array([fallback["weights"][name] for name in prep.output_names_])
    logits = x @ weights + fallback["intercept"]
    calibration = fallback["calibration"]
    return np.asarray(1 / (1 + np.exp(-(calibration["slope"] * logits + calibration["offset"]))))


def _peer_logits(trained: Trained, ids: np.ndarray) -> np.ndarray:
    """X_B w_B for ``ids`` (all known to B), recomputed from B's shard and B's file."""
    shard = trained.run.b_shard
    table = load_party_table(
        trained.b_spec.path,
        id_column=trained.b_spec.id_column,
        categorical=trained.b_spec.categorical,
    )
    rows = pd.Index(table.ids).get_indexer(ids)
    assert (rows >= 0).all()
    prep = Preprocessor.from_dict(shard["preprocessor"])
    frame = table.features.iloc[rows].reset_index(drop=True)
    x = prep.quantize(prep.transform(frame)) / prep.scales_
    return np.asarray(x @ np.asarray(shard["weights"]))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


# ---- consistency with training -------------------------------------------------------------------


def test_scoring_the_validation_rows_reproduces_the_training_metrics(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    run = trained.run
    params = run.job.params
    _, validation_rows = split_train_validation(
        len(run.common_ids), params.validation_fraction, params.seed
    )
    validation_ids = run.common_ids[validation_rows]
    frame = _raw(trained.vip.a_train_csv)
    frame = frame.set_index("user_id").loc[validation_ids].reset_index()
    frame = frame.sample(frac=1.0, random_state=5).reset_index(drop=True)  # any input order
    input_path = tmp_path / "validation.csv"
    frame.to_csv(input_path, index=False)  # still holds the label column: ignored

    result = _score(peer, trained, input_path, tmp_path / "scores.csv", chunk_rows=97)
    out = pd.read_csv(tmp_path / "scores.csv", dtype={"user_id": str})

    assert result.rows == result.matched == len(validation_ids)
    assert result.warnings == []  # the label column is not an "extra" column
    assert out["partner_matched"].all()
    y = frame["vip_30d"].astype(int).to_numpy()
    joint = run.meta["metrics"]["joint"]
    assert metrics.auc(y, out["score"].to_numpy()) == pytest.approx(joint["auc"], abs=1e-9)
    assert metrics.ks(y, out["score"].to_numpy()) == pytest.approx(joint["ks"], abs=1e-9)
    # Row by row, too: the scores training recorded for the validation rows, in their order.
    recorded = pd.Series(run.meta["curves"]["joint"]["score"], index=validation_ids)
    np.testing.assert_allclose(
        out["score"].to_numpy(), recorded.loc[out["user_id"]].to_numpy(), rtol=0, atol=1e-12
    )


# ---- the output ----------------------------------------------------------------------------------


def test_new_users_matched_and_unmatched(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    output = tmp_path / "scores.csv"
    result = _score(
        peer, trained, trained.vip.a_new_users_csv, output, chunk_rows=128, progress=events.append
    )
    frame = _raw(trained.vip.a_new_users_csv)
    out = pd.read_csv(output, dtype={"user_id": str})
    b_ids = set(_raw(trained.vip.b_features_csv)["user_id"])
    known = frame["user_id"].isin(b_ids).to_numpy()

    assert list(out.columns) == [
        "user_id",
        "score",
        "decile",
        "rank",
        "partner_matched",
        "model",
        "model_id",
    ]
    assert set(out["model_id"]) == {trained.model["model_id"]}
    assert out["user_id"].tolist() == frame["user_id"].tolist()  # input order
    assert result.rows == len(frame) and result.matched == int(known.sum())
    assert 0 < known.sum() < len(frame)
    assert out["partner_matched"].to_numpy().tolist() == known.tolist()
    assert out["model"].tolist() == ["joint" if k else "a_only" for k in known]
    assert result.by_model == {"joint": int(known.sum()), "a_only": int((~known).sum())}
    assert set(result.validation_auc) == {"joint", "a_only"}

    # Matched: the joint model, calibrated: sigmoid(slope (u_A + u_B) + offset).
    calibration = trained.model["calibration"]
    assert calibration["rows"] > 0 and calibration["slope"] != 1.0
    joint_logit = (_logit(out["score"].to_numpy()) - calibration["offset"]) / calibration["slope"]
    peer_part = joint_logit - _own_logits(trained.model, frame)
    expected_b = _peer_logits(trained, frame["user_id"].to_numpy()[known])
    np.testing.assert_allclose(peer_part[known], expected_b, atol=1e-7)
    # Unmatched: exactly what the A-only model gives them, on its own calibrated scale.
    expected_a_only = _a_only_probabilities(trained.model, frame[~known])
    np.testing.assert_allclose(out["score"].to_numpy()[~known], expected_a_only, atol=1e-12)
    b_mean = trained.model["b_mean_partial_score"]
    assert not np.allclose(peer_part[~known], b_mean, atol=1e-3)  # not the old B-mean fallback

    assert set(out["decile"]) == set(range(1, 11))
    np.testing.assert_array_equal(out["decile"], metrics.deciles(out["score"].to_numpy()))
    assert sorted(out["rank"]) == list(range(1, len(out) + 1))
    by_rank = out.sort_values("rank")
    assert by_rank["score"].is_monotonic_decreasing
    assert by_rank["decile"].is_monotonic_increasing

    phases = [e.phase for e in events]
    assert phases.index("alignment") < len(phases) - 1 and phases[-1] == "scoring"
    assert f"{len(frame)}/{len(frame)} rows" in events[-1].message
    assert "128 rows" in events[0].message
    assert set(result.timings) >= {"reading", "alignment", "partial_scores", "writing", "total"}


def test_ranks_break_ties_by_input_order() -> None:
    ranks = _ranks(np.array([0.2, 0.9, 0.2, 0.5, 0.9]))
    assert ranks.tolist() == [4, 1, 5, 3, 2]


def test_parquet_round_trip_unseen_category_missing_values_and_extra_column(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    frame = _raw(trained.vip.a_new_users_csv).head(300)
    frame.loc[0, "signup_channel"] = "carrier_pigeon"  # never seen in training
    frame.loc[1, "region"] = ""  # missing categorical
    frame.loc[2, ["age", "first_session_minutes", "pages_read_day0"]] = ""  # missing numerics
    frame.loc[3, "device_os"] = "symbian"
    frame["notes"] = "free text"  # extra column: ignored, reported once
    csv_in = tmp_path / "new.csv"
    frame.to_csv(csv_in, index=False)
    typed = pd.read_csv(csv_in, dtype={"user_id": str})
    parquet_in = tmp_path / "new.parquet"
    typed.to_parquet(parquet_in, index=False)

    from_csv = _score(peer, trained, csv_in, tmp_path / "a.csv.gz", chunk_rows=64)
    from_parquet = _score(peer, trained, parquet_in, tmp_path / "b.parquet", chunk_rows=64)

    a = pd.read_csv(tmp_path / "a.csv.gz", dtype={"user_id": str})
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert b["partner_matched"].dtype == bool
    assert b["user_id"].tolist() == frame["user_id"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-15)
    assert (a["partner_matched"] == b["partner_matched"]).all()
    assert np.isfinite(b["score"]).all() and b["score"].between(0, 1).all()
    assert len(from_parquet.warnings) == 1 and "notes" in from_parquet.warnings[0]
    assert from_csv.rows == from_parquet.rows == 300
    # The unseen category scores as <other>, exactly like another unseen one.
    own = _own_logits(trained.model, frame.head(4))
    other = frame.head(1).copy()
    other.loc[0, "signup_channel"] = "smoke_signal"
    # (to rounding: a 1-row and a 4-row matrix product may sum in another order)
    assert _own_logits(trained.model, other)[0] == pytest.approx(own[0], abs=1e-12)


# ---- bad input: a clear error, and no output file ------------------------------------------------


def _bad_inputs(trained: Trained, tmp: Path) -> dict[str, tuple[Path, dict[str, Any], type, str]]:
    frame = _raw(trained.vip.a_new_users_csv).head(200)
    cases: dict[str, tuple[Path, dict[str, Any], type, str]] = {}

    def write(name: str, data: pd.DataFrame) -> Path:
        path = tmp / f"{name}.csv"
        data.to_csv(path, index=False)
        return path

    missing = frame.drop(columns=["age", "region"])
    cases["missing column"] = (
        write("missing", missing),
        {},
        DataError,
        r"missing column\(s\) \['age', 'region'\].*" + trained.model["model_id"],
    )
    semicolons = tmp / "semicolons.csv"
    frame.to_csv(semicolons, index=False, sep=";")
    cases["semicolon-separated"] = (
        semicolons,
        {},
        DataError,
        r"one column separated by ';'.*save it with commas",
    )
    text = frame.copy()
    text.loc[122, "pages_read_day0"] = "lots"
    cases["non-numeric"] = (
        write("text", text),
        {},
        DataError,
        r"'pages_read_day0' has 1 non-numeric value, first at row 123 \('lots'\); the model was "
        "trained with this column as numbers",
    )
    duplicate = frame.copy()
    duplicate.loc[150, "user_id"] = duplicate.loc[9, "user_id"]
    cases["duplicate ID"] = (
        write("dup", duplicate),
        {},
        DataError,
        f"first is '{frame.loc[9, 'user_id']}' at rows 10 and 151",
    )
    empty_id = frame.copy()
    empty_id.loc[60, "user_id"] = ""
    cases["empty ID"] = (write("empty", empty_id), {}, DataError, "first at row 61")
    good = write("good", frame)
    cases["unknown model"] = (
        good,
        {"model": {**trained.model, "model_id": "d-20000101-000000-dead"}},
        NotFound,
        "no model 'd-20000101-000000-dead'",
    )
    cases["wrong partner"] = (
        good,
        {"expected_partner": "party-c"},
        PolicyViolation,
        "trained with partner 'party-b', but this node's peer is 'party-c'",
    )
    cases["bad output extension"] = (good, {"output_path": tmp / "x.xlsx"}, DataError, "xlsx")
    cases["output is input"] = (good, {"output_path": good}, DataError, "is the input")
    return cases


BAD_CASES = [
    "missing column",
    "semicolon-separated",
    "non-numeric",
    "duplicate ID",
    "empty ID",
    "unknown model",
    "wrong partner",
    "bad output extension",
    "output is input",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_refused_and_no_output_is_written(
    case: str, trained: Trained, peer: InMemoryPeer, role: NodeB, tmp_path: Path
) -> None:
    input_path, kw, error, message = _bad_inputs(trained, tmp_path)[case]
    fresh = tmp_path / "fresh.csv"
    existing = tmp_path / "existing.csv"
    existing.write_text("user_id,score\nkeep,me\n")
    for output in (fresh, existing):
        args = {"output_path": output, **kw}
        with pytest.raises(error, match=message):
            _score(peer, trained, input_path, chunk_rows=50, **args)
    assert not fresh.exists()
    assert existing.read_text() == "user_id,score\nkeep,me\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert role._sessions == {}  # no session left open at B


def test_b_refusing_partial_scores_is_a_clear_error(trained: Trained, tmp_path: Path) -> None:
    b = _role(trained, PeerPolicy(min_key_bits=512, min_batch_size=16, allow_partial_scores=False))
    try:
        with pytest.raises(PolicyViolation, match="does not allow returning partial scores"):
            _score(
                InMemoryPeer(b, identity="party-a"),
                trained,
                trained.vip.a_new_users_csv,
                tmp_path / "out.csv",
            )
    finally:
        b.close()
    assert not (tmp_path / "out.csv").exists()


class _TamperingPeer(InMemoryPeer):
    """B answering PartialScores with one value too few, or with a NaN."""

    def __init__(self, role: NodeB, mode: str) -> None:
        super().__init__(role, identity="party-a")
        self.mode = mode

    def partial_scores(self, request: m.PartialScoresRequest) -> m.PartialScoresResponse:
        values = np.frombuffer(super().partial_scores(request).scores, dtype="<f8").copy()
        if self.mode == "short":
            values = values[:-1]
        else:
            values[3] = np.nan
        return m.PartialScoresResponse(scores=values.astype("<f8").tobytes())


@pytest.mark.parametrize("mode", ["short", "nan"])
def test_malformed_partial_scores_are_refused(
    mode: str, trained: Trained, role: NodeB, tmp_path: Path
) -> None:
    with pytest.raises(InvalidPeerData, match="finite scores"):
        _score(_TamperingPeer(role, mode), trained, trained.vip.a_new_users_csv, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    assert role._sessions == {}  # the session was closed even so


def test_header_only_input_is_refused(trained: Trained, peer: InMemoryPeer, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    header = ",".join(["user_id", *trained.vip.a_columns])
    path.write_text(header + "\n")
    with pytest.raises(DataError, match="no data rows"):
        _score(peer, trained, path, tmp_path / "o.csv")


def test_chunk_sizes_do_not_change_the_scores(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reads and writes 37 rows at a time and B scores 50 aligned rows at a time, or each does
    everything at once: the output file is the same, byte for byte."""
    import fedlearn.protocol.session_b as session_b

    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    monkeypatch.setattr(session_b, "SCORE_CHUNK_ROWS", 1 << 30)
    _score(peer, trained, trained.vip.a_new_users_csv, whole, chunk_rows=1 << 30)
    monkeypatch.setattr(session_b, "SCORE_CHUNK_ROWS", 50)
    result = _score(peer, trained, trained.vip.a_new_users_csv, chunked, chunk_rows=37)
    assert result.rows > 37 * 3 and result.matched > 50 * 3  # several chunks on both sides
    assert chunked.read_bytes() == whole.read_bytes()


def test_a_file_whose_users_b_knows_none_of_says_how_its_ids_look(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    frame = _raw(trained.vip.a_new_users_csv).head(50)
    frame["user_id"] = "X" + frame["user_id"]  # IDs B does not have
    path = tmp_path / "upper.csv"
    frame.to_csv(path, index=False)
    result = _score(peer, trained, path, tmp_path / "out.csv")
    assert result.matched == 0
    (warning,) = result.warnings
    assert "knows none of the 50 users" in warning
    assert f"the file's IDs are text IDs in mixed case (e.g. '{frame['user_id'][0]}')" in warning


def test_a_header_written_in_another_unicode_form_is_named_as_such() -> None:
    """'région' as a macOS tool may write it (e + combining accent) looks like the model's name."""
    from party_a.score import _check_columns

    with pytest.raises(DataError, match=r"other Unicode code points.*NFC"):
        _check_columns(
            ["user_id", "re\u0301gion"],
            "user_id",
            ["r\u00e9gion"],
            None,
            {"model_id": "m"},
            "x.csv",
        )


def test_a_bad_input_is_refused_at_once_while_a_job_holds_the_node(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    """Scoring takes the node's turn for the work with B only: a file with an empty ID is refused
    while a training job runs, not when it ends."""
    import threading

    from fedlearn.jobs import Turns

    frame = _raw(trained.vip.a_new_users_csv)
    frame.loc[3, "user_id"] = ""
    frame.to_csv(tmp_path / "bad.csv", index=False)
    turns = Turns()
    release = threading.Event()
    holding = threading.Event()

    def training_job() -> None:
        with turns.turn(lambda event: None):
            holding.set()
            release.wait(30)

    job = threading.Thread(target=training_job)
    job.start()
    try:
        assert holding.wait(10)
        with pytest.raises(DataError, match="empty or missing ID"):
            _score(peer, trained, tmp_path / "bad.csv", tmp_path / "out.csv", turn=turns.turn)
        assert job.is_alive()  # refused while the job still held the node
    finally:
        release.set()
        job.join(10)
    assert not (tmp_path / "out.csv").exists()


def test_the_output_folder_is_made_and_a_path_that_cannot_be_is_refused(
    trained: Trained, peer: InMemoryPeer, tmp_path: Path
) -> None:
    new_users = trained.vip.a_new_users_csv
    nested = tmp_path / "runs" / "2026-12-03" / "scores.csv"
    result = _score(peer, trained, new_users, nested)
    assert nested.is_file() and result.rows == len(_raw(new_users))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(DataError, match=r"taken is a file, not a folder"):
        _score(peer, trained, new_users, tmp_path / "taken" / "scores.csv")
    with pytest.raises(DataError, match="is the input file"):
        _score(peer, trained, new_users, new_users)
    with pytest.raises(DataError, match="is a directory; give a file name"):
        (tmp_path / "dir.csv").mkdir()
        _score(peer, trained, new_users, tmp_path / "dir.csv")
