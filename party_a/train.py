"""A's driver of joint training: alignment, the encrypted batches, evaluation, and the model shards.

A is the label party and the active side: it calls B for every step (docs/design.md section 3). What crosses
is listed in docs/protocol.md. At the end A holds its weights and the intercept, B holds B's weights;
both save their shard under the same model id, B first, and A asks B to delete its shard when A cannot
save its own, so no half model is registered on either side.

This module runs the phases and the epoch loop (loss, early stopping, progress) and writes A's model
metadata; one batch's exchange with B is in ``fedlearn.protocol.train_a``, the validation metrics in ``party_a.evaluate``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlearn import metrics
from fedlearn.checkpoint import (
    MAX_RESUME_EPOCHS,
    CheckpointStore,
    data_fingerprint,
    floats,
    latest_common_epoch,
    optimizer_state,
    restore_optimizer,
)
from fedlearn.config import DatasetSpec
from fedlearn.crypto.engines import OwnKeyOps, PeerKeyOps, own_key_engine
from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import generate_keypair, key_fingerprint, public_key_to_bytes
from fedlearn.data import PartyTable, describe_ids, unicode_form_note
from fedlearn.errors import (
    DataError,
    FedlearnError,
    InvalidPeerData,
    JobCancelled,
    NoCommonIds,
    PolicyViolation,
)
from fedlearn.job import JobSpec
from fedlearn.model import (
    ScoreStats,
    converged,
    epoch_batches,
    log_odds,
    score_change,
    slopes_refreshed,
    split_train_validation,
)
from fedlearn.preprocess import (
    Preprocessor,
    separating_columns,
    separating_note,
    uninformative_note,
)
from fedlearn.progress import ProgressCallback, ProgressEvent, no_progress
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.protocol.peer_api import PeerApi
from fedlearn.protocol.steps import fit_party_features
from fedlearn.protocol.train_a import Timer, TrainingA, peer_engine_for
from fedlearn.store import ModelStore, new_model_id
from party_a.align import Alignment, close_quietly, open_and_align
from party_a.evaluate import evaluate, joint_validation_scores

log = logging.getLogger(__name__)
INTERCEPT = "(intercept)"


#: A ``batch_size = "auto"`` job runs at most this many times: B's limit on its own columns, A's on
#: its own and A's on B's may each raise the batch size once (it only grows).
_BATCH_ATTEMPTS = 4


def train(
    peer: PeerApi,
    *,
    job: JobSpec,
    progress: ProgressCallback = no_progress,
    job_id: str = "",
    checkpoints: CheckpointStore | None = None,
    resume: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one joint training job with B; returns A's model metadata (also saved in the store).

    Keyword arguments as ``train_once``. With ``batch_size = "auto"`` a refusal because a party
    has more feature columns than the batches allow (``min_rows_per_column``) names the batch size
    that would do; the job then runs again, with new keys and PSI, at that size (at most
    ``_BATCH_ATTEMPTS`` runs, the size only growing). A resumed "auto" job starts at the size its
    checkpoint was written with.
    """
    if job.batch_auto and resume and checkpoints is not None and job_id:
        job = _with_batch_size(job, _checkpointed_batch_size(checkpoints, job_id))
    for attempt in range(1, _BATCH_ATTEMPTS + 1):
        try:
            return train_once(
                peer,
                job=job,
                progress=progress,
                job_id=job_id,
                checkpoints=checkpoints,
                resume=resume,
                **kwargs,
            )
        except FedlearnError as exc:
            needed = exc.min_batch_size
            if not job.batch_auto or needed <= job.params.batch_size or attempt == _BATCH_ATTEMPTS:
                raise
            progress(
                ProgressEvent(
                    "alignment",
                    message=(
                        f'batch_size = "auto": training again with {needed} rows per batch '
                        f"instead of {job.params.batch_size}, as refused: {exc}"
                    ),
                )
            )
            log.info("batch_size auto: %d -> %d (%s)", job.params.batch_size, needed, exc)
            job = _with_batch_size(job, needed)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _with_batch_size(job: JobSpec, batch_size: int) -> JobSpec:
    if batch_size <= 0 or batch_size == job.params.batch_size:
        return job
    return dataclasses.replace(job, params=dataclasses.replace(job.params, batch_size=batch_size))


