"""B's training state for one session, and the training steps over it.

B's keys are made at OpenSession (``new_training_keys``); the rest of the state (preprocessing, features,
split, layouts, optimizer) once PSI has aligned the rows (``prepare_training``). Then, per batch, in this
order (``check_step`` refuses anything else):

- forward: A sends its residual terms alpha, beta and gamma, under A's key (beta and gamma only in
  the epochs that refresh them). B returns its partial scores and its loss term, under B's key (with
  its curvature basis w when A sent gamma), and starts computing its own gradient under A's key
  (alpha * beta^v * the held gamma^w, times its features), masked and packed, in the background.
- gradient: A sends its own masked gradient, packed under B's key; B decrypts it and returns the masked
  values, with B's masked gradient packed under A's key.
- update: A returns B's gradient values decrypted but still masked; B removes its masks and takes an
  optimizer step.

After an epoch's last batch B tells A the mean and deviation of its scores over the epoch (the
standardisation of the next epoch's w). Between epochs A may ask B to decrypt its masked loss sum
and its masked sum of B's v over the positive rows (under B's key, once per epoch) and for the
validation rows' partial scores; at the end B's weights become its model shard.

``NodeB`` finds the session, checks the partner and holds the session's lock; these functions and
methods check everything A sent: counts, ranges, step order and the policy's limits.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedlearn.checkpoint import data_fingerprint, floats, optimizer_state, restore_optimizer
from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import OwnKeyOps, PeerKeyOps, own_key_engine, peer_key_engine
from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import generate_keypair, public_key_from_bytes
from fedlearn.crypto.packing import PackingLayout, truncate, unpack
from fedlearn.crypto.wire import (
    ciphertext_width,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
    keyed_ciphertexts_from_bytes,
)
from fedlearn.data import PartyTable, describe_ids
from fedlearn.errors import (
    InvalidPeerData,
    NoCommonIds,
    PolicyViolation,
    SessionError,
)
from fedlearn.model import (
    Optimizer,
    ScoreStats,
    epoch_batches,
    l2_per_row,
    max_batch_rows,
    score_change,
    split_train_validation,
)
from fedlearn.preprocess import Preprocessor, uninformative_note
from fedlearn.protocol import messages as m
from fedlearn.protocol.held import HeldCiphertexts
from fedlearn.protocol.limits import (
    check_own_columns,
    check_peer_value_count,
    feature_party_secret_bits,
    min_batch_rows,
    peer_value_limit,
)
from fedlearn.protocol.payloads import int_from_bytes, int_to_bytes
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.protocol.steps import (
    MASK_BITS,
    SCORE_CLIP,
    FixedPointFeatures,
    class_sum_bound_bits,
    feature_party_basis,
    feature_party_loss_term,
    feature_party_residual,
    feature_party_scores,
    fit_party_features,
    gradient_from_masked,
    gradient_layout,
    loss_bound_bits,
    masked_gradient,
    truncate_loss,
)

log = logging.getLogger(__name__)


@dataclass
class PendingTraining:
    """B's keys between OpenSession and PsiResult, before the aligned rows are known."""

    params: m.TrainParams
    own: OwnKeyOps
    peer: PeerKeyOps
    resume: dict[str, Any] | None = None  # B's checkpoint to continue from (checked at OpenSession)

    def close(self) -> None:
        self.own.close()


