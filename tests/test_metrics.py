"""Unit tests for fedlearn.metrics, against scikit-learn and small cases computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from fedlearn import metrics
from fedlearn.errors import ConfigError, DataError
from fedlearn.metrics import UndefinedMetricWarning


def _data(rows: int = 2000, seed: int = 3, rounding: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities with real signal and many ties (scores rounded)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    logits = 1.2 * y + rng.normal(size=rows) - 0.6
    return y, np.round(1 / (1 + np.exp(-logits)), rounding)


# ----------------------------------------------------------------------- against scikit-learn
@pytest.mark.parametrize("rounding", [1, 2, 12])
def test_auc_matches_sklearn_with_and_without_ties(rounding: int) -> None:
    y, p = _data(rounding=rounding)
    assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


def test_roc_curve_matches_sklearn() -> None:
    y, p = _data()
    fpr, tpr, thresholds = metrics.roc_curve(y, p)
    sk_fpr, sk_tpr, sk_thresholds = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds[1:], sk_thresholds[1:])
    assert thresholds[0] == np.inf


def test_ks_is_max_distance_between_roc_and_diagonal() -> None:
    y, p = _data()
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, p)
    assert metrics.ks(y, p) == pytest.approx(np.max(sk_tpr - sk_fpr), abs=1e-12)


def test_log_loss_matches_sklearn() -> None:
    y, p = _data(rounding=6)
    p = np.clip(p, 0.001, 0.999)
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)


def test_log_loss_clips_probabilities() -> None:
    # A confident wrong answer costs -log(eps), not infinity.
    assert metrics.log_loss([1, 0], [0.0, 0.0], eps=1e-6) == pytest.approx(-math.log(1e-6) / 2)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        metrics.log_loss([1, 0], [1.5, 0.2])


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=2, max_size=40),
    seed=st.integers(0, 1000),
)
def test_auc_property_matches_sklearn(labels: list[int], seed: int) -> None:
    y = np.array(labels)
    if y.min() == y.max():
        return
    scores = np.random.default_rng(seed).integers(0, 5, y.size).astype(float)  # many ties
    assert metrics.auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)


# ------------------------------------------------------------------------------- by hand
# Ten rows, scores distinct, positives at ranks 1, 2, 4 and 7 (rank 1 = highest score).
Y_HAND = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
S_HAND = np.linspace(0.95, 0.05, 10)


def test_hand_case_top_k() -> None:
    assert metrics.recall_at_top(Y_HAND, S_HAND, 0.1) == 0.25
    assert metrics.recall_at_top(Y_HAND, S_HAND, 0.3) == 0.5
    assert metrics.recall_at_top(Y_HAND, S_HAND, 0.4) == 0.75
    # top 30% holds 2 positives in 3 rows; base rate is 4/10.
    assert metrics.lift_at_top(Y_HAND, S_HAND, 0.3) == pytest.approx((2 / 3) / 0.4)
    assert metrics.lift_at_top(Y_HAND, S_HAND, 1.0) == pytest.approx(1.0)
    # 15% of 10 rows is 1.5 rows: the 2nd row (a positive) counts half.
    assert metrics.recall_at_top(Y_HAND, S_HAND, 0.15) == pytest.approx(0.375)


def test_hand_case_auc_ks_gains() -> None:
    # Positives at ranks 1, 2, 4, 7 beat 6, 6, 5 and 3 of the 6 negatives.
    assert metrics.auc(Y_HAND, S_HAND) == pytest.approx(20 / 24)
    # After rank 4: TPR 3/4, FPR 1/6 -> 7/12, the largest gap.
    assert metrics.ks(Y_HAND, S_HAND) == pytest.approx(7 / 12)
    targeted, found = metrics.gains_curve(Y_HAND, S_HAND)
    np.testing.assert_allclose(targeted, np.arange(11) / 10)
    np.testing.assert_allclose(found, [0, 1, 2, 2, 3, 3, 3, 4, 4, 4, 4] / np.array(4))


def test_ties_split_in_proportion_not_by_row_order() -> None:
    # All scores equal: any top fraction finds that fraction of the positives, whatever the order.
    y = np.array([1] * 5 + [0] * 45)
    constant = np.full(50, 0.3)
    assert metrics.recall_at_top(y, constant, 0.1) == pytest.approx(0.1)
    assert metrics.lift_at_top(y, constant, 0.2) == pytest.approx(1.0)
    assert metrics.lift_at_top(y[::-1], constant, 0.2) == pytest.approx(1.0)
    assert metrics.auc(y, constant) == 0.5
    assert metrics.ks(y, constant) == 0.0
    targeted, found = metrics.gains_curve(y, constant)
    assert targeted.tolist() == [0.0, 1.0] and found.tolist() == [0.0, 1.0]


def test_recall_reads_the_gains_curve() -> None:
    y, p = _data()
    targeted, found = metrics.gains_curve(y, p)
    for fraction in (0.1, 0.25, 0.4, 0.77):
        assert metrics.recall_at_top(y, p, fraction) == pytest.approx(
            np.interp(fraction, targeted, found)
        )
        assert metrics.lift_at_top(y, p, fraction) == pytest.approx(
            metrics.recall_at_top(y, p, fraction) / fraction
        )


def test_metrics_do_not_depend_on_row_order() -> None:
    y, p = _data(rounding=1)
    order = np.random.default_rng(0).permutation(y.size)
    assert metrics.summary(y, p) == metrics.summary(y[order], p[order])


# -------------------------------------------------------------------------------- deciles
def test_deciles_equal_groups() -> None:
    scores = np.arange(100.0)
    d = metrics.deciles(scores)
    assert d.dtype == np.int64
    assert d[99] == 1 and d[0] == 10
    assert np.bincount(d).tolist() == [0] + [10] * 10
    assert np.all(np.diff(d) <= 0)  # higher score never in a worse decile


@pytest.mark.parametrize("rows", [1, 2, 7, 10, 11, 99, 1001])
def test_deciles_any_n(rows: int) -> None:
    scores = np.random.default_rng(rows).random(rows)
    d = metrics.deciles(scores)
    assert d.min() >= 1 and d.max() <= 10
    assert d[np.argmax(scores)] == 1
    order = np.argsort(-scores)
    assert np.all(np.diff(d[order]) >= 0)
    if rows >= 10:
        assert set(d.tolist()) == set(range(1, 11))
        # Each decile within one row of n/10.
        assert np.abs(np.bincount(d)[1:] - rows / 10).max() < 1


def test_deciles_ties_share_a_decile() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.5, 0.2, 0.3, 0.4, 0.6])
    d = metrics.deciles(scores)
    assert d.tolist() == [1, 3, 3, 3, 10, 3, 9, 8, 7, 2]
    assert metrics.deciles(np.full(5, 0.4)).tolist() == [1] * 5


def test_lift_by_decile() -> None:
    d = metrics.lift_by_decile(Y_HAND, S_HAND)
    # One row per decile: lift is label / base rate 0.4.
    np.testing.assert_allclose(d, Y_HAND / 0.4)
    y, p = _data()
    lifts = metrics.lift_by_decile(y, p)
    assert lifts.shape == (10,)
    assert lifts[0] > 1.5 > 0.5 > lifts[-1]
    # Three rows land in deciles 1, 4 and 7; the other deciles are empty (NaN).
    small = metrics.lift_by_decile([1, 0, 1], [0.3, 0.2, 0.1])
    nan = np.nan
    np.testing.assert_allclose(small, [1.5, nan, nan, 0.0, nan, nan, 1.5, nan, nan, nan])


# -------------------------------------------------------------------- undefined and bad input
def test_one_class_warns_and_returns_nan() -> None:
    y, s = np.zeros(20, dtype=int), np.linspace(0, 1, 20)
    for func in (metrics.auc, metrics.ks):
        with pytest.warns(UndefinedMetricWarning):
            assert math.isnan(func(y, s))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(metrics.recall_at_top(y, s, 0.1))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(metrics.lift_at_top(y, s, 0.1))
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(metrics.lift_by_decile(y, s)).all()
    with pytest.warns(UndefinedMetricWarning):
        fpr, tpr, _ = metrics.roc_curve(y, s)
    assert np.isnan(tpr).all() and not np.isnan(fpr).any()
    assert math.isfinite(metrics.log_loss(y, s))


def test_summary_keys_and_values() -> None:
    y, p = _data()
    result = metrics.summary(y, p)
    expected_keys = {"auc", "ks", "log_loss", "positives", "rows", "base_rate"}
    expected_keys |= {
        f"{kind}@{pct}" for kind in ("recall", "lift") for pct in (10, 20, 30, 40, 50)
    }
    assert set(result) == expected_keys
    assert result["rows"] == 2000 and result["positives"] == int(y.sum())
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert result["recall@40"] == metrics.recall_at_top(y, p, 0.4)
    assert result["lift@10"] == metrics.lift_at_top(y, p, 0.1)
    assert result["recall@10"] < result["recall@50"] < 1
    json.dumps(result)  # plain Python numbers


def test_summary_one_class_warns_once() -> None:
    with pytest.warns(UndefinedMetricWarning) as record:
        result = metrics.summary(np.ones(5, dtype=int), np.linspace(0.1, 0.9, 5))
    assert len(record) == 1
    assert math.isnan(result["auc"])
    assert result["recall@10"] == pytest.approx(0.1)  # all positives: recall defined
    assert result["lift@10"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
        ([0, 1], [0.1, 0.2, 0.3], "2 rows but y_score has 3"),
        ([0, 1], [0.1, np.nan], "non-finite"),
        ([], [], "no rows"),
    ],
)
def test_bad_input(y: list[int], s: list[float], message: str) -> None:
    with pytest.raises(DataError, match=message):
        metrics.auc(y, s)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        metrics.recall_at_top(Y_HAND, S_HAND, fraction)


def test_boolean_labels_accepted() -> None:
    assert metrics.auc(Y_HAND.astype(bool), S_HAND) == metrics.auc(Y_HAND, S_HAND)