def _checkpointed_batch_size(checkpoints: CheckpointStore, job_id: str) -> int:
    """The batch size of the job's latest checkpoint (0 when it has none)."""
    epochs = checkpoints.epochs(job_id)
    if not epochs:
        return 0
    try:
        return int(checkpoints.load(job_id, epochs[-1])["params"]["batch_size"])
    except (FedlearnError, KeyError, TypeError, ValueError):
        return 0  # a checkpoint that cannot tell: the resume itself will say what is wrong


def train_once(
    peer: PeerApi,
    *,
    table: PartyTable,
    spec: DatasetSpec,
    job: JobSpec,
    own_name: str,
    store: ModelStore,
    executor: Executor | None = None,
    workers: int = 1,
    background: str = "thread",
    progress: ProgressCallback = no_progress,
    job_id: str = "",
    checkpoints: CheckpointStore | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """One run of a training job with B at the job's batch size; returns A's model metadata (also
    saved in ``store``).

    ``background``: where A's obfuscator pool is filled ("process" on a node, see OwnKeyEngine).
    With ``job_id`` and ``checkpoints`` both parties checkpoint after every epoch; with ``resume``
    the job continues after the latest epoch both hold (fresh keys, PSI again; A and B each refuse
    a checkpoint whose job or aligned data differ). Raises ``InvalidPeerData`` when B names another
    resume epoch than the latest common one.
    """
    if table.labels is None:
        raise DataError(f"dataset {spec.name!r} has no label column; set label_column")
    params = job.params
    started = time.perf_counter()
    timer = Timer(mark=started)
    progress(ProgressEvent("keys", message=f"generating a {params.key_bits}-bit Paillier key pair"))
    own = own_key_engine(
        params.engine,
        generate_keypair(params.key_bits),
        obfuscation=job.obfuscation,
        executor=executor,
        background=background,
    )
    timer.lap("keys")
    try:
        progress(
            ProgressEvent("alignment", message="private set intersection with " + peer.peer_name)
        )
        resume_from = _ResumeFrom(job_id, checkpoints if job_id else None, resume)
        request = m.OpenSessionRequest(
            purpose=m.Purpose.TRAIN,
            dataset=job.peer_dataset,
            train=params,
            paillier_key=m.PaillierKey(
                n=public_key_to_bytes(own.public_key), djn_base=int_to_bytes(own.djn_base)
            ),
            job_id=job_id if resume_from.store is not None else "",
            resume_epochs=resume_from.held_epochs(),
        )
        try:
            alignment = open_and_align(
                peer,
                request,
                [str(i) for i in table.ids],
                workers=workers,
                executor=executor,
                progress=progress,
            )
        except PolicyViolation as exc:
            if job.epochs_auto and "epochs" in str(exc):
                raise PolicyViolation(
                    f'{exc}. The job\'s epochs = "auto" trains until converged with a budget '
                    f"of max_epochs = {params.epochs}: set [train] max_epochs to at most "
                    f"{peer.peer_name}'s maximum"
                ) from None
            raise
        except NoCommonIds as exc:
            # B's refusal names no ID of B's; A adds how its own IDs look (local to A's operator).
            raise NoCommonIds(f"{exc}; " + describe_ids(table.ids, "A's IDs")) from None
        timer.lap("alignment")
        session_id = alignment.session.session_id
        try:
            resume_from.agree(alignment.session, peer.peer_name)
        except BaseException:
            close_quietly(peer, session_id)
            raise
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
        cancelled = False
        try:
            meta = _train_session(
                peer,
                own=own,
                alignment=alignment,
                table=table,
                spec=spec,
                job=job,
                own_name=own_name,
                store=store,
                executor=executor,
                timer=timer,
                started=started,
                progress=progress,
                resume_from=resume_from,
            )
        except JobCancelled:
            cancelled = True  # never resumed: B drops its checkpoints of the job too
            raise
        finally:
            close_quietly(peer, session_id, discard=cancelled)
    finally:
        own.close()
    return meta


@dataclass(frozen=True)
class StartedTraining:
    """A's side of a session after alignment: its training state and what it was built from."""

    training: TrainingA
    preprocessor: Preprocessor
    labels: np.ndarray  # (aligned rows,) 0/1, in the session's common order
    train_rows: np.ndarray  # indices into the aligned rows
    validation_rows: np.ndarray


def start_training(
    peer: PeerApi,
    *,
    own: OwnKeyOps,
    alignment: Alignment,
    table: PartyTable,
    params: m.TrainParams,
    peer_engine: PeerKeyOps,
    timer: Timer,
    min_rows_per_column: int,
) -> StartedTraining:
    """Cut the job's split, fit A's features on the training rows and start A's step order.

    The intercept starts at the training rows' log-odds (A knows the labels), so the model starts
    calibrated. Raises DataError when the training rows hold one label class only; TrainingA.start
    raises when A's columns break the job's rows-per-column limit.
    """
    labels = np.asarray(table.labels)[alignment.own_rows].astype(np.float64)
    train_rows, validation_rows = split_train_validation(
        len(alignment.own_rows), params.validation_fraction, params.seed
    )
    if len(np.unique(labels[train_rows])) < 2:
        raise DataError("the aligned training rows hold only one label class; nothing to learn")
    preprocessor, features = fit_party_features(
        table, alignment.own_rows, train_rows, params.preprocess, intercept=True
    )
    training = TrainingA.start(
        peer,
        session_id=alignment.session.session_id,
        params=params,
        own=own,
        peer_engine=peer_engine,
        features=features,
        labels=labels,
        n_train=len(train_rows),
        timer=timer,
        min_rows_per_column=min_rows_per_column,
    )
    training.weights[-1] = log_odds(labels[train_rows])
    training.model_weights = training.weights.copy()
    return StartedTraining(training, preprocessor, labels, train_rows, validation_rows)


def _train_session(
    peer: PeerApi,
    *,
    own: OwnKeyOps,
    alignment: Alignment,
    table: PartyTable,
    spec: DatasetSpec,
    job: JobSpec,
    own_name: str,
    store: ModelStore,
    executor: Executor | None,
    timer: Timer,
    started: float,
    progress: ProgressCallback,
    resume_from: _ResumeFrom,
) -> dict[str, Any]:
    params = job.params
    traffic_start = (getattr(peer, "bytes_sent", 0), getattr(peer, "bytes_received", 0))
    session_id = alignment.session.session_id
    peer_engine = peer_engine_for(alignment.session.paillier_key, params, executor)
    n_aligned = len(alignment.own_rows)
    if n_aligned == 0:
        raise NoCommonIds(
            f"no IDs in common with {peer.peer_name}: check that both sides use the same kind of "
            f"ID in {spec.id_column!r} (white space is stripped, case is kept); "
            + describe_ids(table.ids, "A's IDs")
        )
    timer.restart()
    start = start_training(
        peer,
        own=own,
        alignment=alignment,
        table=table,
        params=params,
        peer_engine=peer_engine,
        timer=timer,
        min_rows_per_column=job.min_rows_per_column,
    )
    training, labels, preprocessor = start.training, start.labels, start.preprocessor
    train_rows, validation_rows = start.train_rows, start.validation_rows
    training.gradient_noise = job.gradient_noise
    if params.batch_size > len(train_rows):
        progress(
            ProgressEvent(
                "preprocessing",
                message=(
                    f"note: batch_size {params.batch_size} is larger than the {len(train_rows)} "
                    f"training rows, so each epoch is one batch of all {len(train_rows)} rows "
                    "(full-batch gradient descent)"
                ),
            )
        )
    # Said to the operator after training (fedlearn train) and kept with the model.
    notes = []
    if not preprocessor.output_names_:
        notes.append(
            "A brings the label alone (no feature columns): the joint model is B's columns and "
            "A's intercept, and users B does not know all get the same score, the label rate"
        )
        progress(ProgressEvent("preprocessing", message=f"note: {notes[-1]}"))
    forms = unicode_form_note(table.ids, "A's IDs")
    if forms is not None:
        notes.append(forms)
    if preprocessor.uninformative_columns_:
        notes.append(f"A's {uninformative_note(preprocessor.uninformative_columns_)}")
    columns = list(preprocessor.output_names_)  # the intercept (last) is not checked
    separating = separating_columns(training.features.x_q, train_rows, labels[train_rows], columns)
    if separating:
        notes.append(f"A's {separating_note(separating)}")
        progress(ProgressEvent("preprocessing", message=f"note: {notes[-1]}"))
    timer.lap("preprocessing")
    fingerprint = data_fingerprint(
        table.ids[alignment.own_rows],
        table.features.iloc[alignment.own_rows].reset_index(drop=True),
        labels,
    )
    loop = _EpochLoop(job, training, resume_from, fingerprint, peer.peer_name, job.dataset)
    try:
        if resume_from.epoch:
            loop.restore(progress)
        history, stopped = loop.run(train_rows, validation_rows, started, progress)
    finally:
        training.close()  # the held corrections: no ciphertext is needed after the last epoch

    progress(
        ProgressEvent(
            "evaluation",
            elapsed_s=time.perf_counter() - started,
            message=f"validation on {len(validation_rows)} rows",
        )
    )
    timer.restart()
    weights = training.model_weights
    evaluation = evaluate(
        peer,
        session_id,
        training.features.x,
        weights,
        labels,
        train_rows,
        validation_rows,
        list(preprocessor.output_names_),
    )
    timer.lap("evaluation")
    model_id = new_model_id(spec.name)
    resume_from.committing(model_id)
    committed = peer.commit_model(m.CommitModelRequest(session_id, model_id))
    names = [*preprocessor.output_names_, INTERCEPT]
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
        "stopped": stopped,
        "notes": notes,
        "rows": {
            "own": alignment.own_size,
            "peer": alignment.peer_size,
            "aligned": n_aligned,
            "train": len(train_rows),
            "validation": len(validation_rows),
        },
        "timings": {**timer.seconds, "total": time.perf_counter() - started},
        # Both sessions' Paillier keys, so the two operators can compare them with B's log.
        "key_fingerprints": {
            "own": key_fingerprint(own.public_key),
            "peer": key_fingerprint(peer_engine.public_key),
        },
        "traffic": {
            "a_to_b_bytes": getattr(peer, "bytes_sent", 0) - traffic_start[0],
            "b_to_a_bytes": getattr(peer, "bytes_received", 0) - traffic_start[1],
        },
        **evaluation,
    }
    _save_or_roll_back(peer, store, model_id, meta)
    resume_from.done()
    return meta


