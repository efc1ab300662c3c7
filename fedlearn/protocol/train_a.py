"""A's driver of joint training: alignment, the encrypted batches, evaluation, and the model shards.

A is the label party and the active side: it calls B for every step (DESIGN.md section 3). What crosses
is listed in docs/protocol.md. At the end A holds its weights and the intercept, B holds B's weights;
both save their shard under the same model id, B first, and A asks B to delete its shard when A cannot
save its own, so no half model is registered on either side.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
from sklearn.linear_model import LogisticRegression

from fedlearn import metrics
from fedlearn.config import DatasetSpec
from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import own_key_engine, peer_key_engine
from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import generate_keypair, public_key_from_bytes, public_key_to_bytes
from fedlearn.crypto.packing import unpack
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.wire import (
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
)
from fedlearn.data import PartyTable
from fedlearn.errors import (
    DataError,
    EncodingOverflow,
    FedlearnError,
    InvalidPeerData,
    PolicyViolation,
)
from fedlearn.job import JobSpec
from fedlearn.model import Optimizer, epoch_batches, max_batch_rows, sigmoid, split_train_validation
from fedlearn.preprocess import PreprocessConfig, Preprocessor
from fedlearn.protocol import messages as m
from fedlearn.protocol.align import close_quietly, open_and_align
from fedlearn.protocol.peer_api import PeerApi
from fedlearn.protocol.progress import ProgressCallback, ProgressEvent, no_progress
from fedlearn.protocol.steps import (
    SCORE_CLIP,
    FixedPointFeatures,
    gradient_from_masked,
    gradient_layout,
    int_from_bytes,
    int_to_bytes,
    label_party_loss,
    label_party_terms,
    loss_bound_bits,
    loss_mask,
    masked_gradient,
    power_each,
    preprocess_dict,
    residual_frac_bits,
    unmask_loss,
)
from fedlearn.store import ModelStore, new_model_id

log = logging.getLogger(__name__)
INTERCEPT = "(intercept)"


@dataclass
class _Timer:
    """Seconds per phase, accumulated."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - started
        return now


