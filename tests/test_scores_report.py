"""fedlearn.scores_report: the report of a scoring run's output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlearn import metrics
from fedlearn.errors import DataError
from fedlearn.scores_report import write_scores_report


def _scores(path: Path, rows: int = 500, *, with_model: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    score = rng.beta(2, 5, rows)
    frame = pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(rows)],
            "score": score,
            "decile": metrics.deciles(score),
            "rank": np.argsort(np.argsort(-score)) + 1,
            "partner_matched": np.where(np.arange(rows) % 4 == 0, "false", "true"),
        }
    )
    if with_model:
        frame["model"] = np.where(frame["partner_matched"] == "true", "joint", "a_only")
    frame.to_csv(path, index=False)
    return frame


def test_scores_report_match_rate_and_deciles(tmp_path: Path) -> None:
    frame = _scores(tmp_path / "scores.csv", with_model=True)
    page = write_scores_report(tmp_path / "scores.csv", tmp_path / "r").read_text(encoding="utf-8")
    assert "375 (75.0%)" in page  # matched users
    top = frame[frame["decile"] == 1]["score"]
    assert f"<td>{top.min():.4f}</td><td>{top.max():.4f}</td>" in page
    assert f"<td>{top.sum():,.0f}</td>" in page
    assert "joint: 375, a_only: 125" in page
    assert "data:image/png;base64," in page and 'class="warning"' not in page


def test_low_match_rate_warns(tmp_path: Path) -> None:
    frame = _scores(tmp_path / "scores.csv")
    frame["partner_matched"] = "false"
    frame.to_csv(tmp_path / "scores.csv", index=False)
    page = write_scores_report(tmp_path / "scores.csv", tmp_path / "r").read_text(encoding="utf-8")
    assert 'class="warning"' in page and "Only 0%" in page


def test_not_a_scores_file(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": ["a"], "age": [3]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match="not the output of `fedlearn score`: it lacks score"):
        write_scores_report(tmp_path / "x.csv", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_the_report_names_the_model_and_what_it_predicts(tmp_path: Path) -> None:
    frame = _scores(tmp_path / "scores.csv", with_model=True)
    frame["model_id"] = "growth-20261203-110912-fc57"
    frame.to_csv(tmp_path / "scores.csv", index=False)
    asked: list[str] = []

    def target_of(model_id: str) -> str | None:
        asked.append(model_id)
        return "14-day premium upgraders"

    page = write_scores_report(tmp_path / "scores.csv", tmp_path / "r", target_of).read_text(
        encoding="utf-8"
    )
    assert asked == ["growth-20261203-110912-fc57"]
    assert "<td>Model id</td><td>growth-20261203-110912-fc57</td>" in page
    assert "<td>Predicts</td><td>14-day premium upgraders</td>" in page
    assert "probability of 14-day premium upgraders" in page
    # A model this node does not know (or a file from before the column): the report goes on.
    plain = write_scores_report(tmp_path / "scores.csv", tmp_path / "r2", lambda _: None)
    assert "Predicts" not in plain.read_text(encoding="utf-8")
