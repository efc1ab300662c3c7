"""A's driver of batch scoring: new users aligned with B, B's partial scores, A's part, one file.

Users B knows are scored by the joint model, users B lacks by A's own A-only model (trained by A in
plaintext on the same training rows); both are calibrated on the validation rows, so ``score`` is a
probability on one scale and deciles and ranks over the whole file stay meaningful:

    joint  (B knows the user):  score = calibrate(X_A w_A + b + X_B w_B)
    a_only (B lacks the user):  score = calibrate_A(X_A v_A + c)

``model`` says which scored each row, ``partner_matched`` whether B knows the user. A model saved
before the A-only model existed scores users B lacks with B's training mean of ``X_B w_B`` instead
(``model = joint_b_mean``).

The steps, in order, so that a bad request or a bad file fails before B does any work:

1. the request: the model's partner is the configured B, the output is CSV or Parquet and is not the
   input, and its directory exists;
2. A's part, streaming the input in chunks (memory stays flat: only the IDs and one float per row
   are kept): columns checked against the model, values parsed with row-exact errors, the saved
   preprocessing applied (unseen categories fold into ``<other>``, missing values are imputed), and
   ``u_A = x @ w_A + b`` with ``x = quantize(transform(frame)) / scales_``, exactly as in training;
   IDs are normalised and checked for duplicates over the whole file;
3. alignment: a SCORE session with B and PSI on the IDs (what crosses: ``party_a.align``);
4. B's partial scores for the aligned rows (float64, A learns ``X_B w_B`` per matched user, as in
   FATE; B's policy may refuse), checked for count and finiteness; the session is closed;
5. scores, deciles and ranks over the whole file, written ``chunk_rows`` rows at a time to a
   temporary file renamed at the end: a failure never leaves a partial output file and never
   replaces an existing one.
"""

from __future__ import annotations

import contextlib
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedlearn import metrics
from fedlearn.calibration import Calibration
from fedlearn.crypto.executor import Executor
from fedlearn.data import (
    describe_ids,
    iter_table_chunks,
    load_features_frame,
    missing_column_error,
    normalise_ids,
    unicode_form_note,
    write_table_chunks_atomic,
)
from fedlearn.errors import DataError, PolicyViolation
from fedlearn.preprocess import Preprocessor
from fedlearn.progress import ProgressCallback, ProgressEvent, no_progress
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import scores_from_bytes
from fedlearn.protocol.peer_api import PeerApi
from fedlearn.protocol.steps import fixed_point_features, row_scores
from party_a.align import close_quietly, open_and_align

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
MODEL_NAMES = np.array(["joint", "a_only", "joint_b_mean"], dtype=object)
"""The output's ``model`` column, by code (a row keeps a one-byte code until it is written)."""
_JOINT, _A_ONLY, _JOINT_B_MEAN = range(3)
OUTPUT_COLUMNS = ("score", "decile", "rank", "partner_matched", "model", "model_id")
_MODEL_KEYS = (
    "model_id",
    "partner",
    "peer_dataset",
    "id_column",
    "numeric_columns",
    "categorical_columns",
    "preprocessor",
    "a_weights",
    "intercept",
    "b_mean_partial_score",
)


@dataclass(frozen=True)
class ScoreResult:
    """What one scoring run did. ``timings``: seconds per phase (reading, alignment,
    partial_scores, ranking, writing, total); ``warnings``: things the operator should know that did
    not stop the run (extra input columns, no user known to B)."""

    rows: int
    matched: int
    output_path: Path
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    by_model: dict[str, int] = field(default_factory=dict)  # users scored by each model
    validation_auc: dict[str, float] = field(default_factory=dict)  # each model's, at training


@dataclass(frozen=True)
class _OwnPart:
    """A's side of the input, in file order: normalised IDs and u_A = x @ w_A + b."""

    ids: np.ndarray  # (n,) object, str
    own_scores: np.ndarray  # (n,) float64, A's part of the joint logit (intercept included)
    a_only_logits: np.ndarray | None  # (n,) float64, the A-only model's logit (None: old model)
    extra_columns: list[str]


