"""Tests for fedlearn.report: the self-contained HTML page built from A's model metadata."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn import metrics, report
from fedlearn.errors import ConfigError, DataError
from fedlearn.report import write_report
from fedlearn.targeting import targeting_table


def _scores(rows: int, signal: float, rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(signal * y + rng.normal(size=rows) - signal / 2)))


def _meta(rows: int = 600, seed: int = 11) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    joint, a_only = _scores(rows, 2.0, rng, y), _scores(rows, 0.8, rng, y)
    return {
        "model_id": "m-20240101-abc",
        "created_at": "2024-01-01T12:00:00Z",
        "partner": "party-b",
        "job": {"label": "vip_30d", "epochs": 3, "target_description": "30-day VIP buyers"},
        "metrics": {"joint": metrics.summary(y, joint), "a_only": metrics.summary(y, a_only)},
        "curves": {
            "joint": {"y": y.tolist(), "score": joint.tolist()},
            "a_only": {"y": y.tolist(), "score": a_only.tolist()},
        },
        "loss_history": [
            {"epoch": e, "loss": 0.69 - 0.03 * e, "weight_change": 0.1} for e in (1, 2, 3)
        ],
        "a_weights": {f"a_col_{i}": float(w) for i, w in enumerate(rng.normal(size=35))},
        "intercept": -0.25,
        "timings": {"alignment": 2.5, "training": 185.0},
        "rows": {"aligned": 5000, "validation": rows},
    }


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def _img_titles(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)


def test_full_report(tmp_path: Path) -> None:
    meta = _meta()
    meta["b_weights"] = {"b_secret_column": 9.87654}  # must never be drawn or printed
    out = tmp_path / "reports" / "m1"
    path = write_report(meta, out)
    assert path == out.absolute() / "report.html"
    page = path.read_text(encoding="utf-8")

    # Self-contained: every image is an inline PNG, and nothing else is written.
    assert _img_sources(page) and all(
        src.startswith("data:image/png;base64,") for src in _img_sources(page)
    )
    assert _img_titles(page)[:4] == [
        "Cumulative gains",
        "Lift by decile",
        "Calibration",
        "ROC curves",
    ]
    assert [p.name for p in out.iterdir()] == ["report.html"]

    joint, a_only = meta["metrics"]["joint"], meta["metrics"]["a_only"]
    assert f"{joint['auc']:.4f}" in page and f"{a_only['auc']:.4f}" in page
    assert f"{joint['auc'] - a_only['auc']:+.4f}" in page
    reading = re.search(r'<p class="reading">(.*?)</p>', page, re.S)
    assert reading is not None
    assert (
        f"captures {100 * joint['recall@40']:.0f}% of 30-day VIP buyers in the top 40%"
        in reading.group(1)
    )
    assert f"vs {100 * a_only['recall@40']:.0f}% for A" in reading.group(1)
    assert "3 min 5 s" in page and "2.5 s" in page
    assert "party-b" in page and "m-20240101-abc" in page
    assert "b_secret_column" not in page and "9.87654" not in page
    # Business first, engineering detail collapsed after it.
    assert page.index("Whom to target") < page.index("<details>") < page.index("Timings")
    assert "<details open" not in page
    # Nothing left behind beside the report.
    assert [p.name for p in out.parent.iterdir()] == ["m1"]


def test_targeting_table_rows_and_bands(tmp_path: Path) -> None:
    meta = _meta(rows=2000)
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    y = np.asarray(meta["curves"]["joint"]["y"])
    score = np.asarray(meta["curves"]["joint"]["score"])
    rows = targeting_table(y, score)
    assert [r.percent for r in rows] == [5, 10, 20, 30, 40, 50]
    for row in rows:
        # The point estimate equals the metric computed without resampling, inside its band.
        assert row.share.value == pytest.approx(
            metrics.recall_at_top(y, score, row.percent / 100), abs=0.01
        )
        assert row.share.low <= row.share.value <= row.share.high
        assert row.lift.low < row.lift.high
        assert f"<td>{row.percent}%</td><td>{row.users:,}</td>" in page
        assert f"{100 * row.share.value:.0f}% <span" in page
    # Shares grow with the share of users targeted; lift falls towards 1.
    assert [r.share.value for r in rows] == sorted(r.share.value for r in rows)
    assert rows[0].lift.value > rows[-1].lift.value > 1.0


def test_bands_narrow_with_more_users() -> None:
    rng = np.random.default_rng(3)

    def width(n: int) -> float:
        y = (rng.random(n) < 0.1).astype(int)
        score = y + rng.normal(size=n)
        row = targeting_table(y, score, percents=(20,))[0]
        return row.lift.high - row.lift.low

    assert width(20000) < width(500) / 3


def test_small_validation_set_warns(tmp_path: Path) -> None:
    meta = _meta(rows=120)
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    assert 'class="warning"' in page and "Too few buyers" in page
    big = write_report(_meta(rows=1000), tmp_path / "r2").read_text(encoding="utf-8")
    assert 'class="warning"' not in big  # ~500 positives


def test_one_hot_weights_read_against_the_reference() -> None:
    weights = {
        "age": 0.5,
        "device_os=android": -0.9,
        "device_os=ios": -0.4,
        "device_os=<other>": -1.0,
        "age=<missing>": 0.05,
    }
    effects, total = report._effects(weights, ["device_os"])
    assert total == 4
    assert dict(effects) == pytest.approx(
        {
            "age": 0.5,
            "device_os=ios vs android": 0.5,
            "device_os=<other> vs android": -0.1,
            "age=<missing>": 0.05,
        }
    )
    assert effects[0][1] in (0.5,)  # largest |effect| first


def test_weights_chart_shows_top_30_by_magnitude() -> None:
    weights = {f"c{i}": (-1) ** i * float(i) for i in range(40)}
    top, total = report._effects(weights)
    assert len(top) == 30 and total == 40
    assert top[0] == ("c39", -39.0) and top[-1] == ("c10", 10.0)


def test_the_models_notes_are_warnings_at_the_top(tmp_path: Path) -> None:
    meta = _meta()
    meta["notes"] = ["A's column(s) vip_since <b> (AUC 1.000) alone separate the label"]
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    warning = '<p class="warning"><b>Check the data.</b> A&#x27;s column(s) vip_since &lt;b&gt;'
    assert warning in page
    assert page.index(warning) < page.index("<h2>What the partner")
    assert "Check the data" not in write_report(_meta(), tmp_path / "r2").read_text("utf-8")


def test_empty_meta_does_not_crash(tmp_path: Path) -> None:
    page = write_report({}, tmp_path / "r").read_text(encoding="utf-8")
    assert _img_sources(page) == []
    assert "No validation metrics were recorded" in page
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["report.html"]


def test_partial_meta(tmp_path: Path) -> None:
    meta = _meta()
    for key in ("metrics", "loss_history", "a_weights", "timings", "job"):
        del meta[key]
    del meta["curves"]["a_only"]
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    assert _img_titles(page) == [
        "Cumulative gains",
        "Lift by decile",
        "Calibration",
        "ROC curves",
        "Score distribution",
    ]
    # Metrics computed from the curves when none were recorded.
    joint = meta["curves"]["joint"]
    assert f"{metrics.auc(joint['y'], joint['score']):.4f}" in page
    assert "Difference" not in page
    assert "of the positive cases in the top 40%" in page


def test_metrics_without_curves(tmp_path: Path) -> None:
    meta = _meta()
    del meta["curves"]
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    assert _img_titles(page) == [
        "A&#x27;s columns: the 30 largest of 35 effects",
        "Loss bound per epoch",
    ]
    assert f"{meta['metrics']['joint']['ks']:.4f}" in page


def test_validation_replaces_recorded_curves(tmp_path: Path) -> None:
    meta = _meta()
    del meta["metrics"]
    y = [0, 1, 0, 1, 1, 0]
    validation = {"joint": {"y": y, "score": [0.1, 0.9, 0.2, 0.8, 0.7, 0.3]}}
    page = write_report(meta, tmp_path / "r", validation=validation).read_text(encoding="utf-8")
    assert "1.0000" in page  # the perfect ranking of the validation scores given
    assert "A&#x27;s data alone</th>" not in page


def test_html_escapes_metadata(tmp_path: Path) -> None:
    page = write_report({"model_id": "<script>x</script>"}, tmp_path / "r").read_text("utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page


# ------------------------------------------------------------------------------- atomic writes
def test_failure_leaves_no_new_report(tmp_path: Path) -> None:
    meta = _meta()
    meta["curves"]["joint"]["score"] = meta["curves"]["joint"]["score"][:-1]
    with pytest.raises(DataError, match="curves"):
        write_report(meta, tmp_path / "r")
    assert not (tmp_path / "r" / "report.html").exists()


def test_failure_keeps_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    write_report(_meta(rows=200, seed=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_chart(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report.charts, "draw_loss", broken_chart)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(_meta(rows=200, seed=2), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("not a directory")
    with pytest.raises(ConfigError, match="not a directory"):
        write_report({}, tmp_path / "r")


def test_calibration_fallback_and_stop_reason_are_shown(tmp_path: Path) -> None:
    meta = _meta()
    meta["metrics"]["joint_uncalibrated"] = {**meta["metrics"]["joint"], "log_loss": 0.91234}
    meta["calibration"] = {"method": "platt", "slope": 1.25, "offset": -0.5}
    meta["a_only_model"] = {
        "weights": {"a_col_0": 0.1, "a_col_1": -0.2},
        "intercept": -1.5,
        "calibration": {"method": "platt", "slope": 0.8, "offset": 0.1},
    }
    meta["stopped"] = {"reason": "converged", "message": "converged after 3 epochs"}
    page = write_report(meta, tmp_path / "r").read_text(encoding="utf-8")
    detail = page[page.index("<details>") :]
    assert "Calibration of the joint model" in detail and "platt" in detail
    assert "0.9123 before calibration" in detail
    assert "A-only fallback model" in detail and "model = a_only" in detail
    assert "converged after 3 epochs" in detail


def test_reference_level_is_the_most_common_category() -> None:
    weights = {"device_os=android": -0.9, "device_os=ios": -0.4, "device_os=<other>": -1.0}
    preprocessor = {"categorical_state": [{"name": "device_os", "categories": ["ios", "android"]}]}
    effects, _ = report._effects(weights, ["device_os"], preprocessor)
    assert dict(effects) == pytest.approx(
        {"device_os=android vs ios": -0.5, "device_os=<other> vs ios": -0.6}
    )


def test_the_report_says_whether_the_calibration_was_applied(tmp_path: Path) -> None:
    meta = _meta()
    meta["calibration"] = {"slope": 1.0, "offset": 0.0, "rows": 89, "gain": 0.5}
    page = write_report(meta, tmp_path / "identity").read_text(encoding="utf-8")
    assert "own probabilities" in page and "gain 0.50, below 3.00" in page
    assert "calibrated on 89 validation rows" not in page
    meta["calibration"] = {"slope": 0.8, "offset": -0.3, "rows": 320, "gain": 14.0}
    page = write_report(meta, tmp_path / "kept").read_text(encoding="utf-8")
    assert "calibrated on 320 validation rows" in page and "own probabilities" not in page