@dataclass
class _ResumeFrom:
    """A's side of checkpoints for one job: what A holds, the epoch agreed with B, and cleanup."""

    job_id: str
    store: CheckpointStore | None
    resume: bool
    epoch: int = 0  # the latest epoch both hold, agreed at OpenSession (0: from the start)
    held: tuple[int, ...] = ()

    def held_epochs(self) -> tuple[int, ...]:
        """The epochs A offers B (a fresh start forgets the job's old epochs and offers none)."""
        if self.store is None:
            return ()
        if not self.resume:
            self.store.prune(self.job_id, 0)
            return ()
        self.held = tuple(self.store.epochs(self.job_id)[-MAX_RESUME_EPOCHS:])
        return self.held

    def agree(self, answer: m.OpenSessionResponse, peer_name: str) -> None:
        """Check B's resume epoch (untrusted): it must be the latest epoch both hold."""
        expected = latest_common_epoch(self.held, answer.checkpoint_epochs) if self.resume else 0
        if answer.resume_epoch != expected:
            raise InvalidPeerData(
                f"{peer_name} proposes to resume after epoch {answer.resume_epoch}, but the latest "
                f"epoch both hold is {expected}"
            )
        self.epoch = expected

    def load(self) -> dict[str, Any]:
        assert self.store is not None
        return self.store.load(self.job_id, self.epoch)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.save(self.job_id, epoch, state)

    def committing(self, model_id: str) -> None:
        """Note the model id before B commits it: a resume after a kill right here deletes B's
        orphan shard first (A never saved its own)."""
        if self.store is not None:
            self.store.write_file(self.job_id, COMMIT_FILE, model_id)

    def orphan(self) -> str | None:
        return self.store.read_file(self.job_id, COMMIT_FILE) if self.store is not None else None

    def done(self) -> None:
        """The model is saved at both parties: A's checkpoints of the job go."""
        if self.store is not None:
            self.store.remove(self.job_id)