def score(
    peer: PeerApi,
    *,
    model: dict[str, Any],
    input_path: Path,
    output_path: Path,
    chunk_rows: int = 100_000,
    expected_partner: str,
    workers: int = 1,
    executor: Executor | None = None,
    progress: ProgressCallback = no_progress,
    turn: Callable[[ProgressCallback], AbstractContextManager[None]] | None = None,
) -> ScoreResult:
    """Score every user of ``input_path`` (CSV or Parquet) with A's ``model`` and B's shard of it.

    ``turn``: the node's turn (``fedlearn.jobs.Turns.turn``), taken for the work with B only, so
    a bad input file is refused at once, not after the training job the node is running.

    ``model``: A's model metadata as ``party_a.train.train`` saved it. ``expected_partner``: the name of
    the B this node is configured with; the model must have been trained with it. ``workers``:
    processes for A's PSI blinding, or ``executor``, the node's pool or Ray actors, when given. Writes ``output_path`` (CSV, gzipped CSV or Parquet, by
    extension) with one row per input user in input order: the ID column (under the model's ID
    column name, IDs normalised), ``score``, ``decile`` (1 = highest), ``rank`` (1 = highest score,
    ties by input order) and ``partner_matched``.

    Raises ``PolicyViolation`` (the model's partner is not ``expected_partner``; B refuses),
    ``DataError`` (bad output path, missing columns, bad values, duplicate or empty IDs),
    ``NotFound`` (B has no shard of the model), ``InvalidPeerData`` (B's partial scores are
    malformed), or another ``FedlearnError`` from the transport. On any error the output file is
    neither created nor changed.
    """
    started = time.perf_counter()
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1; got {chunk_rows}")
    input_path, output_path = Path(input_path), Path(output_path)
    _check_model(model, expected_partner)
    _check_paths(input_path, output_path)
    timings: dict[str, float] = {}
    warnings: list[str] = []

    mark = time.perf_counter()
    own = _own_part(model, input_path, chunk_rows, progress, started)
    n_rows = len(own.ids)
    if own.extra_columns:
        warnings.append(
            f"{input_path}: ignored {len(own.extra_columns)} column(s) the model does not use: "
            + ", ".join(own.extra_columns[:20])
            + (", ..." if len(own.extra_columns) > 20 else "")
        )
    forms = unicode_form_note(own.ids, f"{input_path.name}")
    if forms is not None:
        warnings.append(forms)
    mark = _lap(timings, "reading", mark)

    with turn(progress) if turn is not None else contextlib.nullcontext():
        progress(
            ProgressEvent(
                "alignment",
                elapsed_s=time.perf_counter() - started,
                message=f"private set intersection of {n_rows} IDs with {peer.peer_name}",
            )
        )
        peer_scores, own_rows, mark = _peer_part(
            peer, model, own.ids, workers, executor, timings, mark, progress
        )
    matched = np.zeros(n_rows, dtype=bool)
    matched[own_rows] = True
    if not matched.any():
        warnings.append(
            f"{peer.peer_name} knows none of the {n_rows} users; every user is scored by "
            "the A-only model (check that both sides use the same kind of ID; "
            + describe_ids(own.ids, "the file's IDs")
            + ")"
        )
    progress(
        ProgressEvent(
            "alignment",
            elapsed_s=time.perf_counter() - started,
            message=f"{int(matched.sum())} of {n_rows} users known to {peer.peer_name}",
        )
    )

    scores, used = _scores(model, own, peer_scores, own_rows, matched)
    deciles, ranks = metrics.deciles(scores), _ranks(scores)
    mark = _lap(timings, "ranking", mark)
    progress(
        ProgressEvent(
            "scoring",
            elapsed_s=time.perf_counter() - started,
            message=f"{n_rows}/{n_rows} rows scored; writing {output_path}",
        )
    )

    def output_chunks() -> Iterator[pd.DataFrame]:
        # One chunk of rows at a time: the output's text never sits in memory whole.
        for start in range(0, n_rows, chunk_rows):
            rows = slice(start, start + chunk_rows)
            yield pd.DataFrame(
                {
                    model["id_column"]: own.ids[rows],
                    "score": scores[rows],
                    "decile": deciles[rows],
                    "rank": ranks[rows],
                    "partner_matched": matched[rows],
                    "model": MODEL_NAMES[used[rows]],
                    # The file says which model made it (for the scoring report and lineage).
                    "model_id": model["model_id"],
                }
            )

    output_path.parent.mkdir(parents=True, exist_ok=True)
    write_table_chunks_atomic(output_chunks(), output_path)
    _lap(timings, "writing", mark)
    seconds = time.perf_counter() - started
    timings["total"] = seconds
    return ScoreResult(
        rows=n_rows,
        matched=int(matched.sum()),
        output_path=output_path,
        seconds=seconds,
        timings=timings,
        warnings=warnings,
        by_model={str(MODEL_NAMES[code]): int(np.sum(used == code)) for code in np.unique(used)},
        validation_auc={
            name: float(values["auc"])
            for name, values in model.get("metrics", {}).items()
            if name in ("joint", "a_only") and "auc" in values
        },
    )