@dataclass
class TrainingB:
    """B's state for one training session past alignment; ``expect`` is the next step A may take."""

    params: m.TrainParams
    own: OwnKeyOps
    peer: PeerKeyOps
    own_codec: FixedPointCodec
    preprocessor: Preprocessor
    features: FixedPointFeatures
    train_rows: np.ndarray
    validation_rows: np.ndarray
    weights: np.ndarray
    model_weights: np.ndarray  # B's model: its weights averaged over the last complete epoch
    optimizer: Optimizer
    own_layout: PackingLayout  # B's gradient, packed under A's key
    peer_layout: PackingLayout  # A's gradient, packed under B's key
    n_batches: int
    peer_value_limit: int  # most values A may have B decrypt per batch (limits.peer_value_limit)
    expect: tuple[str, int, int] = ("forward", 0, 0)
    batches: dict[int, list[np.ndarray]] = field(default_factory=dict)
    pending: Future[tuple[list[int], list[int]]] | None = None
    batch_rows: np.ndarray | None = None
    peer_value_count: int = 0
    own_masks: list[int] = field(default_factory=list)
    completed_epochs: int = 0
    loss_epochs_answered: set[int] = field(default_factory=set)
    data_fingerprint: str = ""  # of B's aligned rows (checkpoint.data_fingerprint)
    # [[beta]]_A per aligned row, the last one A sent in this session: reused when A says so
    # (in a temporary file beyond a few hundred thousand rows: fedlearn/protocol/held.py), and the
    # curvature correction [[gamma w]]_A of the same refresh.
    held_slopes: HeldCiphertexts | None = None
    held_corrections: HeldCiphertexts | None = None
    # Per aligned row, B's curvature basis w of the row's last refresh (-1: none); in checkpoints.
    held_basis: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # B's standardisation of its score for w: its scores' mean and deviation over the last epoch.
    stats: ScoreStats = field(default_factory=ScoreStats)
    # This epoch's rows, sum of u_B and of u_B^2 so far (B's scores as it sent them).
    moments: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def between_batches(self) -> bool:
        return self.expect[0] == "forward"

    @property
    def between_epochs(self) -> bool:
        return self.expect[0:3:2] == ("forward", 0)

    def forward(
        self, request: m.BatchForwardRequest, background: ThreadPoolExecutor
    ) -> m.BatchForwardResponse:
        """B's encrypted partial scores and loss term; B's gradient under A's key starts in ``background``."""
        epoch, batch = request.header.epoch, request.header.batch
        if epoch >= self.params.epochs:
            raise PolicyViolation(f"epoch {epoch + 1} is beyond the job's {self.params.epochs}")
        if batch == 0:
            self.optimizer.start_epoch()
            self.moments = np.zeros(3)
        batches = self.batches.setdefault(
            epoch, epoch_batches(self.train_rows, self.params.batch_size, self.params.seed, epoch)
        )
        self.batches = {epoch: batches}
        rows = batches[batch]
        peer_key = self.peer.public_key
        alpha = keyed_ciphertexts_from_bytes(
            request.ciphertexts, peer_key, expected_count=len(rows)
        ).under(peer_key)
        beta = self._slopes(request, rows)
        gamma = self._curvatures(request, rows)
        frac = self.params.score_frac_bits
        scores = feature_party_scores(self.features.x_rows(rows) @ self.weights, frac)
        u_b = (np.asarray(scores, dtype=np.float64) - (SCORE_CLIP << frac)) / 2.0**frac
        self.moments += (len(rows), u_b.sum(), (u_b * u_b).sum())
        basis: list[int] = []
        if gamma is not None:
            basis = self._basis(request, rows, scores)
        encrypted = self.own.encrypt(self.own_codec.encode_int(scores + basis))
        encrypted_scores, encrypted_basis = encrypted[: len(rows)], encrypted[len(rows) :]
        loss_fixed = feature_party_loss_term(scores, frac)
        encrypted_loss = self.own.encrypt(self.own_codec.encode_int([loss_fixed]))
        x_q_batch = self.features.x_q[rows]
        held_corrections = self.held_corrections
        assert held_corrections is not None  # made by _slopes
        peer_n = int(self.peer.public_key.n)

        def gradient() -> tuple[list[int], list[int]]:
            if gamma is None:
                correction = held_corrections.take(rows)
            else:  # a refresh: [[gamma w]]_A, held until the row's next one
                correction = self.peer.scale(gamma, basis)
                held_corrections.put(rows, ciphertexts_to_bytes(correction, peer_n))
            residual = feature_party_residual(self.peer, alpha, beta, scores, correction)
            return masked_gradient(self.peer, x_q_batch, residual, self.own_layout)

        self.pending = background.submit(gradient)
        self.batch_rows = rows
        self.expect = ("gradient", epoch, batch)
        own_n = int(self.own.public_key.n)
        return m.BatchForwardResponse(
            ciphertexts=ciphertexts_to_bytes(encrypted_scores, own_n),
            loss_term=ciphertexts_to_bytes(encrypted_loss, own_n),
            curvature_basis=ciphertexts_to_bytes(encrypted_basis, own_n),
        )

    def _curvatures(self, request: m.BatchForwardRequest, rows: np.ndarray) -> list[Any] | None:
        """A's [[gamma]]_A for each row (sent exactly when the slopes are), or None on reuse, when
        B uses the corrections it holds. Raises ``InvalidPeerData`` otherwise."""
        held = self.held_corrections
        assert held is not None  # made by _slopes
        if request.reuse_slopes:  # with no slopes or curvatures attached (_slopes checked)
            missing = held.missing(rows)
            if missing:
                raise InvalidPeerData(
                    f"BatchForward: reuse_slopes for {missing} rows whose curvature was not sent "
                    "in this session"
                )
            return None
        peer_key = self.peer.public_key
        return keyed_ciphertexts_from_bytes(
            request.curvatures, peer_key, expected_count=len(rows)
        ).under(peer_key)

    def _basis(
        self, request: m.BatchForwardRequest, rows: np.ndarray, scores: list[int]
    ) -> list[int]:
        """B's curvature basis w for the rows of a refreshing batch: from this epoch's scores and
        the last epoch's standardisation, or with ``held_basis`` the ones of the rows' last refresh
        (a resumed session re-forming the corrections the interrupted one held)."""
        if request.held_basis:
            held = self.held_basis[rows]
            if np.any(held < 0):
                raise InvalidPeerData(
                    f"BatchForward: held_basis for {int(np.sum(held < 0))} rows without a basis"
                )
            return [int(w) for w in held]
        basis = feature_party_basis(scores, self.stats, self.params.score_frac_bits)
        self.held_basis[rows] = basis
        return basis

    def _slopes(self, request: m.BatchForwardRequest, rows: np.ndarray) -> list[Any]:
        """[[beta]]_A for each row of the batch: the ones A sent, or with ``reuse_slopes`` the
        ones B holds from earlier in this session (which the fresh ones replace).

        Raises ``InvalidPeerData`` for slopes sent with ``reuse_slopes``, or a reuse for a row
        whose slope A has not sent in this session (a new session holds none).
        """
        peer_key = self.peer.public_key
        if self.held_slopes is None or self.held_corrections is None:
            rows_total = len(self.train_rows) + len(self.validation_rows)
            self.held_slopes = HeldCiphertexts(rows_total, ciphertext_width(peer_key.n))
            self.held_corrections = HeldCiphertexts(rows_total, ciphertext_width(peer_key.n))
        held = self.held_slopes
        if request.reuse_slopes:
            if request.slopes:
                raise InvalidPeerData("BatchForward: slopes sent with reuse_slopes")
            if request.curvatures or request.held_basis:
                raise InvalidPeerData("BatchForward: curvatures sent with reuse_slopes")
            missing = held.missing(rows)
            if missing:
                raise InvalidPeerData(
                    f"BatchForward: reuse_slopes for {missing} rows whose slope was not sent in "
                    "this session"
                )
            return held.take(rows)
        beta = keyed_ciphertexts_from_bytes(
            request.slopes, peer_key, expected_count=len(rows)
        ).under(peer_key)
        held.put(rows, request.slopes)  # the bytes just checked
        return beta

    def close(self) -> None:
        """Release the session's keys and held ciphertexts."""
        self.own.close()
        for held in (self.held_slopes, self.held_corrections):
            if held is not None:
                held.close()

    def gradient(self, request: m.BatchGradientRequest) -> m.BatchGradientResponse:
        """Decrypt A's masked gradient (under B's key); hand over B's (masked, under A's key).

        A's ``value_count`` is checked against the limit fixed at alignment (``limits``) and pinned
        before anything is decrypted; every decrypted slot is range-checked (``unpack``), and only
        its low b + 1 bits go back (``truncate``).
        """
        count = check_peer_value_count(
            request.value_count, limit=self.peer_value_limit, pinned=self.peer_value_count
        )
        layout = self.peer_layout
        own_key = self.own.public_key
        packed = keyed_ciphertexts_from_bytes(
            request.packed_ciphertexts, own_key, expected_count=layout.ciphertext_count(count)
        )
        self.peer_value_count = count
        decrypted = self.own.decrypt(packed.under(own_key))
        masked_peer = truncate(unpack(decrypted, layout, count), layout)
        assert self.pending is not None
        own_packed, own_masks = self.pending.result()
        self.pending = None
        self.own_masks = own_masks
        self.expect = ("update", request.header.epoch, request.header.batch)
        peer_n = int(self.peer.public_key.n)
        return m.BatchGradientResponse(
            packed_ciphertexts=ciphertexts_to_bytes(own_packed, peer_n),
            masked_values=ints_to_bytes(masked_peer, layout.returned_bytes),
            value_count=self.features.n_features,
        )

    def update(self, request: m.BatchUpdateRequest) -> m.BatchUpdateResponse:
        """Unmask B's gradient (A decrypted it) and step B's weights."""
        layout = self.own_layout
        n_features = self.features.n_features
        masked = ints_from_bytes(
            request.masked_values,
            layout.returned_bytes,
            expected_count=n_features,
            bound=1 << layout.returned_bits,
        )
        rows = self.batch_rows
        assert rows is not None
        # Any returned values decode to some gradient: no error that depends on B's masks.
        gradient = gradient_from_masked(
            masked,
            self.own_masks,
            layout=layout,
            features=self.features,
            score_frac_bits=self.params.score_frac_bits,
            batch_rows=len(rows),
        )
        self.weights = self.optimizer.step(self.weights, gradient)
        epoch, batch = request.header.epoch, request.header.batch
        if batch + 1 < self.n_batches:
            self.expect = ("forward", epoch, batch + 1)
        else:
            self.expect = ("forward", epoch + 1, 0)
            self.completed_epochs = epoch + 1
        # After the epoch's last batch B's model becomes its weights averaged over the epoch, and
        # B tells the RMS change of its partial score over the training rows since the last epoch
        # (one number per epoch: a per-batch value would tell A the size of each gradient).
        # With it, the mean and deviation of its scores over the epoch's batches: the
        # standardisation of the next epoch's curvature basis w, which A's fit needs too.
        change, mean, std = 0.0, 0.0, 0.0
        if self.expect == ("forward", epoch + 1, 0):
            model = self.optimizer.average(self.weights)
            change = score_change(self.features.x_rows(self.train_rows), self.model_weights, model)
            self.model_weights = model
            count, total, squares = self.moments
            mean = float(total / count)
            std = float(np.sqrt(max(squares / count - mean * mean, 0.0)))
            self.stats = ScoreStats.from_moments(mean, std)
        return m.BatchUpdateResponse(weight_change_norm=change, score_mean=mean, score_std=std)

    def epoch_loss(self, request: m.EpochLossRequest) -> m.EpochLossResponse:
        """Decrypt A's masked loss sum and masked positive-class sum of B's v (under B's key):
        once per epoch, right after it.

        An honest ``L_B + R_L`` lies in [0, 2^(b_L + 81)) (|L_B| < 2^b_L, R_L < 2^(b_L + 80)), and
        ``S_1 + R_S`` likewise below 2^(b_S + 81) for b_S = ``class_sum_bound_bits``; anything else
        is refused (and the refusal ends the session). Only the low b + 1 bits of each go back: all
        A needs to remove its masks, and all a cheating A could read.
        """
        epoch = request.epoch
        if epoch + 1 != self.completed_epochs or self.expect[0] != "forward":
            raise SessionError(f"EpochLoss for epoch {epoch} is out of order")
        if epoch in self.loss_epochs_answered:
            raise SessionError(f"EpochLoss for epoch {epoch} was already answered")
        own_key = self.own.public_key
        (ciphertext,) = keyed_ciphertexts_from_bytes(
            request.ciphertext, own_key, expected_count=1
        ).under(own_key)
        (class_sum,) = keyed_ciphertexts_from_bytes(
            request.class_sum, own_key, expected_count=1
        ).under(own_key)
        self.loss_epochs_answered.add(epoch)
        frac = self.params.score_frac_bits
        bound_bits = loss_bound_bits(len(self.train_rows), frac)
        class_bits = class_sum_bound_bits(len(self.train_rows), frac)
        value, class_value = self.own.decrypt([ciphertext, class_sum])
        if int(value) >> (bound_bits + MASK_BITS + 1):
            raise InvalidPeerData("EpochLoss: the decrypted value is beyond the loss bound")
        if int(class_value) >> (class_bits + MASK_BITS + 1):
            raise InvalidPeerData("EpochLoss: the decrypted class sum is beyond its bound")
        return m.EpochLossResponse(
            value=int_to_bytes(truncate_loss(int(value), bound_bits)),
            class_value=int_to_bytes(truncate_loss(int(class_value), class_bits)),
        )

    def checkpoint_state(self) -> dict[str, Any]:
        """B's plaintext state between epochs, for ``fedlearn.checkpoint`` (no key, no ciphertext)."""
        return {
            "completed_epochs": self.completed_epochs,
            "weights": floats(self.weights),
            "model_weights": floats(self.model_weights),
            "optimizer": optimizer_state(self.optimizer),
            "data_fingerprint": self.data_fingerprint,
            # w of each row's last refresh (-1: none), and the standardisation of the next epoch's
            "held_basis": [int(w) for w in self.held_basis],
            "score_stats": [self.stats.mean, self.stats.std],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from B's checkpoint ``state``: the next step is epoch ``completed_epochs``'s
        first BatchForward. Raises ``PolicyViolation`` when B's aligned data differ from the
        checkpoint's (the same epochs would not give the same model)."""
        if state.get("data_fingerprint") != self.data_fingerprint:
            raise PolicyViolation(
                "cannot resume: the aligned rows or B's data changed since the checkpoint; "
                "start the job afresh"
            )
        restore_optimizer(self.optimizer, state["optimizer"])
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.model_weights = np.asarray(state["model_weights"], dtype=np.float64)
        if self.weights.shape != (self.features.n_features,) or self.model_weights.shape != (
            self.features.n_features,
        ):
            raise PolicyViolation("cannot resume: B's column count changed since the checkpoint")
        self.completed_epochs = int(state["completed_epochs"])
        self.expect = ("forward", self.completed_epochs, 0)
        held = np.asarray(state.get("held_basis", []), dtype=np.int64)
        if held.shape == self.held_basis.shape:
            self.held_basis = held
        mean, std = state.get("score_stats", (0.0, 0.0))
        self.stats = ScoreStats.from_moments(float(mean), float(std))

    def validation_scores(self) -> np.ndarray:
        """B's partial scores on the validation rows, shape (validation rows,)."""
        return self.features.x_rows(self.validation_rows) @ self.model_weights

    def model_shard(
        self, model_id: str, *, party: str, partner: str, dataset: str
    ) -> dict[str, Any]:
        """B's model shard as saved in its store; ``mean_partial_score`` is over the training rows."""
        train_scores = self.features.x_rows(self.train_rows) @ self.model_weights
        mean_partial = float(np.mean(train_scores)) if len(train_scores) else 0.0
        return {
            "model_id": model_id,
            "role": "B",
            "party": party,
            "partner": partner,
            "dataset": dataset,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "feature_names": list(self.preprocessor.output_names_),
            "weights": [float(w) for w in self.model_weights],
            "preprocessor": self.preprocessor.to_dict(),
            "epochs_completed": self.completed_epochs,
            "mean_partial_score": mean_partial,
            "train_rows": len(self.train_rows),
        }


def new_training_keys(
    request: m.OpenSessionRequest,
    policy: PeerPolicy,
    executor: Executor,
    *,
    background: str = "thread",
) -> PendingTraining:
    """Check A's key and make B's own; the rest of the training state comes after PSI."""
    peer_key = public_key_from_bytes(
        request.paillier_key.n, min_bits=policy.min_key_bits, max_bits=policy.max_key_bits
    )
    djn_base = int_from_bytes(request.paillier_key.djn_base, peer_key.nsquare)
    key_bits = max(request.train.key_bits, policy.min_key_bits)
    engine = request.train.engine or "fast"
    own = own_key_engine(
        engine, generate_keypair(key_bits), executor=executor, background=background
    )
    peer = peer_key_engine(engine, peer_key, djn_base=djn_base, executor=executor)
    return PendingTraining(request.train, own, peer)


def prepare_training(
    pending: PendingTraining,
    *,
    name: str,
    policy: PeerPolicy,
    table: PartyTable,
    dataset: str,
    aligned_rows: np.ndarray,
) -> TrainingB:
    """B's training state once PSI has aligned ``aligned_rows`` (indices into ``table``).

    Splits the rows as A does, fits B's preprocessing on the training rows and sizes the gradient
    layouts. ``name`` and ``dataset`` (B's dataset name) are for the messages. Raises ``DataError``
    when no rows are aligned and ``PolicyViolation`` when there are too few training rows or the
    batches would not have more rows than B has feature columns.
    """
    params = pending.params
    n_rows = len(aligned_rows)
    if n_rows == 0:
        message = (
            f"no IDs in common with {name}'s dataset {dataset!r}: check that "
            "both sides use the same kind of ID (white space is stripped, case is kept)"
        )
        # B's operator learns how B's IDs look (its log); what crosses names only what A asked for.
        log.warning("dataset %r: no IDs in common: %s", dataset, describe_ids(table.ids, "B's IDs"))
        raise NoCommonIds(message, public=message)
    train_rows, validation_rows = split_train_validation(
        n_rows, params.validation_fraction, params.seed
    )
    if len(train_rows) < policy.min_batch_size:
        raise PolicyViolation(
            f"{name} refuses the training job: only {len(train_rows)} aligned training rows, "
            f"below the minimum batch size {policy.min_batch_size} of its [policy] (more users "
            "in common, a smaller [data] validation_fraction, or B's operator lowering "
            "min_batch_size would allow it)"
        )
    preprocessor, features = fit_party_features(table, aligned_rows, train_rows, params.preprocess)
    if preprocessor.uninformative_columns_:
        log.warning(
            "dataset %r: %s", dataset, uninformative_note(preprocessor.uninformative_columns_)
        )
    max_rows = max_batch_rows(len(train_rows), params.batch_size)
    min_rows = min_batch_rows(len(train_rows), params.batch_size)
    check_own_columns(
        name, features.n_features, min_rows, policy.min_rows_per_column, "its [policy]"
    )
    peer_n = int(pending.peer.public_key.n)
    own_n = int(pending.own.public_key.n)
    bits = params.preprocess.feature_bits
    peer_layout = gradient_layout(
        own_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=params.score_frac_bits
    )
    training = TrainingB(
        params=params,
        own=pending.own,
        peer=pending.peer,
        own_codec=FixedPointCodec(own_n),
        preprocessor=preprocessor,
        features=features,
        train_rows=train_rows,
        validation_rows=validation_rows,
        weights=np.zeros(features.n_features),
        model_weights=np.zeros(features.n_features),
        optimizer=Optimizer(
            params.optimizer,
            params.learning_rate,
            np.ones(features.n_features),
            l2=l2_per_row(params.l2, len(train_rows)),
            l1=params.l1,
        ),
        own_layout=gradient_layout(
            peer_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=params.score_frac_bits
        ),
        peer_layout=peer_layout,
        n_batches=max(1, len(train_rows) // params.batch_size),
        held_basis=np.full(n_rows, -1, dtype=np.int64),
        peer_value_limit=peer_value_limit(
            min_rows,
            peer_layout,
            feature_party_secret_bits(params.score_frac_bits),
            policy.min_rows_per_column,
        ),
    )
    frame = table.features.iloc[aligned_rows].reset_index(drop=True)
    training.data_fingerprint = data_fingerprint(table.ids[aligned_rows], frame)
    if pending.resume is not None:
        training.restore(pending.resume)
    # Keep a batch of obfuscators ready (two in the refreshing epochs, v and w per row): the pool
    # refills while B waits for A.
    training.own.pool_target = 2 * max_rows
    training.own.prefill(max_rows)
    return training


def check_step(
    training: TrainingB | PendingTraining | None,
    purpose: m.Purpose,
    step: str,
    header: m.BatchHeader,
) -> TrainingB:
    """The session's training state, when ``step`` for ``header``'s epoch and batch is the one due.

    Raises ``SessionError`` for a session that is not a training session past alignment, or a step
    out of order.
    """
    if purpose != m.Purpose.TRAIN or not isinstance(training, TrainingB):
        raise SessionError(f"{step}: this session is not a training session past alignment")
    expected = training.expect
    got = (step, header.epoch, header.batch)
    if got != expected:
        raise SessionError(
            f"{step} for epoch {header.epoch} batch {header.batch} is out of order; "
            f"expected {expected[0]} for epoch {expected[1]} batch {expected[2]}"
        )
    return training
