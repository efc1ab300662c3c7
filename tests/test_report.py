"""Tests for fedlearn.report: the HTML page and charts built from A's model metadata."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn import metrics, report
from fedlearn.errors import ConfigError, DataError
from fedlearn.report import CHART_FILES, write_report


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


def test_full_report(tmp_path: Path) -> None:
    meta = _meta()
    meta["b_weights"] = {"b_secret_column": 9.87654}  # must never be drawn or printed
    out = tmp_path / "reports" / "m1"
    path = write_report(meta, out)
    assert path == out.absolute() / "report.html"
    page = path.read_text(encoding="utf-8")

    assert sorted(_img_sources(page)) == sorted(CHART_FILES)
    for name in CHART_FILES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([*CHART_FILES, "report.html"])

    joint, a_only = meta["metrics"]["joint"], meta["metrics"]["a_only"]
    assert f"{joint['auc']:.4f}" in page and f"{a_only['auc']:.4f}" in page
    assert f"{joint['auc'] - a_only['auc']:+.4f}" in page
    assert f"{100 * joint['recall@40']:.1f}%" in page
    assert f"{joint['lift@10']:.3f}" in page
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
    # Nothing left behind beside the report.
    assert [p.name for p in out.parent.iterdir()] == ["m1"]


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
    assert sorted(_img_sources(page)) == [
        "gains.png",
        "lift_by_decile.png",
        "roc.png",
        "score_distribution.png",
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
    assert sorted(_img_sources(page)) == ["a_weights.png", "loss.png"]
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


def test_weights_chart_shows_top_30_by_magnitude() -> None:
    weights = {f"c{i}": (-1) ** i * float(i) for i in range(40)}
    top = report._top_weights(weights)
    assert len(top) == 30
    assert top[0] == ("c39", -39.0) and top[-1] == ("c10", 10.0)


# ------------------------------------------------------------------------------- atomic writes
def test_failure_leaves_no_new_report(tmp_path: Path) -> None:
    meta = _meta()
    meta["curves"]["joint"]["score"] = meta["curves"]["joint"]["score"][:-1]
    with pytest.raises(DataError, match="curves"):
        write_report(meta, tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    write_report(_meta(rows=200, seed=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_chart(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_draw_loss", broken_chart)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(_meta(rows=200, seed=2), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_rewrite_removes_stale_charts(tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_report(_meta(rows=200), out)
    meta = _meta(rows=200)
    del meta["a_weights"], meta["loss_history"]
    page = write_report(meta, out).read_text(encoding="utf-8")
    assert not (out / "a_weights.png").exists() and not (out / "loss.png").exists()
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == sorted(_img_sources(page))


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("not a directory")
    with pytest.raises(ConfigError, match="not a directory"):
        write_report({}, tmp_path / "r")