#: In A's checkpoint folder: the model id A asked B to commit, until A has saved its own shard.
COMMIT_FILE = "committing.txt"


class _EpochLoop:
    """The epochs of batches until early stopping or the budget, checkpointed after each epoch.

    After each epoch A's model is the average of its weights over the epoch; ``score_change`` is
    the RMS change of the joint score over the training rows since the last epoch, combined from
    A's part (computed here) and B's (told in B's last BatchUpdate of the epoch).
    """

    def __init__(
        self,
        job: JobSpec,
        training: TrainingA,
        resume_from: _ResumeFrom,
        fingerprint: str,
        peer_name: str,
        dataset: str,
    ) -> None:
        self.job, self.training, self.resume_from = job, training, resume_from
        self.identity = {
            "job_id": resume_from.job_id,
            "partner": peer_name,
            "dataset": dataset,
            "params": json.loads(json.dumps(dataclasses.asdict(job.params))),
            "data_fingerprint": fingerprint,
        }
        self.first_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_loss, self.stale_epochs = math.inf, 0
        self.stopped: dict[str, Any] | None = None

    def restore(self, progress: ProgressCallback) -> None:
        """Continue after the agreed epoch: A's state from its checkpoint, checked against this
        job and these aligned rows (``DataError`` when they changed); B's orphan shard deleted."""
        state = self.resume_from.load()
        changed = [k for k, v in self.identity.items() if state.get(k) != v]
        if changed:
            raise DataError(
                f"cannot resume job {self.resume_from.job_id}: its {', '.join(changed)} differ "
                "from its checkpoint (the job file or the data changed); start the job afresh"
            )
        training = self.training
        restore_optimizer(training.optimizer, state["optimizer"])
        training.weights = np.asarray(state["weights"], dtype=np.float64)
        training.model_weights = np.asarray(state["model_weights"], dtype=np.float64)
        self.first_epoch = int(state["completed_epochs"])
        self.history = list(state["history"])
        self.best_loss, self.stale_epochs = float(state["best_loss"]), int(state["stale_epochs"])
        held = np.asarray(state.get("held_rows", []), dtype=bool)
        if held.shape == training.held.shape:  # a checkpoint of this protocol version
            training.held = held
            training.held_slopes = np.asarray(state["held_slopes"], dtype=np.int64)
            training.held_curvatures = np.asarray(state["held_curvatures"], dtype=np.int64)
            training.held_offsets = np.asarray(state["held_offsets"], dtype=np.float64)
            stats = state["score_stats"]
            training.stats = ScoreStats(
                float(stats["mean"]),
                float(stats["std"]),
                (float(stats["class_means"][0]), float(stats["class_means"][1])),
                float(stats["within_std"]),
            )
        self.stopped = state.get("stopped")
        orphan = self.resume_from.orphan()
        if orphan:
            try:
                training.peer.delete_model(m.DeleteModelRequest(orphan))
            except FedlearnError as exc:  # NotFound: B never committed it
                log.info("resume: %s's shard of %s not deleted: %s", training.peer.peer_name,
                         orphan, exc)  # fmt: skip
        progress(
            ProgressEvent(
                "training",
                epoch=self.first_epoch,
                epochs=self.job.params.epochs,
                message=f"resuming job {self.resume_from.job_id} after epoch {self.first_epoch}",
            )
        )

    def _checkpoint(self, epoch: int) -> None:
        training = self.training
        self.resume_from.save(
            epoch,
            {
                **self.identity,
                "completed_epochs": epoch,
                "weights": floats(training.weights),
                "model_weights": floats(training.model_weights),
                "optimizer": optimizer_state(training.optimizer),
                "history": self.history,
                "best_loss": self.best_loss,
                "stale_epochs": self.stale_epochs,
                "stopped": self.stopped,
                # The terms whose ciphertexts B held: a resumed reuse epoch forms alpha with them
                # and sends them afresh; the statistics of B's scores the next refresh fits over.
                "held_rows": [bool(h) for h in training.held],
                "held_slopes": [int(b) for b in training.held_slopes],
                "held_curvatures": [int(g) for g in training.held_curvatures],
                "held_offsets": floats(training.held_offsets),
                "score_stats": {
                    "mean": training.stats.mean,
                    "std": training.stats.std,
                    "class_means": list(training.stats.class_means),
                    "within_std": training.stats.within_std,
                },
            },
        )

    def run(
        self,
        train_rows: np.ndarray,
        validation_rows: np.ndarray,
        started: float,
        progress: ProgressCallback,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run the remaining epochs; (loss history, why it stopped)."""
        if self.stopped is not None:  # the checkpoint was taken after the last epoch
            return self.history, self.stopped
        job, training, history = self.job, self.training, self.history
        params = job.params
        n_batches = max(1, len(train_rows) // params.batch_size)
        train_started = time.perf_counter()
        x_train = training.features.x_rows(train_rows)
        for epoch in range(self.first_epoch, params.epochs):
            record = self._epoch(epoch, train_rows, validation_rows, x_train, started, progress,
                                 n_batches, train_started)  # fmt: skip
            history.append(record)
            if _should_stop(job, history, self.best_loss, self.stale_epochs):
                self.stopped = stop_reason(job, history, converged=True)
            elif record["loss"] < self.best_loss - job.tolerance:
                self.best_loss, self.stale_epochs = record["loss"], 0
            else:
                self.stale_epochs += 1
            if self.stopped is None and epoch + 1 == params.epochs:
                self.stopped = stop_reason(job, history, converged=False)
            self._checkpoint(epoch + 1)
            if self.stopped is not None:
                return history, self.stopped
        return history, stop_reason(job, history, converged=False)

    def _epoch(
        self,
        epoch: int,
        train_rows: np.ndarray,
        validation_rows: np.ndarray,
        x_train: np.ndarray,
        started: float,
        progress: ProgressCallback,
        n_batches: int,
        train_started: float,
    ) -> dict[str, Any]:
        """One epoch's batches, its loss and score change: the epoch's history record."""
        job, training, history = self.job, self.training, self.history
        params = job.params
        done_before = self.first_epoch * n_batches
        previous_model = training.model_weights.copy()
        epoch_started = time.perf_counter()
        training.start_epoch()
        for batch, rows in enumerate(
            epoch_batches(train_rows, params.batch_size, params.seed, epoch)
        ):
            training.run_batch(epoch, batch, rows)
            done = epoch * n_batches + batch + 1
            progress(
                ProgressEvent(
                    "training",
                    epoch=epoch + 1,
                    epochs=params.epochs,
                    batch=batch + 1,
                    batches=n_batches,
                    loss=history[-1]["loss"] if history else math.nan,
                    elapsed_s=time.perf_counter() - started,
                    eta_s=self._eta(
                        train_started, done - done_before, params.epochs * n_batches - done
                    ),
                )
            )
        training.end_epoch()
        loss = training.epoch_loss(epoch)
        own_change = score_change(x_train, previous_model, training.model_weights)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss,
            "score_change": math.hypot(own_change, training.peer_change),
            "own_score_change": own_change,
            "peer_score_change": training.peer_change,
            # Whether A's terms were fresh (``slopes_refreshed``): such an epoch costs more
            # (docs/performance.md); bench/cost_model.py times the two kinds apart.
            "refreshed": slopes_refreshed(epoch, params.epochs, n_batches),
        }
        if job.eval_every and (epoch + 1) % job.eval_every == 0 and len(validation_rows):
            record["validation_auc"] = metrics.auc(
                training.labels[validation_rows],
                joint_validation_scores(
                    training.peer,
                    training.session_id,
                    training.features.x,
                    training.model_weights,
                    validation_rows,
                ),
            )
        training.timer.lap("loss")
        record["seconds"] = round(time.perf_counter() - epoch_started, 3)  # batches, loss, AUC
        progress(
            ProgressEvent(
                "training",
                epoch=epoch + 1,
                epochs=params.epochs,
                batch=n_batches,
                batches=n_batches,
                loss=loss,
                elapsed_s=time.perf_counter() - started,
                # The epoch's end is the latest event a job record holds for longest: it keeps
                # the ETA (to the budget's last epoch when epochs = "auto": an upper bound).
                eta_s=self._eta(
                    train_started,
                    (epoch + 1) * n_batches - done_before,
                    (params.epochs - epoch - 1) * n_batches,
                ),
                message=(
                    f"epoch {epoch + 1}: loss bound {loss:.5f}, "
                    f"score change {record['score_change']:.4f}"
                ),
            )
        )
        return record

    @staticmethod
    def _eta(train_started: float, batches_done: int, batches_left: int) -> float:
        """Seconds left at this session's mean pace per batch (the epoch ends included)."""
        if batches_done <= 0:
            return math.nan
        return (time.perf_counter() - train_started) / batches_done * max(batches_left, 0)


def stop_reason(job: JobSpec, history: list[dict[str, Any]], *, converged: bool) -> dict[str, Any]:
    """Why training ended, for A's model metadata and the CLI: ``reason`` is "converged" or "budget".

    ``message`` says it in words: the tolerance that was met, or that the budget ran out before
    convergence and what to raise.
    """
    epochs = len(history)
    last = history[-1]["score_change"] if history else math.nan
    if converged:
        watched = (
            "the joint score moved less than"
            if job.monitor == "score_change"
            else "the loss bound improved less than"
        )
        message = (
            f"converged after {epochs} epochs: {watched} {job.tolerance:g} for "
            f"{job.patience} epochs in a row"
        )
        return {"reason": "converged", "epochs": epochs, "message": message, **_watch(job, last)}
    if job.monitor == "none":
        message = f"ran the {epochs} epochs asked for (early stopping is off)"
    else:
        key = "max_epochs" if job.epochs_auto else "epochs"
        message = (
            f"not converged: the budget of {epochs} epochs was used up (last score change "
            f"{last:.4f}, tolerance {job.tolerance:g}); raise [train] {key} or the tolerance"
        )
    return {"reason": "budget", "epochs": epochs, "message": message, **_watch(job, last)}


def _watch(job: JobSpec, last_change: float) -> dict[str, Any]:
    return {"monitor": job.monitor, "tolerance": job.tolerance, "last_score_change": last_change}


def _save_or_roll_back(
    peer: PeerApi, store: ModelStore, model_id: str, meta: dict[str, Any]
) -> None:
    """Save A's shard; when that fails, ask B to delete its shard of ``model_id`` and re-raise."""
    try:
        store.save(model_id, meta)
    except BaseException:
        try:
            peer.delete_model(m.DeleteModelRequest(model_id))
        except FedlearnError as exc:
            log.error("could not roll back B's shard of %s: %s", model_id, exc)
        raise


def _should_stop(
    job: JobSpec, history: list[dict[str, Any]], best_loss: float, stale_epochs: int
) -> bool:
    if job.monitor == "none" or len(history) < 2:
        return False
    if job.monitor == "score_change":
        return converged([r["score_change"] for r in history], job.tolerance, job.patience)
    improved = history[-1]["loss"] < best_loss - job.tolerance
    return not improved and stale_epochs + 1 >= job.patience


def _job_dict(job: JobSpec) -> dict[str, Any]:
    params = job.params
    return {
        "dataset": job.dataset,
        "peer_dataset": job.peer_dataset,
        "epochs": "auto" if job.epochs_auto else params.epochs,
        "max_epochs": params.epochs,
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
        "preprocess": params.preprocess.to_dict(),
        "privacy": {
            "gradient_noise": job.gradient_noise,
            "min_rows_per_column": job.min_rows_per_column,
        },
    }