def model_summary(result: ScoreResult) -> str:
    """Which model scored how many users, with each model's AUC on the validation rows at training.

    The joint model's AUC is measured on users B knows; the A-only model's on the same rows with
    A's columns alone: what to expect for the users B lacks (docs/scoring.md).
    """
    names = {"joint": "joint model", "a_only": "A-only model", "joint_b_mean": "joint + B's mean"}
    parts = []
    for name, count in sorted(result.by_model.items()):
        auc = result.validation_auc.get("a_only" if name == "joint_b_mean" else name)
        measured = f", validation AUC {auc:.3f}" if auc is not None else ""
        parts.append(f"{names.get(name, name)}: {count} users{measured}")
    return "; ".join(parts)


def _scores(
    model: dict[str, Any],
    own: _OwnPart,
    peer_scores: np.ndarray,
    own_rows: np.ndarray,
    matched: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probability, code in ``MODEL_NAMES`` of the model that scored it) per row, in
    file order; both (n,), float64 and uint8."""
    joint = Calibration.from_dict(model.get("calibration"))
    scores = np.empty(len(matched))
    used = np.where(matched, _JOINT, _A_ONLY).astype(np.uint8)
    scores[own_rows] = joint.apply(own.own_scores[own_rows] + peer_scores)
    unmatched = ~matched
    if own.a_only_logits is not None:
        fallback = Calibration.from_dict(model["a_only_model"].get("calibration"))
        scores[unmatched] = fallback.apply(own.a_only_logits[unmatched])
    else:
        b_mean = float(model["b_mean_partial_score"])
        scores[unmatched] = joint.apply(own.own_scores[unmatched] + b_mean)
        used[unmatched] = _JOINT_B_MEAN
    return scores, used


# ---- checks before any work ----------------------------------------------------------------------


def _check_model(model: dict[str, Any], expected_partner: str) -> None:
    absent = [key for key in _MODEL_KEYS if key not in model]
    if absent:
        raise DataError(
            f"model {model.get('model_id', '?')} is not a label-party (A) model: its metadata "
            f"lacks {absent}"
        )
    if model["partner"] != expected_partner:
        raise PolicyViolation(
            f"model {model['model_id']} was trained with partner {model['partner']!r}, but this "
            f"node's peer is {expected_partner!r}; score it on a node configured with "
            f"{model['partner']!r}, or train a new model with {expected_partner!r}"
        )


def _has_table_suffix(path: Path) -> bool:
    return path.name.lower().endswith(TABLE_SUFFIXES)


def _check_paths(input_path: Path, output_path: Path) -> None:
    for what, path in (("input", input_path), ("output", output_path)):
        if not _has_table_suffix(path):
            raise DataError(
                f"{what} file {path}: unknown file type; name it .csv, .csv.gz, .parquet or .pq"
            )
    if not input_path.is_file():
        raise DataError(f"input file {input_path} does not exist")
    if output_path.resolve() == input_path.resolve() or (
        output_path.exists() and output_path.samefile(input_path)
    ):
        raise DataError(f"output {output_path} is the input file; write the scores to another file")
    if output_path.is_dir():
        raise DataError(f"output {output_path} is a directory; give a file name")
    # A missing output folder is made when the scores are written (as `fedlearn report --out`);
    # one that a file stands in the way of cannot be.
    blocked = next((d for d in output_path.parents if d.exists() and not d.is_dir()), None)
    if blocked is not None:
        raise DataError(
            f"output {output_path}: {blocked} is a file, not a folder; choose another output"
        )


# ---- A's part ------------------------------------------------------------------------------------


def _own_part(
    model: dict[str, Any],
    input_path: Path,
    chunk_rows: int,
    progress: ProgressCallback,
    started: float,
) -> _OwnPart:
    """Stream the input once: check and parse each chunk, and compute u_A per row (file order)."""
    id_column: str = model["id_column"]
    numeric = [str(c) for c in model["numeric_columns"]]
    categorical = [str(c) for c in model["categorical_columns"]]
    features = numeric + categorical
    preprocessor = Preprocessor.from_dict(model["preprocessor"])
    weights = _weights_with_intercept(model, preprocessor)
    fallback = model.get("a_only_model")
    a_only = _weights_with_intercept(fallback, preprocessor, model) if fallback else None
    label = model.get("label_column")
    source = f"{input_path}"

    id_chunks: list[np.ndarray] = []
    score_chunks: list[np.ndarray] = []
    a_only_chunks: list[np.ndarray] = []
    extra: list[str] = []
    done = 0
    for chunk in iter_table_chunks(input_path, chunk_rows=chunk_rows):
        if done == 0:
            extra = _check_columns(list(chunk.columns), id_column, features, label, model, source)
        if chunk.empty:
            continue
        table = load_features_frame(
            chunk,
            id_column=id_column,
            features=features,
            categorical=categorical,
            source=source,
            first_row=int(chunk.index[0]) + 1,
            trained=True,
        )
        # With the intercept as a column of ones, as in training, so u_A is computed the same way.
        x = fixed_point_features(preprocessor, table.features, intercept=True).x
        id_chunks.append(table.ids)
        score_chunks.append(row_scores(x, weights))
        if a_only is not None:
            a_only_chunks.append(row_scores(x, a_only))
        done += len(chunk)
        progress(
            ProgressEvent(
                "reading",
                elapsed_s=time.perf_counter() - started,
                message=f"{done} rows read and checked (A's part of the score)",
            )
        )
    if done == 0:
        raise DataError(f"{source}: the table has a header but no data rows; nothing to score")
    ids = np.concatenate(id_chunks)
    if pd.Series(ids, dtype=object).duplicated().any():
        # Raises, naming the first repeated ID and both its rows.
        normalise_ids(ids.tolist(), column=id_column, source=source)
    a_only_logits = np.concatenate(a_only_chunks) if a_only is not None else None
    return _OwnPart(ids, np.concatenate(score_chunks), a_only_logits, extra)


def _weights_with_intercept(
    weights: dict[str, Any], preprocessor: Preprocessor, model: dict[str, Any] | None = None
) -> np.ndarray:
    """A's weights in the preprocessing's column order, intercept last. ``weights`` is the joint
    model (``a_weights``, ``intercept``) or the A-only model (``weights``, ``intercept``) of ``model``.
    """
    names = preprocessor.output_names_
    model = model or weights
    saved = weights["a_weights"] if "a_weights" in weights else weights["weights"]
    # A JSON object: its key order is not the column order.
    if set(saved) != set(names) or len(saved) != len(names):
        raise DataError(
            f"model {model['model_id']}: its weights name {len(saved)} columns, but its "
            f"preprocessing produces {len(names)}; the model metadata is inconsistent"
        )
    return np.array([*(float(saved[name]) for name in names), float(weights["intercept"])])


def _check_columns(
    available: list[str],
    id_column: str,
    features: list[str],
    label: str | None,
    model: dict[str, Any],
    source: str,
) -> list[str]:
    """The extra columns (ignored); DataError naming every column the model needs and lacks."""
    present = set(available)
    absent = [c for c in [id_column, *features] if c not in present]
    if absent:
        if len(available) == 1 and len(absent) > 1:  # one wide column: not comma-separated
            raise missing_column_error(source, absent[0], available, "check the file's header")
        hint = ""
        normalised = {unicodedata.normalize("NFC", c) for c in available}
        if any(unicodedata.normalize("NFC", c) in normalised for c in absent):
            hint = (
                " (a name looks the same but is written with other Unicode code points, as some "
                "tools write accents: save the file's header in NFC form)"
            )
        raise DataError(
            f"{source}: missing column(s) {absent} that model {model['model_id']} was trained "
            f"with; the model needs {id_column!r} and {features}{hint}"
        )
    used = {id_column, *features, label}
    return [c for c in available if c not in used]


# ---- B's part ------------------------------------------------------------------------------------


def _peer_part(
    peer: PeerApi,
    model: dict[str, Any],
    ids: np.ndarray,
    workers: int,
    executor: Executor | None,
    timings: dict[str, float],
    mark: float,
    progress: ProgressCallback,
) -> tuple[np.ndarray, np.ndarray, float]:
    """PSI with B, then B's partial scores for the matched rows (in A's row order ``own_rows``)."""
    request = m.OpenSessionRequest(
        purpose=m.Purpose.SCORE, dataset=model["peer_dataset"], model_id=model["model_id"]
    )
    alignment = open_and_align(
        peer, request, ids.tolist(), workers=workers, executor=executor, progress=progress
    )
    mark = _lap(timings, "alignment", mark)
    try:
        reply = peer.partial_scores(
            m.PartialScoresRequest(alignment.session.session_id, m.RowSubset.ALIGNED)
        )
    finally:
        close_quietly(peer, alignment.session.session_id)
    peer_scores = scores_from_bytes(reply.scores, len(alignment.own_rows), per="matched user")
    mark = _lap(timings, "partial_scores", mark)
    return peer_scores, alignment.own_rows, mark


# ---- helpers -------------------------------------------------------------------------------------


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 = highest score; equal scores ranked by input order (a permutation of 1..n)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def _lap(timings: dict[str, float], phase: str, mark: float) -> float:
    now = time.perf_counter()
    timings[phase] = timings.get(phase, 0.0) + now - mark
    return now
