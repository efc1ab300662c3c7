"""What a growth team decides with: "target the top N%, expect M buyers", with uncertainty.

Pure functions of validation labels ``y`` (0/1, shape (n,)) and scores (shape (n,)):

- :func:`targeting_table`: for each top fraction of users by score, the users targeted, the buyers
  among them, the share of all buyers captured, the lift over random targeting, each with a
  bootstrap confidence band (Poisson bootstrap over the validation users, seeded);
- :func:`calibration_bins`: predicted probability against the observed rate, per score bin.

The bands are percentile intervals of ``replicates`` resamples; with few positives they are wide,
which is the point: a lift of 3 measured on 13 buyers is not a lift of 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP_PERCENTS = (5, 10, 20, 30, 40, 50)
#: Below this many validation positives the report warns that its figures are not to be trusted.
MIN_POSITIVES = 300


@dataclass(frozen=True)
class Band:
    """A point estimate and its confidence interval [low, high]."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class TargetingRow:
    """Targeting the top ``percent``% of users by score, on the validation users."""

    percent: int
    users: int
    buyers: Band  # positives among the users targeted
    share: Band  # of all positives, in [0, 1]
    lift: Band  # share / (percent / 100); 1.0 is random targeting


def targeting_table(
    y: np.ndarray,
    score: np.ndarray,
    *,
    percents: tuple[int, ...] = TOP_PERCENTS,
    replicates: int = 400,
    confidence: float = 0.9,
    seed: int = 0,
) -> list[TargetingRow]:
    """One :class:`TargetingRow` per percent; bands at ``confidence`` from ``replicates`` resamples.

    Each resample weighs every user by an independent Poisson(1) count (the Poisson bootstrap: one
    sort, then O(n) per resample). Raises ValueError for mismatched shapes or an empty set.
    """
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if y.shape != score.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"y and score must be equal-length, non-empty vectors: {y.shape}, {score.shape}"
        )
    order = np.argsort(-score, kind="stable")
    y_sorted = y[order]
    n = y.size
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(n), rng.poisson(1.0, size=(replicates, n)).astype(np.float64)])
    cum_users = np.cumsum(weights, axis=1)
    cum_buyers = np.cumsum(weights * y_sorted, axis=1)
    total_users, total_buyers = cum_users[:, -1], cum_buyers[:, -1]
    alpha = (1 - confidence) / 2
    rows = []
    for percent in percents:
        fraction = percent / 100
        # The prefix of the ranking that holds `fraction` of each resample's users.
        cut = np.array(
            [
                np.searchsorted(cum_users[r], fraction * total_users[r], side="right")
                for r in range(len(weights))
            ]
        )
        cut = np.clip(cut, 1, n)
        picked = np.arange(len(weights))
        buyers = cum_buyers[picked, cut - 1]
        users = cum_users[picked, cut - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total_buyers > 0, buyers / total_buyers, np.nan)
            lift = share / (users / total_users)
        rows.append(
            TargetingRow(
                percent=percent,
                users=int(users[0]),
                buyers=_band(buyers, alpha),
                share=_band(share, alpha),
                lift=_band(lift, alpha),
            )
        )
    return rows


def _band(values: np.ndarray, alpha: float) -> Band:
    resampled = values[1:][np.isfinite(values[1:])]
    if resampled.size == 0:
        return Band(float(values[0]), float("nan"), float("nan"))
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return Band(float(values[0]), float(low), float(high))


@dataclass(frozen=True)
class CalibrationBin:
    """Users whose score falls in one bin: their mean predicted probability and observed rate."""

    users: int
    predicted: float
    observed: float


def calibration_bins(y: np.ndarray, score: np.ndarray, *, bins: int = 10) -> list[CalibrationBin]:
    """Equal-count bins by score (at most ``bins``; empty bins dropped), lowest scores first."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    result = []
    for chunk in np.array_split(order, min(bins, max(1, y.size))):
        if chunk.size:
            result.append(
                CalibrationBin(int(chunk.size), float(score[chunk].mean()), float(y[chunk].mean()))
            )
    return result
