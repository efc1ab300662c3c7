"""A's state for one training session, and the encrypted exchange with B for one batch.

Per batch, A makes three calls (docs/protocol.md lists what crosses):

- forward: A encrypts its residual terms alpha, beta and gamma under A's key and sends them (beta and
  gamma only in the epochs that refresh them); B answers with its partial scores u_B, its loss term
  and, with gamma, its curvature basis w, under B's key.
- A forms the residual alpha + beta * u_B + gamma * w under B's key (gamma * w held between
  refreshes), its gradient from it, masked and packed, adds the batch's loss terms in u_B (under B's
  key) to the epoch's encrypted loss and B's v of the positive rows to the epoch's class sum.
- gradient: A sends its masked gradient (under B's key); B returns it decrypted but still masked, with
  B's masked gradient packed under A's key, which A decrypts.
- update: A removes its masks and steps its weights, and sends B its gradient values (still masked).

After each epoch ``epoch_loss`` has B decrypt the masked loss sum and class sum, and only A removes
the masks; with B's mean and deviation (told after the epoch's last batch) they are the statistics
of B's scores A fits its next terms over (``model.corrected_terms``).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import OwnKeyOps, PeerKeyOps, peer_key_engine
from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import MAX_KEY_BITS, public_key_from_bytes
from fedlearn.crypto.packing import PackingLayout, truncate, unpack
from fedlearn.crypto.wire import (
    ciphertext_width,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
    keyed_ciphertexts_from_bytes,
)
from fedlearn.errors import EncodingOverflow, InvalidPeerData
from fedlearn.model import (
    Optimizer,
    ScoreStats,
    corrected_terms,
    l2_per_row,
    max_batch_rows,
    slopes_refreshed,
)
from fedlearn.protocol import messages as m
from fedlearn.protocol.held import HeldCiphertexts
from fedlearn.protocol.limits import (
    MIN_ROWS_PER_COLUMN,
    batch_rows_for,
    check_own_columns_a,
    check_peer_value_count,
    label_party_secret_bits,
    min_batch_rows,
    peer_value_limit,
)
from fedlearn.protocol.payloads import int_from_bytes
from fedlearn.protocol.peer_api import PeerApi
from fedlearn.protocol.steps import (
    SCORE_CLIP,
    FixedPointFeatures,
    class_sum_bound_bits,
    fixed_slopes,
    gradient_from_masked,
    gradient_layout,
    label_party_loss,
    label_party_residual,
    label_party_terms,
    loss_bound_bits,
    loss_mask,
    masked_gradient,
    residual_frac_bits,
    unmask_loss,
)

#: Noise for label differential privacy comes from the operating system's CSPRNG.
_SYSTEM_RANDOM = random.SystemRandom()


#: Obfuscators A keeps ready per row of its largest batch (a refreshing batch uses 3 per row).
POOL_PER_ROW = 4


@dataclass
class Timer:
    """Seconds per phase, accumulated: each ``lap`` adds the time since the last lap or ``restart``."""

    mark: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)

    def restart(self) -> None:
        self.mark = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.mark
        self.mark = now


def peer_engine_for(
    key: m.PaillierKey, params: m.TrainParams, executor: Executor | None
) -> PeerKeyOps:
    """B's public key from its OpenSession answer, checked against the job's key size."""
    peer_key = public_key_from_bytes(
        key.n, min_bits=params.key_bits, max_bits=max(params.key_bits, MAX_KEY_BITS)
    )
    return peer_key_engine(
        params.engine,
        peer_key,
        executor=executor,
        djn_base=int_from_bytes(key.djn_base, peer_key.nsquare, what="the peer's DJN base"),
    )


@dataclass
class TrainingA:
    """A's keys, layouts and weights for one session, and the current epoch's loss so far.

    ``features`` and ``labels`` cover all aligned rows (features with the intercept column last);
    ``n_train`` is the number of training rows.
    """

    peer: PeerApi
    session_id: str
    params: m.TrainParams
    own: OwnKeyOps
    peer_engine: PeerKeyOps
    features: FixedPointFeatures
    labels: np.ndarray
    n_train: int
    weights: np.ndarray
    optimizer: Optimizer
    own_layout: PackingLayout  # A's gradient, packed under B's key
    peer_layout: PackingLayout  # B's gradient, packed under A's key
    own_codec: FixedPointCodec  # integers under A's key
    peer_codec: FixedPointCodec  # integers under B's key
    timer: Timer
    peer_value_limit: int = (
        0  # most values B may have A decrypt per batch (limits.peer_value_limit)
    )
    peer_value_count: int = 0
    min_rows_per_column: int = MIN_ROWS_PER_COLUMN  # the job's [privacy] setting, for both parties
    plain_loss: float = 0.0  # the epoch's loss terms in u_A only, in plaintext
    encrypted_loss: Any = None  # the epoch's loss terms in u_B, under B's key
    peer_change: float = 0.0  # B's score change over the epoch, told after its last batch
    # A's model: its weights averaged over the last epoch (train.py sets it before the first).
    model_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gradient_noise: float = 0.0  # label DP: std of the noise on B's mean gradient (see add_noise)
    # Per aligned row, A's terms of the row's last refresh: the fixed-point slope beta and curvature
    # gamma whose ciphertexts B holds, and the offset c (``held``: the row has them). A forms alpha
    # with them in the epochs that reuse them (``slopes_refreshed``).
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    held_slopes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held_curvatures: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Per aligned row, the curvature correction [[gamma w]]_B of the row's last refresh in *this*
    # session: a row holds one exactly when B holds its [[beta]]_A and [[gamma w]]_A (a resumed
    # session has fresh keys: B holds none, while the held terms come from the checkpoint).
    held_corrections: HeldCiphertexts | None = None
    # B's score statistics A fits its terms over (the last epoch's), and this epoch's parts of the
    # next: the positive rows' count and sum of B's [[v]]_B, B's mean and deviation when told.
    stats: ScoreStats = field(default_factory=ScoreStats)
    positive_rows: int = 0
    positive_sum: Any = None
    peer_moments: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def start(
        cls,
        peer: PeerApi,
        *,
        session_id: str,
        params: m.TrainParams,
        own: OwnKeyOps,
        peer_engine: PeerKeyOps,
        features: FixedPointFeatures,
        labels: np.ndarray,
        n_train: int,
        timer: Timer,
        min_rows_per_column: int = MIN_ROWS_PER_COLUMN,
    ) -> TrainingA:
        """Zero weights, the optimizer (no penalty on the intercept) and the gradient layouts.

        Raises ``ConfigError`` before any ciphertext when A's own columns (intercept included)
        exceed ``min_batch_rows / min_rows_per_column`` (the job's [privacy] setting); fixes the
        most values B may have A decrypt per batch (``limits.peer_value_limit``).
        """
        frac = params.score_frac_bits
        own_n, peer_n = int(own.public_key.n), int(peer_engine.public_key.n)
        max_rows = max_batch_rows(n_train, params.batch_size)
        min_rows = min_batch_rows(n_train, params.batch_size)
        check_own_columns_a(features.n_features, min_rows, min_rows_per_column)
        bits = params.preprocess.feature_bits
        peer_layout = gradient_layout(
            own_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=frac
        )
        penalty_mask = np.ones(features.n_features)
        penalty_mask[-1] = 0.0
        training = cls(
            held=np.zeros(len(labels), dtype=bool),
            held_slopes=np.zeros(len(labels), dtype=np.int64),
            held_curvatures=np.zeros(len(labels), dtype=np.int64),
            held_offsets=np.zeros(len(labels)),
            held_corrections=HeldCiphertexts(len(labels), ciphertext_width(peer_n)),
            peer=peer,
            session_id=session_id,
            params=params,
            own=own,
            peer_engine=peer_engine,
            features=features,
            labels=labels,
            n_train=n_train,
            weights=np.zeros(features.n_features),
            optimizer=Optimizer(
                params.optimizer,
                params.learning_rate,
                penalty_mask,
                l2=l2_per_row(params.l2, n_train),
                l1=params.l1,
            ),
            own_layout=gradient_layout(
                peer_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=frac
            ),
            peer_layout=peer_layout,
            own_codec=FixedPointCodec(own_n),
            peer_codec=FixedPointCodec(peer_n),
            timer=timer,
            peer_value_limit=peer_value_limit(
                min_rows, peer_layout, label_party_secret_bits(), min_rows_per_column
            ),
            min_rows_per_column=min_rows_per_column,
        )
        # Keep obfuscators ready for a refreshing batch (alpha, beta and gamma per row) and one
        # more row each: the pool refills in the background while A waits for B. With two per
        # row it ran dry in every refreshing batch and A's own thread made the rest (47% of A's
        # node's samples over refreshing epochs); four bought 2-4% per refreshing epoch on
        # 8,000 rows, nothing measurable on 30,000 (docs/performance.md).
        own.pool_target = POOL_PER_ROW * max_rows
        own.prefill(POOL_PER_ROW * max_rows)
        return training

    @property
    def n_batches(self) -> int:
        """Batches per epoch, as ``epoch_batches`` cuts them."""
        return max(1, self.n_train // self.params.batch_size)

    def start_epoch(self) -> None:
        self.plain_loss, self.encrypted_loss, self.peer_change = 0.0, None, 0.0
        self.positive_rows, self.positive_sum = 0, None
        self.peer_moments = (0.0, 0.0)
        self.optimizer.start_epoch()

    def close(self) -> None:
        """Release the held corrections (a temporary file for large sessions)."""
        if self.held_corrections is not None:
            self.held_corrections.close()

    def end_epoch(self) -> None:
        """A's model becomes the average of its weights over the epoch just run."""
        self.model_weights = self.optimizer.average(self.weights)

    def run_batch(self, epoch: int, batch: int, rows: np.ndarray) -> None:
        """One batch with B: forward, gradient, update; A's weights take one optimizer step.

        Raises ``InvalidPeerData`` when B's answers have the wrong counts or values.
        """
        timer, peer, own, peer_engine = self.timer, self.peer, self.own, self.peer_engine
        frac, features = self.params.score_frac_bits, self.features
        own_n, peer_n = int(own.public_key.n), int(peer_engine.public_key.n)
        own_codec, peer_codec = self.own_codec, self.peer_codec
        header = m.BatchHeader(self.session_id, epoch, batch)
        s = len(rows)
        timer.restart()
        u_a = features.x_rows(rows) @ self.weights
        y = self.labels[rows]
        alpha, beta, gamma, mode = self._residual_terms(epoch, rows, u_a, y)
        reuse = mode == "reuse"
        encrypted = own.encrypt(own_codec.encode_int(alpha if reuse else alpha + beta + gamma))
        timer.lap("encryption")
        forward = peer.batch_forward(
            m.BatchForwardRequest(
                header,
                ciphertexts_to_bytes(encrypted[:s], own_n),
                b"" if reuse else ciphertexts_to_bytes(encrypted[s : 2 * s], own_n),
                reuse_slopes=reuse,
                curvatures=b"" if reuse else ciphertexts_to_bytes(encrypted[2 * s :], own_n),
                held_basis=mode == "resend",
            )
        )
        timer.lap("network")
        peer_key = peer_engine.public_key
        encrypted_scores = keyed_ciphertexts_from_bytes(
            forward.ciphertexts, peer_key, expected_count=s
        ).under(peer_key)
        (loss_term,) = keyed_ciphertexts_from_bytes(
            forward.loss_term, peer_key, expected_count=1
        ).under(peer_key)
        correction = self._correction(rows, forward.curvature_basis, None if reuse else gamma)
        residual = label_party_residual(
            peer_engine, encrypted_scores, alpha, beta, peer_codec, correction
        )
        self._add_positive_scores(encrypted_scores, y)
        packed, masks = masked_gradient(peer_engine, features.x_q[rows], residual, self.own_layout)
        # The loss terms in u_B: (sigmoid(u_A) - y) u_B + u_B^2 / 8, under B's key.
        plain, coefficients, coefficient_sum = label_party_loss(u_a, y)
        self.plain_loss += plain
        cross = peer_engine.add_plain(
            [peer_engine.dot(coefficients, encrypted_scores)],
            peer_codec.encode_int([-(SCORE_CLIP << frac) * coefficient_sum]),
        )[0]
        (batch_loss,) = peer_engine.add([cross], [loss_term])
        self.encrypted_loss = (
            batch_loss
            if self.encrypted_loss is None
            else peer_engine.add([self.encrypted_loss], [batch_loss])[0]
        )
        timer.lap("matvec")
        reply = peer.batch_gradient(
            m.BatchGradientRequest(
                header, ciphertexts_to_bytes(packed, peer_n), value_count=features.n_features
            )
        )
        timer.lap("network")
        masked_own, masked_peer = self._gradient_reply(reply)
        timer.lap("decryption")
        # Any returned values decode to some gradient: no error that depends on A's masks.
        gradient = gradient_from_masked(
            masked_own,
            masks,
            layout=self.own_layout,
            features=features,
            score_frac_bits=frac,
            batch_rows=s,
        )
        self.weights = self.optimizer.step(self.weights, gradient)
        if self.gradient_noise > 0:
            masked_peer = self._add_noise(masked_peer, s)
        returned = truncate(masked_peer, self.peer_layout)
        update = peer.batch_update(
            m.BatchUpdateRequest(header, ints_to_bytes(returned, self.peer_layout.returned_bytes))
        )
        self.peer_change = update.weight_change_norm
        if batch + 1 == self.n_batches:  # the epoch's last
            self.peer_moments = _checked_moments(update.score_mean, update.score_std)
        timer.lap("network")

    def _residual_terms(
        self, epoch: int, rows: np.ndarray, u_a: np.ndarray, y: np.ndarray
    ) -> tuple[list[int], list[int], list[int], str]:
        """(alpha, beta, gamma, mode) for the batch's rows: fresh terms, or the held ones.

        In the epochs the public schedule (``slopes_refreshed``) does not refresh, a batch whose
        rows all have held terms uses them: alpha is formed with them, and no [[beta]] or [[gamma]]
        is sent (mode "reuse") when B holds their ciphertexts from this session; otherwise (a
        resumed session, whose held terms come from the checkpoint) they are encrypted afresh and B
        uses the basis w it held (mode "resend"), so a resumed run computes what the uninterrupted
        one would. Outside those epochs the batch's terms are fitted afresh over the statistics of
        B's scores (``corrected_terms``) and become the held ones (mode "fresh").
        """
        assert self.held_corrections is not None
        refreshed = slopes_refreshed(epoch, self.params.epochs, self.n_batches)
        if not refreshed and bool(np.all(self.held[rows])):
            mode = "resend" if self.held_corrections.missing(rows) else "reuse"
        else:
            offset, slope, curvature = corrected_terms(u_a, y, self.stats)
            self.held[rows] = True
            self.held_offsets[rows] = offset
            self.held_slopes[rows] = fixed_slopes(slope)
            self.held_curvatures[rows] = fixed_slopes(curvature)
            mode = "fresh"
        beta = [int(b) for b in self.held_slopes[rows]]
        gamma = [int(g) for g in self.held_curvatures[rows]]
        alpha, _ = label_party_terms(
            u_a, y, self.params.score_frac_bits, beta, self.held_offsets[rows]
        )
        return alpha, beta, gamma, mode

    def _correction(self, rows: np.ndarray, basis: bytes, gamma: list[int] | None) -> list[Any]:
        """[[gamma w]]_B for the batch's rows: from B's [[w]]_B when A sent its gamma (then held),
        else the ones held since the rows' last refresh. Raises ``InvalidPeerData`` for a basis
        B sent unasked or with the wrong count."""
        held = self.held_corrections
        assert held is not None
        peer_key = self.peer_engine.public_key
        if gamma is None:
            if basis:
                raise InvalidPeerData("BatchForward: a curvature basis that was not asked for")
            return held.take(rows)
        encrypted_basis = keyed_ciphertexts_from_bytes(
            basis, peer_key, expected_count=len(rows)
        ).under(peer_key)
        correction = self.peer_engine.scale(encrypted_basis, gamma)
        held.put(rows, ciphertexts_to_bytes(correction, int(peer_key.n)))
        return correction

    def _add_positive_scores(self, encrypted_scores: list[Any], y: np.ndarray) -> None:
        """Add B's [[v]]_B of the batch's positive rows to the epoch's class sum."""
        positive = [c for c, label in zip(encrypted_scores, y, strict=True) if label > 0.5]
        self.positive_rows += len(positive)
        if positive:
            total = self.peer_engine.dot([1] * len(positive), positive)
            self.positive_sum = (
                total
                if self.positive_sum is None
                else self.peer_engine.add([self.positive_sum], [total])[0]
            )

    def epoch_loss(self, epoch: int) -> float:
        """The epoch's mean loss (the quadratic bound), B's part revealed through ``EpochLoss``
        with the positive rows' sum of B's scores; A's statistics of B's scores become this
        epoch's (``stats``)."""
        frac = self.params.score_frac_bits
        revealed, class_sum = self._reveal_epoch_loss(epoch, loss_bound_bits(self.n_train, frac))
        mean, std = self.peer_moments
        positive_mean = (class_sum / max(self.positive_rows, 1) - (SCORE_CLIP << frac)) / 2.0**frac
        self.stats = ScoreStats.from_moments(
            mean,
            std,
            rows=self.n_train,  # every training row is in one of the epoch's batches
            positive_rows=self.positive_rows,
            positive_mean=positive_mean,
        )
        return (self.plain_loss + revealed / 2.0 ** residual_frac_bits(frac)) / self.n_train

    def _gradient_reply(self, reply: m.BatchGradientResponse) -> tuple[list[int], list[int]]:
        """B's BatchGradient answer, checked and opened: (A's masked values, B's masked values).

        A's gradient values come back decrypted by B (their low b + 1 bits), still under A's masks;
        B's come packed under A's key and are decrypted here, still under B's masks. B's
        ``value_count`` is checked against the limit fixed at the start and pinned before anything
        is decrypted, and every decrypted slot is range-checked (``unpack``). Raises
        ``InvalidPeerData``; the caller then ends the session (``train`` closes it).
        """
        try:
            peer_count = check_peer_value_count(
                reply.value_count, limit=self.peer_value_limit, pinned=self.peer_value_count
            )
        except InvalidPeerData as exc:
            if not self.peer_value_count and reply.value_count > self.peer_value_limit:
                # B's first count is more columns than A's [privacy] allows these batches: the
                # batch size that would (a job with batch_size = "auto" runs again with it),
                # unless even one batch of every training row could not.
                needed = batch_rows_for(
                    reply.value_count,
                    self.peer_layout,
                    label_party_secret_bits(),
                    self.min_rows_per_column,
                )
                exc.min_batch_size = needed if needed <= self.n_train else 0
            raise
        self.peer_value_count = peer_count
        own_key = self.own.public_key
        peer_packed = keyed_ciphertexts_from_bytes(
            reply.packed_ciphertexts,
            own_key,
            expected_count=self.peer_layout.ciphertext_count(peer_count),
        )
        masked_own = ints_from_bytes(
            reply.masked_values,
            self.own_layout.returned_bytes,
            expected_count=self.features.n_features,
            bound=1 << self.own_layout.returned_bits,
        )
        masked_peer = unpack(
            self.own.decrypt(peer_packed.under(own_key)), self.peer_layout, peer_count
        )
        return masked_own, masked_peer

    def _add_noise(self, masked_values: list[int], rows: int) -> list[int]:
        """Label differential privacy: Gaussian noise on the gradient B is about to learn.

        B's gradient is a function of the labels, and what B learns of it each batch is what leaks
        labels to B. A adds noise of standard deviation ``gradient_noise`` (in units of B's mean
        gradient on a standardised dense column) to each of B's masked values: the mask hides the
        value from A, the noise survives unmasking. Changing one label moves such a gradient
        component by at most ``clip / rows``, so the noise multiplier of this Gaussian mechanism is
        ``gradient_noise * rows / clip`` per batch (privacy accounting over batches and epochs is
        the caller's: docs/threat-model.md). Noise comes from the operating system's CSPRNG.
        """
        params = self.params
        nominal_scale = (2 ** (params.preprocess.feature_bits - 1) - 1) / params.preprocess.clip
        unit = rows * nominal_scale * 2.0 ** residual_frac_bits(params.score_frac_bits)
        limit = 1 << (self.peer_layout.value_bound_bits - 2)
        modulus = 1 << self.peer_layout.returned_bits  # B reads the slots mod 2^(b + 1)
        noisy = []
        for value in masked_values:
            noise = round(_SYSTEM_RANDOM.gauss(0.0, self.gradient_noise * unit))
            noisy.append((value + max(-limit, min(limit, noise))) % modulus)
        return noisy

    def _reveal_epoch_loss(self, epoch: int, bound_bits: int) -> tuple[int, int]:
        """B's part of the epoch's loss (its quadratic bound) and the sum of B's v over the
        epoch's positive rows, each masked before B decrypts it; only A removes the masks. B sends
        back the low ``b + 1`` bits of ``L_B + R_L`` and ``S_1 + R_S`` only."""
        peer_engine = self.peer_engine
        class_bits = class_sum_bound_bits(self.n_train, self.params.score_frac_bits)
        loss_r, class_r = loss_mask(bound_bits), loss_mask(class_bits)
        peer_n = int(peer_engine.public_key.n)
        positive_sum = self.positive_sum
        if positive_sum is None:  # no positive row this epoch: 1 encrypts 0 (re-randomised below)
            positive_sum = 1
        masked = peer_engine.rerandomize(
            peer_engine.add_plain([self.encrypted_loss, positive_sum], [loss_r, class_r])
        )
        reply = self.peer.epoch_loss(
            m.EpochLossRequest(
                self.session_id,
                epoch,
                ciphertexts_to_bytes(masked[:1], peer_n),
                class_sum=ciphertexts_to_bytes(masked[1:], peer_n),
            )
        )
        # B returns the low b + 1 bits of each (at most that many bytes, big-endian).
        if (
            len(reply.value) > (bound_bits + 8) // 8
            or len(reply.class_value) > (class_bits + 8) // 8
        ):
            raise InvalidPeerData("EpochLoss: a returned value is wider than its bound")
        try:
            loss = unmask_loss(int.from_bytes(reply.value, "big"), loss_r, bound_bits)
            class_sum = unmask_loss(int.from_bytes(reply.class_value, "big"), class_r, class_bits)
        except EncodingOverflow as exc:
            raise InvalidPeerData(f"EpochLoss: {exc}") from None
        if (
            not 0
            <= class_sum
            <= self.positive_rows * (2 * SCORE_CLIP << self.params.score_frac_bits)
        ):
            raise InvalidPeerData("EpochLoss: the class sum is outside its range")
        return loss, class_sum


def _checked_moments(mean: float, std: float) -> tuple[float, float]:
    """B's mean and deviation of its scores over an epoch, checked: B's clipped scores lie in
    [-K, K], so an honest mean does and a deviation lies in [0, K]. Raises ``InvalidPeerData``."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise InvalidPeerData("BatchUpdate: B's score statistics are not finite")
    if abs(mean) > SCORE_CLIP or not 0.0 <= std <= SCORE_CLIP:
        raise InvalidPeerData("BatchUpdate: B's score statistics are out of range")
    return float(mean), float(std)
