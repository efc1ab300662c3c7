"""Validation metrics for a binary scorer: pure functions ``(y_true, y_score, *, ...)``.

``y_true`` holds 0/1 labels (or booleans), ``y_score`` finite scores where higher means more likely
positive; both are 1-D and of the same length n >= 1. Bad input raises DataError (bad labels,
mismatched lengths, NaN scores) or ConfigError (a fraction outside (0, 1]).

A metric that is undefined on the data given (AUC with one class only; recall without positives)
warns with :class:`UndefinedMetricWarning` and returns NaN, as scikit-learn does.

Ties in scores are never broken by row order, so no metric depends on how the rows are sorted:

- the ROC and gains curves have one point per distinct score;
- "the top fraction f of scores" is the gains curve read at f, i.e. the boundary tie group (and a
  boundary row when f * n is not a whole number) counts in proportion: the expected result if ties
  were broken at random. So ``lift_at_top(y, s, f) == recall_at_top(y, s, f) / f``, and a constant
  scorer has lift exactly 1;
- deciles give tied scores the same decile (see :func:`deciles`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fedlearn.errors import ConfigError, DataError

TOP_PERCENTS = (10, 20, 30, 40, 50)


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on the data given (for example one class only); NaN is returned."""


class _Groups(NamedTuple):
    """Rows grouped by distinct score, highest score first."""

    scores: np.ndarray  # distinct scores, descending
    rows: np.ndarray  # rows per group
    positives: np.ndarray  # positives per group

    @property
    def total_rows(self) -> int:
        return int(self.rows.sum())

    @property
    def total_positives(self) -> int:
        return int(self.positives.sum())


def _check(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise DataError(
            f"y_true and y_score must be 1-D, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.shape != scores.shape:
        raise DataError(f"y_true has {labels.size} rows but y_score has {scores.size}")
    if labels.size == 0:
        raise DataError("no rows to evaluate")
    if not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))]
        raise DataError(f"labels must be 0 or 1; found {bad.size} other values, first {bad[0]!r}")
    if not np.isfinite(scores).all():
        first = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise DataError(f"y_score has non-finite values, first at row {first} ({scores[first]!r})")
    return labels.astype(np.int64), scores


def _groups(y_true: ArrayLike, y_score: ArrayLike) -> _Groups:
    labels, scores = _check(y_true, y_score)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    rows = np.diff(np.r_[starts, sorted_scores.size])
    positives = np.add.reduceat(labels[order], starts)
    return _Groups(sorted_scores[starts], rows, positives)


def _warn(message: str) -> None:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def _check_fraction(fraction: float) -> float:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


# ------------------------------------------------------------------------------------- curves
def roc_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score plus the origin (threshold +inf).

    Same as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``. With one class only, the
    undefined rate is NaN (with a warning).
    """
    groups = _groups(y_true, y_score)
    positives = groups.total_positives
    negatives = groups.total_rows - positives
    if positives == 0 or negatives == 0:
        _warn(f"ROC curve is undefined with {'no positives' if positives == 0 else 'no negatives'}")
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0, np.cumsum(groups.positives)] / positives
        fpr = np.r_[0, np.cumsum(groups.rows - groups.positives)] / negatives
    return fpr, tpr, np.r_[np.inf, groups.scores]


def gains_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gains: (fraction_targeted, fraction_of_positives), from (0, 0) to (1, 1).

    One point per distinct score, highest first; linear between points. NaN fractions of positives
    (with a warning) when there are no positives.
    """
    groups = _groups(y_true, y_score)
    targeted = np.r_[0, np.cumsum(groups.rows)] / groups.total_rows
    if groups.total_positives == 0:
        _warn("gains curve is undefined with no positives")
        return targeted, np.full_like(targeted, np.nan)
    return targeted, np.r_[0, np.cumsum(groups.positives)] / groups.total_positives


# ---------------------------------------------------------------------------------- scalars
def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half). NaN with a warning for one class only."""
    groups = _groups(y_true, y_score)
    positives = groups.total_positives
    negatives = groups.total_rows - positives
    if positives == 0 or negatives == 0:
        _warn("AUC is undefined with only one class in y_true")
        return math.nan
    negatives_so_far = np.cumsum(groups.rows - groups.positives)
    group_negatives = groups.rows - groups.positives
    # Each positive beats every negative in lower groups and ties half of its own group's.
    wins = groups.positives * ((negatives - negatives_so_far) + 0.5 * group_negatives)
    return float(wins.sum() / (positives * negatives))


def ks(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic: max |TPR - FPR| over thresholds. NaN for one class only."""
    groups = _groups(y_true, y_score)
    positives = groups.total_positives
    negatives = groups.total_rows - positives
    if positives == 0 or negatives == 0:
        _warn("KS is undefined with only one class in y_true")
        return math.nan
    tpr = np.cumsum(groups.positives) / positives
    fpr = np.cumsum(groups.rows - groups.positives) / negatives
    return float(np.abs(tpr - fpr).max())


