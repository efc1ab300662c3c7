"""Logistic-regression math shared by the plaintext reference and the encrypted protocol.

Both parties and the plaintext reference use the same functions here, so tests can compare them:

- the residual ``d = sigmoid(u) - y`` in the form the protocol computes under encryption: linear in B's
  partial score around A's own score, plus a per-row correction fitted over B's score distribution
  (``corrected_terms``), and the quadratic upper bound of the logistic loss the protocol evaluates;
- the train/validation split and the per-epoch batches, derived from a seed both parties know;
- the optimizers (sgd, momentum, adam): each party keeps its own state for its own weights;
- the penalty: L2 in the gradient, L1 as a proximal (soft-threshold) step; intercepts are not penalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from fedlearn.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "adam")


def sigmoid(u: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    u = np.asarray(u, dtype=np.float64)
    out = np.empty_like(u)
    positive = u >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-u[positive]))
    exp_u = np.exp(u[~positive])
    out[~positive] = exp_u / (1.0 + exp_u)
    return out


def sigmoid_slope(u: np.ndarray) -> np.ndarray:
    """sigmoid'(u) = sigmoid(u) (1 - sigmoid(u)), at most 1/4."""
    p = sigmoid(u)
    return p * (1.0 - p)


def linearized_residual(
    u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, slope: np.ndarray | None = None
) -> np.ndarray:
    """d = sigmoid(u_A + u_B) - y, linearised in u_B around A's own score u_A (shape (s,)).

    sigmoid(u_A + u_B) ~ sigmoid(u_A) + sigmoid'(u_A) u_B: the first-order Taylor expansion, taken per
    row at the point A knows in the clear instead of at 0, so it stays accurate where the intercept
    and A's columns move the score far from 0 (a rare label puts most rows near logit(base rate)).
    ``slope`` (shape (s,)) replaces sigmoid'(u_A): the slope whose ciphertext B holds for the row
    when the protocol reuses an earlier epoch's (``slopes_refreshed``).
    """
    if slope is None:
        slope = sigmoid_slope(u_a)
    return (
        sigmoid(u_a) + slope * np.asarray(u_b, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    )


#: B standardises its score by the previous epoch's mean and deviation, clips it to this many
#: deviations and squares it (``ScoreStats.curvature_basis``): every value it encrypts stays bounded.
CURVATURE_Z_CLIP = 3.0
#: The smallest deviation of B's scores used (logits): they start at 0 and grow through epoch 1.
SCORE_SCALE_FLOOR = 1.0
#: Bounds on A's corrected terms, so |d| stays within the encoding's (steps.gradient_bound_bits):
#: |sigmoid(u_A) - y + offset| <= 2, slope * |u_B| <= K / 4, |curvature| * z^2 <= 9 / 2.
MAX_SLOPE = 0.25
MAX_CURVATURE = 0.5
MAX_OFFSET = 1.0
_NODES, _NODE_WEIGHTS = hermegauss(32)
_NODE_WEIGHTS = _NODE_WEIGHTS / _NODE_WEIGHTS.sum()


@dataclass(frozen=True)
class ScoreStats:
    """What the parties know of B's training scores over the previous epoch's batches.

    ``mean`` and ``std`` (floored at SCORE_SCALE_FLOOR) are B's standardisation, which B tells A
    after each epoch; ``class_means`` (label 0, label 1) and ``within_std`` are A's only: A learns
    the positive rows' sum of B's scores through EpochLoss (masked, docs/protocol.md section 2).
    The defaults are the first epoch's: B's weights start at zero.
    """

    mean: float = 0.0
    std: float = SCORE_SCALE_FLOOR
    class_means: tuple[float, float] = (0.0, 0.0)
    within_std: float = SCORE_SCALE_FLOOR

    @classmethod
    def from_moments(
        cls,
        mean: float,
        std: float,
        *,
        rows: int = 0,
        positive_rows: int = 0,
        positive_mean: float = 0.0,
    ) -> ScoreStats:
        """B's ``mean`` and ``std`` over ``rows`` scores; with the positive rows' count and mean
        (A's), each class's mean and the pooled within-class deviation
        ``sqrt(std^2 - p0 p1 (m1 - m0)^2)``."""
        std = float(std)
        if not 0 < positive_rows < rows:
            return cls(
                float(mean), max(std, SCORE_SCALE_FLOOR), (mean, mean), max(std, SCORE_SCALE_FLOOR)
            )
        share = positive_rows / rows
        negative_mean = (mean - share * positive_mean) / (1.0 - share)
        within = std * std - share * (1.0 - share) * (positive_mean - negative_mean) ** 2
        return cls(
            float(mean),
            max(std, SCORE_SCALE_FLOOR),
            (float(negative_mean), float(positive_mean)),
            max(math.sqrt(max(within, 0.0)), SCORE_SCALE_FLOOR),
        )

    @classmethod
    def from_sums(
        cls,
        rows: float,
        total: float,
        squares: float,
        positive_rows: float = 0.0,
        positive_total: float = 0.0,
    ) -> ScoreStats:
        """``from_moments`` from the sums over an epoch's batches: the rows, B's scores and their
        squares, and (A's) the positive rows and their scores."""
        mean = total / rows
        return cls.from_moments(
            mean,
            math.sqrt(max(squares / rows - mean * mean, 0.0)),
            rows=int(rows),
            positive_rows=int(positive_rows),
            positive_mean=positive_total / max(positive_rows, 1.0),
        )

    def curvature_basis(self, u_b: np.ndarray) -> np.ndarray:
        """B's second function of its score: ``clip((u_B - mean) / std, -3, 3)^2``, in [0, 9]."""
        z = np.clip((np.asarray(u_b, dtype=np.float64) - self.mean) / self.std,
                    -CURVATURE_Z_CLIP, CURVATURE_Z_CLIP)  # fmt: skip
        return np.asarray(z * z)


def corrected_terms(
    u_a: np.ndarray, y: np.ndarray, stats: ScoreStats
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A's per-row (offset, slope, curvature): ``sigmoid(u_A + b)`` fitted over B's score b.

    For a row of label class k, b ~ N(class mean k, within_std^2); the fit is the least-squares
    projection (Gauss-Hermite, 32 nodes) of ``sigmoid(u_A + b)`` on ``(1, b, w(b))``, w B's
    ``curvature_basis``, written as ``sigmoid(u_A) + offset + slope b + curvature w(b)``. Each term
    is clipped to its bound (MAX_OFFSET, MAX_SLOPE, MAX_CURVATURE). The slope may come out slightly
    negative where B's scores of a class lie far in the sigmoid's flat tail (the 2% set); clipping
    it at 0 instead took that set from 49 epochs to 93 in the replay.
    """
    u_a = np.asarray(u_a, dtype=np.float64)
    classes = np.asarray(y, dtype=np.float64) > 0.5
    terms = np.zeros((len(u_a), 3))
    for label in (False, True):
        rows = classes == label
        if not rows.any():
            continue
        b = stats.class_means[int(label)] + stats.within_std * _NODES
        design = np.stack([np.ones_like(b), b, stats.curvature_basis(b)], axis=1)
        gram = design.T @ (_NODE_WEIGHTS[:, None] * design)
        values = sigmoid(u_a[rows][:, None] + b[None, :])
        terms[rows] = (values * _NODE_WEIGHTS) @ design @ np.linalg.pinv(gram)
    offset = np.clip(terms[:, 0] - sigmoid(u_a), -MAX_OFFSET, MAX_OFFSET)
    slope = np.clip(terms[:, 1], -MAX_SLOPE, MAX_SLOPE)
    curvature = np.clip(terms[:, 2], -MAX_CURVATURE, MAX_CURVATURE)
    return offset, slope, curvature


def corrected_residual(
    u_a: np.ndarray,
    u_b: np.ndarray,
    y: np.ndarray,
    offset: np.ndarray,
    slope: np.ndarray,
    correction: np.ndarray,
) -> np.ndarray:
    """The protocol's d: ``sigmoid(u_A) - y + offset + slope u_B + correction`` per row.

    ``offset`` and ``slope`` are A's from the row's last refresh, ``correction`` the curvature term
    ``curvature w`` of that refresh (held by both parties, each under the other's key).
    """
    return np.asarray(
        sigmoid(u_a)
        - np.asarray(y, dtype=np.float64)
        + offset
        + slope * np.asarray(u_b, dtype=np.float64)
        + correction
    )


def logistic_loss(u: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row logistic loss log(1 + e^u) - y u."""
    u = np.asarray(u, dtype=np.float64)
    return np.asarray(np.logaddexp(0.0, u) - np.asarray(y, dtype=np.float64) * u)


def majorized_loss(u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray) -> float:
    """Mean of l(u_A) + (sigmoid(u_A) - y) u_B + u_B^2 / 8: the quadratic upper bound of the logistic
    loss around A's score (the logistic loss has curvature at most 1/4). It is what the protocol can
    evaluate under encryption; it equals the logistic loss when u_B = 0 and bounds it from above.
    """
    u_a = np.asarray(u_a, dtype=np.float64)
    u_b = np.asarray(u_b, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not u_a.size:
        return math.nan
    return float(np.mean(logistic_loss(u_a, y) + (sigmoid(u_a) - y) * u_b + u_b * u_b / 8.0))


def split_train_validation(
    n_rows: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split aligned row indices 0..n_rows-1 into (train, validation), both sorted.

    Both parties call this with the session's seed and get the same split without any message.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 0x5E1D]).permutation(n_rows)
    n_validation = round(n_rows * fraction)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def epoch_batches(
    train_rows: np.ndarray, batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """The batches of one epoch: a seeded permutation of ``train_rows`` cut into near-equal parts.

    ``max(1, len // batch_size)`` parts, so every batch has at least ``batch_size`` rows when there
    are that many rows at all (a party's minimum batch size is then never undercut by a remainder).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    order = np.random.default_rng([seed, 0xBA7C, epoch]).permutation(np.asarray(train_rows))
    n_batches = max(1, len(order) // batch_size)
    return [np.asarray(part) for part in np.array_split(order, n_batches)]


def max_batch_rows(n_train: int, batch_size: int) -> int:
    """The largest batch ``epoch_batches`` produces for ``n_train`` rows (sizes bound the encoding)."""
    n_batches = max(1, n_train // batch_size)
    return -(-n_train // n_batches)


#: A sends a fresh [[beta]] (its slope sigmoid'(u_A), docs/protocol.md section 2) for every row in the
#: epochs that hold the first SLOPE_FRESH_STEPS optimizer steps (at least SLOPE_FRESH_EPOCHS epochs),
#: then in every SLOPE_REFRESH_EVERY-th epoch and in the budget's last epoch; in the other epochs B
#: reuses the ciphertext it holds for the row (from the row's last fresh epoch) and A uses that same
#: slope. The schedule depends on the epoch number, the budget and the batches per epoch: all public.
#: 40 steps are two decay constants of the step size (DECAY_STEPS): the weights, hence the slopes,
#: move most in them; a data set of few batches per epoch (a small one) then hardly reuses at all.
#: Every 2nd, not every 4th: the held curvature term is B's score as it was at the refresh, a delayed
#: feedback, and held for 3 epochs it made rare-label and wide sets oscillate (replay: VIP 4,000 with
#: 2% positives 65 epochs and -0.0135 AUC against scikit-learn -> 32 epochs, +0.0033; VIP 20,000
#: with 290 useless columns at B 100 epochs, not converged -> 94; docs/quality.md).
SLOPE_FRESH_EPOCHS = 2
SLOPE_FRESH_STEPS = 40
SLOPE_REFRESH_EVERY = 2


def slopes_refreshed(epoch: int, epochs: int, batches: int) -> bool:
    """Whether epoch ``epoch`` (0-based) of a budget of ``epochs`` epochs of ``batches`` batches
    each sends fresh slopes for every row.

    Epoch 0 always does (B holds no slope before it), so every later epoch has one to reuse.
    """
    fresh_epochs = max(SLOPE_FRESH_EPOCHS, -(-SLOPE_FRESH_STEPS // max(1, batches)))
    return epoch < fresh_epochs or epoch % SLOPE_REFRESH_EVERY == 0 or epoch == epochs - 1


#: The step size decays as ``learning_rate / (1 + (t - 1) / DECAY_STEPS)`` over the optimizer's steps t:
#: large early steps, then small ones that let mini-batch noise average out (both parties use it).
DECAY_STEPS = 20.0


@dataclass
class Optimizer:
    """One party's optimizer over its own parameter vector (state never leaves the party).

    ``penalty_mask`` is 1.0 for penalised weights and 0.0 for the intercept. The step size follows
    ``learning_rate_at`` (a decay both parties compute from their own step count). ``average`` is
    the mean of the iterates since ``start_epoch``: each party's model is the average of its
    weights over the last epoch (Polyak averaging), which removes most of the mini-batch noise.
    """

    name: str
    learning_rate: float
    penalty_mask: np.ndarray
    l2: float = 0.0
    l1: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decay_steps: float = DECAY_STEPS
    steps: int = 0
    _first: np.ndarray = field(init=False, repr=False)
    _second: np.ndarray = field(init=False, repr=False)
    _sum: np.ndarray = field(init=False, repr=False)
    _count: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.l1 < 0 or self.l2 < 0:
            raise ConfigError("l1 and l2 penalties must be >= 0")
        self._first = np.zeros_like(self.penalty_mask, dtype=np.float64)
        self._second = np.zeros_like(self.penalty_mask, dtype=np.float64)
        self._sum = np.zeros_like(self.penalty_mask, dtype=np.float64)

    def learning_rate_at(self, step: int) -> float:
        """The step size of step ``step`` (1-based): ``learning_rate / (1 + (step - 1) / decay)``."""
        if self.decay_steps <= 0:
            return self.learning_rate
        return self.learning_rate / (1.0 + (step - 1) / self.decay_steps)

    def start_epoch(self) -> None:
        """Forget the iterates of the previous epoch (``average`` restarts)."""
        self._sum = np.zeros_like(self._sum)
        self._count = 0

    def average(self, weights: np.ndarray) -> np.ndarray:
        """The mean of the iterates since ``start_epoch`` (``weights`` when there was no step)."""
        if self._count == 0:
            return np.asarray(weights, dtype=np.float64).copy()
        return np.asarray(self._sum / self._count, dtype=np.float64)

    def step(self, weights: np.ndarray, data_gradient: np.ndarray) -> np.ndarray:
        """New weights from the mean data gradient of one batch (shape (f,)); adds the L2 term."""
        gradient = data_gradient + self.l2 * self.penalty_mask * weights
        self.steps += 1
        if self.name == "sgd":
            update = gradient
        elif self.name == "momentum":
            self._first = self.beta1 * self._first + gradient
            update = self._first
        else:
            self._first = self.beta1 * self._first + (1 - self.beta1) * gradient
            self._second = self.beta2 * self._second + (1 - self.beta2) * gradient**2
            first_hat = self._first / (1 - self.beta1**self.steps)
            second_hat = self._second / (1 - self.beta2**self.steps)
            update = first_hat / (np.sqrt(second_hat) + self.eps)
        rate = self.learning_rate_at(self.steps)
        new_weights = weights - rate * update
        if self.l1 > 0:
            shrink = rate * self.l1 * self.penalty_mask
            new_weights = np.sign(new_weights) * np.maximum(np.abs(new_weights) - shrink, 0.0)
        new_weights = np.asarray(new_weights, dtype=np.float64)
        self._sum = self._sum + new_weights
        self._count += 1
        return new_weights


def log_odds(labels: np.ndarray) -> float:
    """log(r / (1 - r)) of the positive rate r of 0/1 ``labels``: the intercept A starts from.

    With the other weights at zero this is the best constant model, so training starts calibrated.
    Raises ``ConfigError`` when the labels hold one class only.
    """
    rate = float(np.mean(np.asarray(labels, dtype=np.float64)))
    if not 0.0 < rate < 1.0:
        raise ConfigError("the training labels hold one class only; nothing to learn")
    return math.log(rate / (1.0 - rate))


def score_change(x: np.ndarray, before: np.ndarray, after: np.ndarray) -> float:
    """RMS change of a party's partial score ``x @ w`` over the rows of ``x`` when w moves (logits).

    Each party computes it for its own columns after every epoch, between its epoch-averaged
    weights of this epoch and the last; early stopping watches the two combined (docs/protocol.md).
    """
    if not len(x):
        return 0.0
    delta = np.asarray(x, dtype=np.float64) @ (np.asarray(after) - np.asarray(before))
    return float(np.sqrt(np.mean(delta * delta)))


@dataclass
class PlainRun:
    """What ``fit_plain_reference`` returns: the model (epoch-averaged weights) and per-epoch trace."""

    w_a: np.ndarray
    w_b: np.ndarray
    losses: list[float]
    changes: list[float]  # combined score change per epoch (what early stopping watches)


def l2_per_row(l2: float, train_rows: int) -> float:
    """The job's ``l2`` (scikit-learn's units, 1/C, on the *summed* loss) as the coefficient on the
    mean loss each optimizer uses: ``l2 / train_rows``. Both parties know the training row count."""
    return l2 / max(1, train_rows)


class ResidualForm(Protocol):
    """A residual other than the protocol's, for the plaintext reference (bench/residual_forms.py)."""

    def __call__(
        self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, *, rows: np.ndarray, refresh: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """d for one batch: A's and B's scores (B's clipped), the labels, the batch's training
        rows and whether the protocol refreshes the slopes this epoch. One d for both gradients,
        or a pair (A's, B's) when the parties would compute different residuals."""
        ...

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, *, converged: bool) -> bool:
        """After each epoch: B's (clipped) scores of every training row, their labels, and whether
        the run would stop here. True keeps it going, convergence then counted afresh."""
        ...


def fit_plain_reference(
    x_a: np.ndarray,
    x_b: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    optimizer: str = "adam",
    learning_rate: float = 0.1,
    l2: float = 0.0,
    l1: float = 0.0,
    score_clip: float = 64.0,
    tolerance: float = 0.0,
    patience: int = 2,
    residual: ResidualForm | None = None,
) -> PlainRun:
    """The plaintext reference: the protocol's schedule and residual math without encryption.

    ``x_a`` must already carry A's intercept column last; ``y`` are the training labels; ``l2`` is
    the job's (scikit-learn's units, see ``l2_per_row``). The
    intercept starts at their log-odds, the other weights at zero; each epoch's model is the
    average of the epoch's iterates. With ``tolerance`` > 0 it stops, as the protocol does, once
    the combined score change stayed below ``tolerance`` for ``patience`` epochs in a row.
    ``residual``: another residual than the protocol's (bench/residual_forms.py measures some);
    the slopes' reuse schedule is then not applied.
    """
    w_a = np.zeros(x_a.shape[1])
    w_a[-1] = log_odds(y)
    w_b = np.zeros(x_b.shape[1])
    mask_a = np.ones_like(w_a)
    mask_a[-1] = 0.0
    penalty = l2_per_row(l2, len(y))
    opt_a = Optimizer(optimizer, learning_rate, mask_a, l2=penalty, l1=l1)
    opt_b = Optimizer(optimizer, learning_rate, np.ones_like(w_b), l2=penalty, l1=l1)
    rows = np.arange(len(y))
    n_batches = max(1, len(y) // batch_size)  # as epoch_batches cuts them
    # Per row, the terms of its last refresh: A's offset and slope, the curvature correction.
    offsets, slopes, corrections = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    stats = ScoreStats()
    model_a, model_b = w_a.copy(), w_b.copy()
    losses: list[float] = []
    changes: list[float] = []
    since = 0  # convergence counts the changes from here (a residual form may restart it)
    for epoch in range(epochs):
        epoch_loss = 0.0
        moments = np.zeros(5)  # rows, sum u_B, sum u_B^2, positive rows, their sum of u_B
        opt_a.start_epoch()
        opt_b.start_epoch()
        for batch in epoch_batches(rows, batch_size, seed, epoch):
            u_a = x_a[batch] @ w_a
            u_b = np.clip(x_b[batch] @ w_b, -score_clip, score_clip)
            refresh = slopes_refreshed(epoch, epochs, n_batches)
            if residual is not None:
                d = residual(u_a, u_b, y[batch], rows=batch, refresh=refresh)
                d_a, d_b = d if isinstance(d, tuple) else (d, d)
            else:
                if refresh:
                    offsets[batch], slopes[batch], curvature = corrected_terms(u_a, y[batch], stats)
                    corrections[batch] = curvature * stats.curvature_basis(u_b)
                d_a = d_b = corrected_residual(
                    u_a, u_b, y[batch], offsets[batch], slopes[batch], corrections[batch]
                )
            positive = y[batch] > 0.5
            moments += (
                len(batch),
                u_b.sum(),
                (u_b * u_b).sum(),
                positive.sum(),
                u_b[positive].sum(),
            )
            epoch_loss += majorized_loss(u_a, u_b, y[batch]) * len(batch)
            w_a = opt_a.step(w_a, x_a[batch].T @ d_a / len(batch))
            w_b = opt_b.step(w_b, x_b[batch].T @ d_b / len(batch))
        new_a, new_b = opt_a.average(w_a), opt_b.average(w_b)
        changes.append(
            math.hypot(score_change(x_a, model_a, new_a), score_change(x_b, model_b, new_b))
        )
        model_a, model_b = new_a, new_b
        stats = ScoreStats.from_sums(*moments)
        losses.append(epoch_loss / len(y))
        done = converged(changes[since:], tolerance, patience)
        if residual is not None:
            scores_b = np.clip(x_b @ w_b, -score_clip, score_clip)
            if residual.end_epoch(scores_b, y, converged=done):
                since, done = len(changes), False
        if done:
            break
    return PlainRun(model_a, model_b, losses, changes)


def converged(changes: list[float], tolerance: float, patience: int) -> bool:
    """True when the last ``patience`` score changes are all below ``tolerance`` (> 0)."""
    if tolerance <= 0 or len(changes) < patience:
        return False
    return all(change < tolerance for change in changes[-patience:])
