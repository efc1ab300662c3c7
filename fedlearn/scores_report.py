"""The report of a scoring run: how many users the partner knew, how the scores spread, the deciles.

``fedlearn report --scores scores.csv --out DIR`` writes ``DIR/report.html`` (self-contained)
from a scoring run's output file (CSV or Parquet, as ``fedlearn score`` writes it: an ID column,
``score``, ``decile``, ``rank``, ``partner_matched`` and, when the model has an A-only fallback,
``model``). There are no labels in a scoring run, so this is about the population scored: the match
rate, the score distribution for matched and unmatched users, and per decile the users, score
range and match rate (unmatched users are scored from A's part alone, so a decile full of them is
worth a second look).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fedlearn import report_charts as charts
from fedlearn.data import read_table
from fedlearn.errors import DataError
from fedlearn.report import CSS, REPORT_NAME, write_page

REQUIRED = ("score", "decile", "partner_matched")
TRUE_TEXT = {"true", "1", "yes", "t"}


def write_scores_report(
    scores_path: Path, out_dir: Path, target_of: Callable[[str], str | None] | None = None
) -> Path:
    """Write ``out_dir/report.html`` for the scoring output ``scores_path``; return its path.

    ``target_of``: what a model predicts, in its job's words (``target_description``), by model
    id; the report names the model (the file's ``model_id`` column) and its target when known.
    Raises DataError when the file is not a scoring output (a required column is missing or a
    score is not a number).
    """
    frame = read_table(scores_path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"{Path(scores_path).name} is not the output of `fedlearn score`: it lacks "
            f"{', '.join(missing)} (columns: {', '.join(frame.columns)})"
        )
    score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(score).any():
        row = int(np.flatnonzero(np.isnan(score))[0])
        raise DataError(f"{Path(scores_path).name}: score at row {row + 1} is not a number")
    matched = frame["partner_matched"].str.strip().str.lower().isin(TRUE_TEXT).to_numpy()
    decile = pd.to_numeric(frame["decile"], errors="coerce").to_numpy()
    model_ids = (
        sorted(frame["model_id"].dropna().astype(str).unique()) if "model_id" in frame else []
    )
    target = target_of(model_ids[0]) if target_of is not None and len(model_ids) == 1 else None
    page = _page(
        Path(scores_path).name, score, matched, decile, frame.get("model"), model_ids, target
    )
    return write_page(page, Path(out_dir).absolute() / REPORT_NAME)


def _page(
    name: str,
    score: np.ndarray,
    matched: np.ndarray,
    decile: np.ndarray,
    model: pd.Series | None,
    model_ids: list[str] | None = None,
    target: str | None = None,
) -> str:
    n = score.size
    rate = matched.mean() if n else float("nan")
    facts = []
    if model_ids:
        facts.append(("Model id", ", ".join(model_ids)))
    if target:
        facts.append(("Predicts", target))
    facts += [
        ("Users scored", f"{n:,}"),
        ("Known to the partner (matched)", f"{int(matched.sum()):,} ({100 * rate:.1f}%)"),
        ("Mean score", f"{score.mean():.4f}" if n else "—"),
        (
            "Score quartiles (25%, 50%, 75%)",
            ", ".join(f"{q:.4f}" for q in np.quantile(score, [0.25, 0.5, 0.75])) if n else "—",
        ),
    ]
    if model is not None:
        counts = model.value_counts()
        facts.append(("Model used", ", ".join(f"{k}: {v:,}" for k, v in counts.items())))
    fact_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    groups = {"Matched": score[matched], "Not matched": score[~matched]}
    image = (
        charts.chart(
            "Score distribution",
            lambda ax: charts.draw_histogram(
                ax, groups, xlabel="Score (probability)", title="Score distribution"
            ),
        )
        if n
        else ""
    )
    deciles = []
    for d in range(1, 11):
        rows = decile == d
        if not rows.any():
            continue
        s = score[rows]
        deciles.append(
            f"<tr><td>{d}</td><td>{int(rows.sum()):,}</td><td>{s.min():.4f}</td>"
            f"<td>{s.max():.4f}</td><td>{s.mean():.4f}</td><td>{s.sum():,.0f}</td>"
            f"<td>{100 * matched[rows].mean():.1f}%</td></tr>"
        )
    warning = ""
    if n and rate < 0.5:
        warning = (
            f'<p class="warning"><b>Only {100 * rate:.0f}% of these users are known to the '
            "partner.</b> The others are scored from A's data alone, so their scores rank less "
            "well; compare the match rate with the training overlap.</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Scoring report: {html.escape(name)}</title>
<style>{CSS}</style></head>
<body>
<h1>Scoring report: {html.escape(name)}</h1>
<table>{fact_rows}</table>
{warning}
<h2>Deciles (1 = highest scores)</h2>
<table><tr><th>Decile</th><th>Users</th><th>Lowest score</th><th>Highest score</th>
<th>Mean score</th><th>Expected buyers</th><th>Matched</th></tr>{"".join(deciles)}</table>
<h2>Score distribution</h2>
<div class="charts">{image}</div>
<p class="note">Scores are the model's probability of {html.escape(target or "the target")};
"expected buyers" (users expected to do it) is the sum of a decile's scores, which holds as far as
the model is calibrated (see the model's report).</p>
</body>
</html>
"""