def train(
    peer: PeerApi,
    *,
    table: PartyTable,
    spec: DatasetSpec,
    job: JobSpec,
    own_name: str,
    store: ModelStore,
    executor: Executor | None = None,
    workers: int = 1,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Run one joint training job with B; returns A's model metadata (also saved in ``store``)."""
    if table.labels is None:
        raise DataError(f"dataset {spec.name!r} has no label column; set label_column")
    params = job.params
    started = time.perf_counter()
    timer = _Timer()
    progress(ProgressEvent("keys", message=f"generating a {params.key_bits}-bit Paillier key pair"))
    own = own_key_engine(
        params.engine,
        generate_keypair(params.key_bits),
        obfuscation=job.obfuscation,
        executor=executor,
    )
    mark = timer.add("keys", started)
    try:
        progress(
            ProgressEvent("alignment", message="private set intersection with " + peer.peer_name)
        )
        request = m.OpenSessionRequest(
            purpose=m.Purpose.TRAIN,
            dataset=job.peer_dataset,
            train=params,
            paillier_key=m.PaillierKey(
                n=public_key_to_bytes(own.public_key), djn_base=int_to_bytes(own.djn_base)
            ),
        )
        alignment = open_and_align(peer, request, [str(i) for i in table.ids], workers=workers)
        mark = timer.add("alignment", mark)
        session_id = alignment.session.session_id
        progress(
            ProgressEvent(
                "alignment",
                elapsed_s=time.perf_counter() - started,
                message=(
                    f"{alignment.own_size} rows here, {alignment.peer_size} at {peer.peer_name}, "
                    f"{len(alignment.own_rows)} in common"
                ),
            )
        )
        try:
            meta = _train_session(
                peer,
                own,
                alignment,
                table,
                spec,
                job,
                own_name,
                store,
                executor,
                timer,
                started,
                progress,
            )
        finally:
            close_quietly(peer, session_id)
    finally:
        own.close()
    return meta


def _train_session(
    peer: PeerApi,
    own: OwnKeyEngine,
    alignment: Any,
    table: PartyTable,
    spec: DatasetSpec,
    job: JobSpec,
    own_name: str,
    store: ModelStore,
    executor: Executor | None,
    timer: _Timer,
    started: float,
    progress: ProgressCallback,
) -> dict[str, Any]:
    params = job.params
    frac = params.score_frac_bits
    traffic_start = (getattr(peer, "bytes_sent", 0), getattr(peer, "bytes_received", 0))
    session_id = alignment.session.session_id
    peer_key = public_key_from_bytes(alignment.session.paillier_key.n, min_bits=params.key_bits)
    peer_engine = peer_key_engine(
        params.engine,
        peer_key,
        executor=executor,
        djn_base=int_from_bytes(
            alignment.session.paillier_key.djn_base, peer_key.nsquare, what="the peer's DJN base"
        ),
    )
    own_n, peer_n = int(own.public_key.n), int(peer_key.n)
    nsquare = peer_key.nsquare
    n_aligned = len(alignment.own_rows)
    if n_aligned == 0:
        raise DataError(
            f"no IDs in common with {peer.peer_name}: check that both sides use the same kind of "
            f"ID in {spec.id_column!r} (white space is stripped, case is kept)"
        )
    labels = np.asarray(table.labels)[alignment.own_rows].astype(np.float64)
    train_rows, validation_rows = split_train_validation(
        n_aligned, params.validation_fraction, params.seed
    )
    if len(np.unique(labels[train_rows])) < 2:
        raise DataError("the aligned training rows hold only one label class; nothing to learn")

    mark = time.perf_counter()
    frame = table.features.iloc[alignment.own_rows].reset_index(drop=True)
    preprocessor = Preprocessor(
        numeric=table.numeric_columns,
        categorical=table.categorical_columns,
        config=PreprocessConfig.from_dict(preprocess_dict(params.preprocess)),
    )
    preprocessor.fit(frame.iloc[train_rows])
    matrix = preprocessor.transform(frame)
    quantized = preprocessor.quantize(matrix).astype(np.int32)
    ones = np.ones((n_aligned, 1), dtype=np.int32)
    features = FixedPointFeatures(
        np.hstack([quantized, ones]),
        np.append(np.asarray(preprocessor.scales_, dtype=np.float64), 1.0),
    )
    x = features.x
    names = [*preprocessor.output_names_, INTERCEPT]
    max_rows = max_batch_rows(len(train_rows), params.batch_size)
    bits = params.preprocess.feature_bits
    own_layout = gradient_layout(peer_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=frac)
    peer_layout = gradient_layout(own_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=frac)
    own_codec = FixedPointCodec(own_n, frac_bits=0)
    peer_codec = FixedPointCodec(peer_n, frac_bits=0)
    weights = np.zeros(features.n_features)
    penalty_mask = np.ones(features.n_features)
    penalty_mask[-1] = 0.0
    optimizer = Optimizer(
        params.optimizer, params.learning_rate, penalty_mask, l2=params.l2, l1=params.l1
    )
    # Keep two batches of obfuscators ready (alpha and beta per row): the pool refills in the
    # background while A waits for B.
    own.pool_target = 2 * max_rows
    own.prefill(2 * max_rows)
    mark = timer.add("preprocessing", mark)

    history: list[dict[str, Any]] = []
    best_loss, stale_epochs, peer_value_count = math.inf, 0, 0
    n_batches = max(1, len(train_rows) // params.batch_size)
    loss_bits = loss_bound_bits(len(train_rows), frac)
    train_started = time.perf_counter()
    for epoch in range(params.epochs):
        epoch_start = weights.copy()
        plain_loss = 0.0
        encrypted_loss: Any = None
        peer_change = 0.0
        for batch, rows in enumerate(
            epoch_batches(train_rows, params.batch_size, params.seed, epoch)
        ):
            header = m.BatchHeader(session_id, epoch, batch)
            s = len(rows)
            mark = time.perf_counter()
            u_a = x[rows] @ weights
            y = labels[rows]
            alpha, beta = label_party_terms(u_a, y, frac)
            encrypted = own.encrypt(own_codec.encode_int(alpha + beta))
            mark = timer.add("encryption", mark)
            forward = peer.batch_forward(
                m.BatchForwardRequest(
                    header,
                    ciphertexts_to_bytes(encrypted[:s], own_n),
                    ciphertexts_to_bytes(encrypted[s:], own_n),
                )
            )
            mark = timer.add("network", mark)
            encrypted_scores = ciphertexts_from_bytes(forward.ciphertexts, peer_n, expected_count=s)
            (loss_term,) = ciphertexts_from_bytes(forward.loss_term, peer_n, expected_count=1)
            residual = peer_engine.add_plain(
                power_each(encrypted_scores, beta, nsquare), peer_codec.encode_int(alpha)
            )
            packed, masks = masked_gradient(peer_engine, features.x_q[rows], residual, own_layout)
            # The loss terms in u_B: (sigmoid(u_A) - y) u_B + u_B^2 / 8, under B's key.
            plain, coefficients, coefficient_sum = label_party_loss(u_a, y)
            plain_loss += plain
            cross = peer_engine.add_plain(
                [peer_engine.dot(coefficients, encrypted_scores)],
                peer_codec.encode_int([-(SCORE_CLIP << frac) * coefficient_sum]),
            )[0]
            batch_loss = gmpy2.mpz(cross) * loss_term % nsquare
            encrypted_loss = (
                batch_loss if encrypted_loss is None else encrypted_loss * batch_loss % nsquare
            )
            mark = timer.add("matvec", mark)
            reply = peer.batch_gradient(
                m.BatchGradientRequest(
                    header, ciphertexts_to_bytes(packed, peer_n), value_count=features.n_features
                )
            )
            mark = timer.add("network", mark)
            peer_count = reply.value_count
            if not 1 <= peer_count <= 1_000_000 or (
                peer_value_count and peer_count != peer_value_count
            ):
                raise InvalidPeerData(f"BatchGradient: implausible value_count {peer_count}")
            peer_value_count = peer_count
            peer_packed = ciphertexts_from_bytes(
                reply.packed_ciphertexts,
                own_n,
                expected_count=peer_layout.ciphertext_count(peer_count),
            )
            masked_own = ints_from_bytes(
                reply.masked_values,
                own_layout.slot_bytes,
                expected_count=features.n_features,
                bound=own_layout.slot_value_bound,
            )
            masked_peer = unpack(own.decrypt(peer_packed), peer_layout, peer_count)
            mark = timer.add("decryption", mark)
            try:
                gradient = gradient_from_masked(masked_own, masks, own_layout, features, frac, s)
            except EncodingOverflow as exc:
                raise InvalidPeerData(
                    f"BatchGradient: the returned gradient values are wrong: {exc}"
                ) from None
            weights = optimizer.step(weights, gradient)
            update = peer.batch_update(
                m.BatchUpdateRequest(header, ints_to_bytes(masked_peer, peer_layout.slot_bytes))
            )
            peer_change = update.weight_change_norm
            mark = timer.add("network", mark)
            done = epoch * n_batches + batch + 1
            elapsed = time.perf_counter() - train_started
            progress(
                ProgressEvent(
                    "training",
                    epoch=epoch + 1,
                    epochs=params.epochs,
                    batch=batch + 1,
                    batches=n_batches,
                    loss=history[-1]["loss"] if history else math.nan,
                    elapsed_s=time.perf_counter() - started,
                    eta_s=elapsed / done * (params.epochs * n_batches - done),
                )
            )
        epoch_loss = _reveal_epoch_loss(
            peer, peer_engine, session_id, epoch, encrypted_loss, loss_bits
        )
        loss = (plain_loss + epoch_loss / 2.0 ** residual_frac_bits(frac)) / len(train_rows)
        own_change = float(np.linalg.norm(weights - epoch_start))
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss,
            "weight_change": own_change,
            "peer_weight_change": peer_change,
        }
        if job.eval_every and (epoch + 1) % job.eval_every == 0 and len(validation_rows):
            record["validation_auc"] = metrics.auc(
                labels[validation_rows],
                _joint_validation_scores(peer, session_id, x, weights, validation_rows),
            )
        history.append(record)
        mark = timer.add("loss", mark)
        progress(
            ProgressEvent(
                "training",
                epoch=epoch + 1,
                epochs=params.epochs,
                batch=n_batches,
                batches=n_batches,
                loss=loss,
                elapsed_s=time.perf_counter() - started,
                message=f"epoch {epoch + 1}: loss {loss:.5f}",
            )
        )
        if _should_stop(job, history, best_loss, stale_epochs):
            break
        if loss < best_loss - job.tolerance:
            best_loss, stale_epochs = loss, 0
        else:
            stale_epochs += 1

    progress(
        ProgressEvent(
            "evaluation",
            elapsed_s=time.perf_counter() - started,
            message=f"validation on {len(validation_rows)} rows",
        )
    )
    mark = time.perf_counter()
    evaluation = _evaluate(peer, session_id, x, weights, labels, train_rows, validation_rows)
    mark = timer.add("evaluation", mark)
    model_id = new_model_id(spec.name)
    committed = peer.commit_model(m.CommitModelRequest(session_id, model_id))
    meta = {
        "model_id": model_id,
        "role": "A",
        "party": own_name,
        "partner": peer.peer_name,
        "dataset": spec.name,
        "peer_dataset": job.peer_dataset,
        "target_description": job.target_description
        or f"{job.label_column or spec.label_column} = 1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "id_column": spec.id_column,
        "label_column": job.label_column or spec.label_column,
        "numeric_columns": list(table.numeric_columns),
        "categorical_columns": list(table.categorical_columns),
        "preprocessor": preprocessor.to_dict(),
        "feature_names": names[:-1],
        "a_weights": {name: float(w) for name, w in zip(names[:-1], weights[:-1], strict=True)},
        "intercept": float(weights[-1]),
        "b_mean_partial_score": committed.mean_partial_score,
        "job": _job_dict(job),
        "loss_history": history,
        "epochs_completed": len(history),
        "rows": {
            "own": alignment.own_size,
            "peer": alignment.peer_size,
            "aligned": n_aligned,
            "train": len(train_rows),
            "validation": len(validation_rows),
        },
        "timings": {**timer.seconds, "total": time.perf_counter() - started},
        "traffic": {
            "a_to_b_bytes": getattr(peer, "bytes_sent", 0) - traffic_start[0],
            "b_to_a_bytes": getattr(peer, "bytes_received", 0) - traffic_start[1],
        },
        **evaluation,
    }
    try:
        store.save(model_id, meta)
    except BaseException:
        try:
            peer.delete_model(m.DeleteModelRequest(model_id))
        except FedlearnError as exc:
            log.error("could not roll back B's shard of %s: %s", model_id, exc)
        raise
    return meta


def _reveal_epoch_loss(
    peer: PeerApi,
    peer_engine: PeerKeyEngine,
    session_id: str,
    epoch: int,
    encrypted_loss: Any,
    bound_bits: int,
) -> int:
    """B's part of the epoch's loss (its quadratic bound), masked before B decrypts it; only A removes the mask."""
    mask = loss_mask(bound_bits)
    peer_n = int(peer_engine.public_key.n)
    (masked,) = peer_engine.rerandomize(peer_engine.add_plain([encrypted_loss], [mask]))
    reply = peer.epoch_loss(
        m.EpochLossRequest(session_id, epoch, ciphertexts_to_bytes([masked], peer_n))
    )
    value = int_from_bytes(reply.value, peer_n, what="EpochLoss value") or 0
    try:
        return unmask_loss(value, mask, bound_bits)
    except EncodingOverflow as exc:
        raise InvalidPeerData(f"EpochLoss: {exc}") from None


def _should_stop(
    job: JobSpec, history: list[dict[str, Any]], best_loss: float, stale_epochs: int
) -> bool:
    if job.monitor == "none" or len(history) < 2:
        return False
    last = history[-1]
    if job.monitor == "weights":
        return max(last["weight_change"], last["peer_weight_change"]) < job.tolerance
    improved = last["loss"] < best_loss - job.tolerance
    return not improved and stale_epochs + 1 >= job.patience


def _joint_validation_scores(
    peer: PeerApi, session_id: str, x: np.ndarray, weights: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    reply = peer.partial_scores(m.PartialScoresRequest(session_id, m.RowSubset.VALIDATION))
    peer_scores = np.frombuffer(reply.scores, dtype="<f8")
    if len(peer_scores) != len(rows) or not np.all(np.isfinite(peer_scores)):
        raise InvalidPeerData(
            f"PartialScores: expected {len(rows)} finite scores, got {len(peer_scores)}"
        )
    return sigmoid(x[rows] @ weights + peer_scores)


def _evaluate(
    peer: PeerApi,
    session_id: str,
    x: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
) -> dict[str, Any]:
    """Validation metrics of the joint model and of an A-only plaintext baseline on the same split."""
    if len(validation_rows) == 0:
        return {"metrics": {}, "curves": {}}
    y_val = labels[validation_rows]
    try:
        joint = _joint_validation_scores(peer, session_id, x, weights, validation_rows)
    except PolicyViolation as exc:
        log.warning("no joint validation metrics: %s", exc)
        joint = None
    a_only = _a_only_scores(x[:, :-1], labels, train_rows, validation_rows)
    result: dict[str, Any] = {
        "metrics": {"a_only": metrics.summary(y_val, a_only)},
        "curves": {"a_only": {"y": y_val.astype(int).tolist(), "score": a_only.tolist()}},
    }
    if joint is not None:
        result["metrics"]["joint"] = metrics.summary(y_val, joint)
        result["curves"]["joint"] = {"y": y_val.astype(int).tolist(), "score": joint.tolist()}
    return result


def _a_only_scores(
    x: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, validation_rows: np.ndarray
) -> np.ndarray:
    """A's own plaintext logistic regression on the same split and preprocessing (the baseline)."""
    baseline = LogisticRegression(max_iter=2000)
    baseline.fit(x[train_rows], labels[train_rows])
    return np.asarray(baseline.predict_proba(x[validation_rows])[:, 1])


def _job_dict(job: JobSpec) -> dict[str, Any]:
    params = job.params
    return {
        "dataset": job.dataset,
        "peer_dataset": job.peer_dataset,
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "validation_fraction": params.validation_fraction,
        "seed": params.seed,
        "optimizer": params.optimizer,
        "learning_rate": params.learning_rate,
        "l2": params.l2,
        "l1": params.l1,
        "key_bits": params.key_bits,
        "score_frac_bits": params.score_frac_bits,
        "obfuscation": job.obfuscation,
        "early_stopping": {
            "monitor": job.monitor,
            "tolerance": job.tolerance,
            "patience": job.patience,
        },
        "preprocess": preprocess_dict(params.preprocess),
    }