def log_loss(y_true: ArrayLike, y_prob: ArrayLike, *, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood; probabilities are clipped to [eps, 1 - eps] first.

    Raises DataError for probabilities outside [0, 1].
    """
    labels, probs = _check(y_true, y_prob)
    if probs.min() < 0 or probs.max() > 1:
        raise DataError("log loss needs probabilities in [0, 1]")
    clipped = np.clip(probs, eps, 1 - eps)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)))


def _recall_at(groups: _Groups, fraction: float) -> float:
    targeted = np.r_[0, np.cumsum(groups.rows)] / groups.total_rows
    captured = np.r_[0, np.cumsum(groups.positives)]
    return float(np.interp(fraction, targeted, captured) / groups.total_positives)


def recall_at_top(y_true: ArrayLike, y_score: ArrayLike, fraction: float) -> float:
    """Share of all positives found in the top ``fraction`` of scores (ties count in proportion).

    NaN with a warning when there are no positives.
    """
    fraction = _check_fraction(fraction)
    groups = _groups(y_true, y_score)
    if groups.total_positives == 0:
        _warn("recall is undefined with no positives")
        return math.nan
    return _recall_at(groups, fraction)


def lift_at_top(y_true: ArrayLike, y_score: ArrayLike, fraction: float) -> float:
    """Positive rate in the top ``fraction`` of scores divided by the overall positive rate.

    Equals ``recall_at_top(...) / fraction``. NaN with a warning when there are no positives.
    """
    fraction = _check_fraction(fraction)
    groups = _groups(y_true, y_score)
    if groups.total_positives == 0:
        _warn("lift is undefined with no positives")
        return math.nan
    return _recall_at(groups, fraction) / fraction


# ---------------------------------------------------------------------------------- deciles
def deciles(scores: ArrayLike) -> np.ndarray:
    """Decile per row (int64, 1 = highest 10% of scores, 10 = lowest), for any n >= 1.

    A row's decile is ``10 * (rows with a strictly higher score) // n + 1``, so tied scores always
    share a decile and the result does not depend on row order. With ties, or with n not a multiple
    of 10, deciles are unequal in size; with n < 10 some deciles are empty.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise DataError(f"scores must be 1-D and non-empty, got shape {values.shape}")
    if not np.isfinite(values).all():
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"scores have non-finite values, first at row {first}")
    ascending = np.sort(values)
    higher = values.size - np.searchsorted(ascending, values, side="right")
    return (10 * higher) // values.size + 1


def lift_by_decile(y_true: ArrayLike, y_score: ArrayLike) -> np.ndarray:
    """Lift of each decile 1..10 (float array of 10): its positive rate over the overall rate.

    An empty decile (n < 10, or ties) has NaN. All NaN, with a warning, when there are no positives.
    """
    labels, scores = _check(y_true, y_score)
    decile = deciles(scores)
    rows = np.bincount(decile, minlength=11)[1:]
    positives = np.bincount(decile, weights=labels, minlength=11)[1:]
    if labels.sum() == 0:
        _warn("lift is undefined with no positives")
        return np.full(10, np.nan)
    base_rate = labels.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, positives / rows / base_rate, np.nan)


# ---------------------------------------------------------------------------------- summary
def summary(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, Any]:
    """The metrics stored with a model: auc, ks, log_loss, positives, rows, base_rate, and
    ``recall@P`` / ``lift@P`` for the top P = 10, 20, 30, 40, 50 percent of scores.

    Values are plain Python ints and floats (JSON-safe; undefined ones are NaN). One warning is
    given when metrics are undefined, not one per metric.
    """
    labels, probs = _check(y_true, y_prob)
    positives = int(labels.sum())
    if positives in (0, labels.size):
        _warn("only one class in y_true: auc, ks and (without positives) recall and lift are NaN")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result: dict[str, Any] = {
            "auc": auc(labels, probs),
            "ks": ks(labels, probs),
            "log_loss": log_loss(labels, probs),
            "positives": positives,
            "rows": int(labels.size),
            "base_rate": positives / labels.size,
        }
        for percent in TOP_PERCENTS:
            result[f"recall@{percent}"] = recall_at_top(labels, probs, percent / 100)
        for percent in TOP_PERCENTS:
            result[f"lift@{percent}"] = lift_at_top(labels, probs, percent / 100)
    return result
