"""bench/quality.py's paired standard error of an AUC difference (DeLong): it must agree with a
bootstrap over the same users, vanish for identical scores, and shrink with more users."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import paired_auc_difference_se
from fedlearn import metrics


def _scores(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.1).astype(float)
    signal = rng.standard_normal(rows) + y
    return y, signal + 0.5 * rng.standard_normal(rows), signal + 0.5 * rng.standard_normal(rows)


def test_paired_auc_se_agrees_with_a_bootstrap() -> None:
    y, p, q = _scores(2000, seed=3)
    rng = np.random.default_rng(4)
    differences = []
    for _ in range(300):
        rows = rng.integers(0, len(y), len(y))
        differences.append(metrics.auc(y[rows], p[rows]) - metrics.auc(y[rows], q[rows]))
    assert paired_auc_difference_se(y, p, q) == pytest.approx(np.std(differences), rel=0.2)


def test_paired_auc_se_is_zero_for_identical_scores_and_shrinks_with_users() -> None:
    y, p, q = _scores(2000, seed=5)
    assert paired_auc_difference_se(y, p, p) == 0.0
    y_big, p_big, q_big = _scores(20_000, seed=5)
    assert paired_auc_difference_se(y_big, p_big, q_big) < 0.5 * paired_auc_difference_se(y, p, q)
    assert np.isnan(paired_auc_difference_se(np.r_[1.0, 0.0, 0.0], p[:3], q[:3]))


@pytest.mark.parametrize("name", ["give_credit", "vehicle0", "vehicle3"])
def test_derived_fate_sets_are_vertical_0_1_pairs(name: str) -> None:
    """bench.quality's sets made from FATE files that are not a 0/1 guest/host pair as published."""
    from bench.quality import fate_frames

    guest, host = fate_frames(name)
    labels = guest["y"].astype(int)
    assert set(labels) == {0, 1} and 0.05 < labels.mean() < 0.3
    assert list(guest["id"]) == list(host["id"])
    shared = set(guest.columns) & set(host.columns)
    assert shared == {"id"} or name.startswith("vehicle")  # vehicle's files both name x0..x8
    assert len(guest.columns) > 2 and len(host.columns) > 2
