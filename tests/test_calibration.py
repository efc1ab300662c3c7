"""Platt scaling (fedlearn.calibration): it moves the mean prediction to the observed rate on rows it
was not fitted on, keeps the order of the scores, and stays the identity where it cannot be fitted."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.calibration import MIN_GAIN, Calibration, fit_platt
from fedlearn.model import sigmoid


def _miscalibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits u whose true probability is sigmoid(0.5 u - 1.5): too spread and off-centre."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, 2.5, rows)
    y = (rng.random(rows) < sigmoid(0.5 * u - 1.5)).astype(float)
    return u, y


def test_calibration_moves_the_mean_to_the_observed_rate_on_held_out_rows() -> None:
    u_fit, y_fit = _miscalibrated(2000, seed=1)
    u_new, y_new = _miscalibrated(5000, seed=2)
    observed = y_new.mean()
    before = sigmoid(u_new).mean()
    assert abs(before / observed - 1) > 0.5  # the raw scores are far off
    calibration = fit_platt(u_fit, y_fit)
    after = calibration.apply(u_new).mean()
    assert abs(after / observed - 1) < 0.05
    assert calibration.slope == pytest.approx(0.5, abs=0.1)
    assert calibration.offset == pytest.approx(-1.5, abs=0.2)


def test_calibration_keeps_the_order_of_the_scores() -> None:
    u, y = _miscalibrated(500, seed=3)
    p = fit_platt(u, y).apply(u)
    assert np.array_equal(np.argsort(u, kind="stable"), np.argsort(p, kind="stable"))


def test_calibration_is_the_identity_without_enough_rows_or_both_classes() -> None:
    u = np.linspace(-2, 2, 100)
    assert fit_platt(u[:10], np.r_[np.zeros(5), np.ones(5)]) == Calibration()
    assert fit_platt(u, np.zeros(100)) == Calibration()
    np.testing.assert_allclose(Calibration().apply(u), sigmoid(u))


def test_calibration_round_trips_and_refuses_non_finite_values() -> None:
    calibration = Calibration(0.7, -0.2, 300)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert Calibration.from_dict(None) == Calibration()
    with pytest.raises(ValueError, match="finite"):
        Calibration.from_dict({"slope": float("nan"), "offset": 0.0})


def test_calibration_stays_finite_and_confident_on_separable_rows() -> None:
    # Nearly separable validation rows (as on FATE's breast split): the fit must stay finite and
    # must not cap the probabilities near 1 - 1/N+ as Platt's smoothed targets did.
    rng = np.random.default_rng(5)
    y = (rng.random(90) < 0.6).astype(float)
    u = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.5, 3.0, 90)
    calibration = fit_platt(u, y)
    assert np.isfinite(calibration.slope) and np.isfinite(calibration.offset)
    assert calibration.slope > 1.0  # separable rows ask for more confidence, not less
    p = calibration.apply(u)
    assert p[y == 1].min() > 0.5 and p[y == 0].max() < 0.5
    assert p.max() > 1 - 1 / (y.sum() + 2)  # above the old smoothed target's cap
    assert calibration.slope < 50  # the prior toward the identity keeps it finite


def test_calibration_is_near_the_identity_for_well_calibrated_scores() -> None:
    rng = np.random.default_rng(6)
    u = rng.normal(-1.0, 1.5, 20_000)
    y = (rng.random(len(u)) < sigmoid(u)).astype(float)
    calibration = fit_platt(u, y)
    assert calibration.slope == pytest.approx(1.0, abs=0.05)
    assert calibration.offset == pytest.approx(0.0, abs=0.05)


def test_base_rate_shifts_the_log_odds_by_the_labels_noise_share() -> None:
    u, y = _miscalibrated(300, seed=4)
    free = fit_platt(u, y)
    level = fit_platt(u, y, base_rate=0.2, base_rows=1500)
    rate = y.mean()
    full = np.log(0.2 / 0.8) - np.log(rate / (1 - rate))
    assert level.slope == free.slope
    shift = level.offset - free.offset
    assert np.sign(shift) == np.sign(full) and 0.3 * abs(full) < abs(shift) <= abs(full) + 1e-12
    same = fit_platt(u, y, base_rate=rate, base_rows=1500)
    assert same.offset == pytest.approx(free.offset)  # the same rate: no change
    assert fit_platt(u, y, base_rate=1.0, base_rows=1500) == free  # not a rate: ignored
    assert fit_platt(u, y, base_rate=0.2) == free  # no base rows beyond these: ignored


def test_base_rate_hardly_moves_a_nearly_separable_map() -> None:
    """Where the scores say the labels, the validation rate is what the scores explain."""
    rng = np.random.default_rng(8)
    u = rng.normal(0.0, 6.0, 300)
    y = (rng.random(300) < sigmoid(3 * u)).astype(float)
    free = fit_platt(u, y)
    level = fit_platt(u, y, base_rate=y.mean() + 0.05, base_rows=1500)
    assert abs(level.offset - free.offset) < 0.05


def test_the_rate_of_every_labelled_row_levels_small_validation_sets_better() -> None:
    """320 validation rows of 1,600 labelled ones (a 2,000-user set): over 200 draws, the level set
    from all 1,600 labels is nearer the population's rate than the validation rows' own fit."""
    population = _miscalibrated(200_000, seed=5)
    observed = population[1].mean()
    rng = np.random.default_rng(6)
    own: list[float] = []
    pooled: list[float] = []
    for _ in range(200):
        rows = rng.choice(len(population[0]), 1600, replace=False)
        u, y = population[0][rows], population[1][rows]
        validation = slice(0, 320)
        for errors, base_rate in ((own, None), (pooled, float(y.mean()))):
            calibration = fit_platt(
                u[validation], y[validation], base_rate=base_rate, base_rows=1600
            )
            errors.append(abs(calibration.apply(population[0][:20_000]).mean() / observed - 1))
    assert np.mean(pooled) < 0.8 * np.mean(own), (np.mean(pooled), np.mean(own))


def test_a_map_the_rows_do_not_ask_for_is_the_identity() -> None:
    """Scores that are already probabilities, 100 validation rows: the fitted map gains what noise
    gains, and the likelihood-ratio test leaves the scores alone in about 95% of draws (at 5%)."""
    rng = np.random.default_rng(9)
    kept = 0
    for _ in range(200):
        u = rng.normal(-1.0, 1.5, 100)
        y = (rng.random(100) < sigmoid(u)).astype(float)
        calibration = fit_platt(u, y, base_rate=0.3, base_rows=500)
        assert calibration.gain is not None and calibration.gain >= 0.0
        if calibration.kept:
            kept += 1
        else:  # the identity, with what the fit would have gained recorded
            assert (calibration.slope, calibration.offset, calibration.rows) == (1.0, 0.0, 100)
            assert calibration.gain < MIN_GAIN
            np.testing.assert_allclose(calibration.apply(u), sigmoid(u))
    assert 2 <= kept <= 20, kept  # 10 expected


def test_a_map_is_kept_where_the_rows_show_the_scores_are_off() -> None:
    u, y = _miscalibrated(300, seed=10)
    calibration = fit_platt(u, y)
    assert calibration.kept and calibration.gain is not None
    z = calibration.slope * u + calibration.offset
    identity_loss = np.sum(np.logaddexp(0, u) - y * u)
    assert calibration.gain == pytest.approx(identity_loss - np.sum(np.logaddexp(0, z) - y * z))
    assert calibration.gain > 10 * MIN_GAIN


def test_a_map_saved_before_the_test_is_still_applied() -> None:
    old = Calibration.from_dict({"slope": 0.7, "offset": -0.2, "rows": 300})
    assert old.kept and old.gain is None and "gain" not in old.to_dict()
    new = Calibration(1.0, 0.0, 90, 0.5)
    assert not new.kept and Calibration.from_dict(new.to_dict()) == new
    with pytest.raises(ValueError, match="finite"):
        Calibration.from_dict({"slope": 1.0, "offset": 0.0, "rows": 90, "gain": float("inf")})
