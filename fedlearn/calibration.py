"""Platt scaling: a two-parameter map from a model's logit to a calibrated probability.

The encrypted protocol fits a linearised residual (``fedlearn.model.linearized_residual``), whose
fixed point is not exactly logistic regression's: where B's partial scores are large its scores come
out too spread or off-centre, so ``sigmoid(u)`` is not a probability to act on. A fits
``p = sigmoid(slope * u + offset)`` on rows the model was not trained on (the validation rows, whose
joint scores A receives anyway) and applies it when scoring. The map is increasing, so ranks, deciles
and AUC do not change; only the probabilities do.

The fit is maximum likelihood with a weak Gaussian prior pulling (slope, offset) toward the identity
(1, 0) (``PRIOR``, in units of the summed log loss: a tenth of one row's worth), so it stays finite
when the validation rows are separable. Platt's original smoothed targets ((N+ + 1) / (N+ + 2) and
1 / (N- + 2)) are NOT used: on a small, nearly separable validation set they cap every probability
near 1 - 1/N+ and 1/N-, which cost FATE's breast split 1.8x scikit-learn's log loss even for
scikit-learn's own model (docs/quality.md).

The fitted map is kept only where the validation rows show the scores are off: its log-likelihood
gain over the identity, on the rows it was fitted on, must pass a likelihood-ratio test at 5% (two
parameters: twice the gain above 5.99, the chi-square's 95% point with 2 degrees of freedom).
Two parameters fitted to a few hundred rows always gain something; where that gain is what noise
alone gives, the map moves every probability by the validation rows' noise. With the protocol's
corrected residual (docs/protocol.md section 2) the joint model's own probabilities are usually
calibrated already: on FATE's breast split (89 validation rows, in-sample gain 0.50) the ungated
map took the held-out log loss from 0.94x scikit-learn's to 1.21x, and of eight VIP sets of 2,000
and 20,000 users the test kept the map on one (docs/quality.md). A model that is off keeps its map:
the tangent residual's too-spread scores gained 21-45 on VIP 20,000 seeds 1 and 3 and the 2% set,
and a run stopped after 3 epochs 17 on the 2% set (0.3-0.8 on VIP 20,000, where it starts from the
training log-odds and stays calibrated on average).

The level of the map (calibration in the large) is then corrected with every label A holds, not only
the validation rows'. The validation rows are a random fifth of the users; on 2,000 users (320
validation rows, ~30 positives) their own rate is off the population's by ~17% (one standard error),
and a maximum-likelihood offset copies the part of that deviation the scores do not explain (the
labels' own noise, sum p(1 - p) / n^2 in variance) into every probability. With ``base_rate`` (the
label rate of A's training and validation rows together, ``base_rows`` of them) the offset moves by
``k (logit(base_rate) - logit(validation rate))``: the shift that corrects a model's odds for a
change of the class prior (Saerens et al., 2002), times the share k of the difference that is the
labels' noise rather than the scores'. With e the validation rows' label noise (variance
``s_e^2 / n_v``, ``s_e^2 = E p(1 - p)``) and the rates' difference d = r_val - r_base (r_base taken
over the n_t training and n_v validation rows), the regression of e on d is
``E[e | d] = s_e^2 / (r (1 - r)) d`` whatever n_t and n_v (the factor n_t / (n_t + n_v) in
Cov(e, d) cancels the one in Var(d)): k = ``mean p(1 - p) / (r (1 - r))`` over the validation
rows, at most 1. The slope stays the fitted one. A weak model (probabilities near the
rate) gets nearly the whole shift; a nearly separable one (p near 0 or 1: the validation rate is
what its scores say) nearly none. On large sets the two rates agree and nothing changes. (The whole
shift, k = 1, took FATE's breast log loss from 0.99x to 1.22x scikit-learn's; moving the offset until
the validation rows' mean probability equals the rate, to 2.9x.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlearn.model import sigmoid

#: Fewer validation rows than this (or a single class) leave the scores as they are.
MIN_ROWS = 20
#: The log-likelihood gain over the identity that the fitted map needs on its own rows to be kept:
#: half the chi-square's 95% point with 2 degrees of freedom, -2 ln 0.05 (a likelihood-ratio test at
#: 5%), so ln 20 = 2.996.
MIN_GAIN = math.log(20.0)
#: Precision of the prior on (slope - 1, offset), in units of the summed log loss (data-independent:
#: it only matters when the validation rows nearly separate, where it keeps the slope finite).
PRIOR = 0.1


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope * u + offset)`` for a logit u; the identity map is (1, 0)."""

    slope: float = 1.0
    offset: float = 0.0
    rows: int = 0  # rows it was fitted on (0: not fitted, the identity)
    # The fitted map's log-likelihood gain over the identity on those rows (None: not recorded,
    # a map saved before the test); below ``MIN_GAIN`` the map is the identity.
    gain: float | None = None

    @property
    def kept(self) -> bool:
        """Whether a fitted map is applied (False: the model's own probabilities)."""
        return self.rows > 0 and (self.gain is None or self.gain >= MIN_GAIN)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for ``logits`` (any shape)."""
        return sigmoid(self.slope * np.asarray(logits, dtype=np.float64) + self.offset)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"slope": self.slope, "offset": self.offset, "rows": self.rows}
        if self.gain is not None:
            data["gain"] = self.gain
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration:
        """The saved map; a model saved before calibration existed gets the identity, one saved
        before the likelihood-ratio test (no ``gain``) its map, as it was applied then."""
        if not data:
            return cls()
        slope, offset = float(data["slope"]), float(data["offset"])
        if not (math.isfinite(slope) and math.isfinite(offset)):
            raise ValueError("calibration parameters must be finite")
        gain = None if data.get("gain") is None else float(data["gain"])
        if gain is not None and not math.isfinite(gain):
            raise ValueError("calibration parameters must be finite")
        return cls(slope, offset, int(data.get("rows", 0)), gain)


def fit_platt(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    base_rate: float | None = None,
    base_rows: int = 0,
    iterations: int = 100,
) -> Calibration:
    """Fit ``slope`` and ``offset`` by damped Newton steps on the log loss plus the prior.

    ``logits``: shape (n,), the model's uncalibrated scores; ``labels``: 0/1, shape (n,). Minimises
    ``sum(log(1 + e^z) - y z) + PRIOR / 2 ((slope - 1)^2 + offset^2)``, z = slope u + offset (convex,
    finite even on separable rows); the identity (with the gain recorded) unless the fit gains at
    least ``MIN_GAIN`` over it on these rows (module docstring). With ``base_rate`` in (0, 1), the
    label rate of ``base_rows`` rows that include these, a kept map's offset then moves toward it
    (module docstring).
    Returns the identity when there are fewer than ``MIN_ROWS`` rows or one class only.
    """
    u = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    positives = float(y.sum())
    negatives = float(len(y) - positives)
    if len(y) < MIN_ROWS or positives == 0 or negatives == 0:
        return Calibration()
    design = np.column_stack([u, np.ones_like(u)])
    identity = np.array([1.0, 0.0])

    def log_loss(params: np.ndarray) -> float:
        z = design @ params
        return float(np.sum(np.logaddexp(0.0, z) - y * z))

    def loss(params: np.ndarray) -> float:
        return log_loss(params) + 0.5 * PRIOR * float(np.sum((params - identity) ** 2))

    params = identity.copy()
    current = loss(params)
    for _ in range(iterations):
        p = sigmoid(design @ params)
        gradient = design.T @ (p - y) + PRIOR * (params - identity)
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + PRIOR * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        # Newton's step, halved until the loss goes down (a full step can overshoot far away).
        scale = 1.0
        while scale > 1e-6 and loss(params - scale * step) > current:
            scale /= 2
        params = params - scale * step
        previous, current = current, loss(params)
        if previous - current < 1e-12 * max(1.0, abs(current)):
            break
    if not np.all(np.isfinite(params)):
        return Calibration()
    slope, offset = float(params[0]), float(params[1])
    gain = log_loss(identity) - log_loss(params)
    if gain < MIN_GAIN:
        return Calibration(1.0, 0.0, len(y), gain)
    if base_rate is not None and 0.0 < base_rate < 1.0 and base_rows > len(y):
        rate = positives / len(y)
        p = sigmoid(slope * u + offset)
        noise_share = float(np.mean(p * (1 - p))) / (rate * (1 - rate))
        k = min(1.0, noise_share)
        offset += k * (_logit(base_rate) - _logit(rate))
    return Calibration(slope, offset, len(y), gain)


def _logit(rate: float) -> float:
    return math.log(rate / (1.0 - rate))
