"""The HTML report a growth team reads: joint model against A's data alone, on the validation rows.

:func:`write_report` turns A's model metadata into ``report.html`` plus PNG charts in one
directory. Everything comes from A's side: A's own column weights, the metrics and the validation
scores A recorded. B's weights are B's and are never in the metadata, so they never appear here.

The metadata keys read (all optional except that something must be there to be useful)::

    model_id, created_at, partner, job, target_description (or job["target_description"])
    metrics:   {"joint": summary, "a_only": summary}       # fedlearn.metrics.summary dicts
    curves:    {"joint": {"y": [...], "score": [...]}, "a_only": {...}}   # validation rows
    loss_history: [{"epoch": 1, "loss": 0.61, ...}, ...]
    a_weights: {"column name": weight, ...},  intercept
    timings:   {"alignment": seconds, "training": seconds, ...},  rows: {"name": count, ...}

A missing section is left out of the page (with a short note), never an error. When ``metrics`` is
missing but ``curves`` are there, the metrics are computed from the curves.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedlearn import metrics
from fedlearn.atomic import publish, staging_directory
from fedlearn.errors import ConfigError, DataError

REPORT_NAME = "report.html"
MODELS = {"joint": "Joint model (A + B)", "a_only": "A's data alone"}
COLORS = {"joint": "#1f77b4", "a_only": "#ff7f0e"}
CHART_FILES = (
    "roc.png",
    "gains.png",
    "lift_by_decile.png",
    "score_distribution.png",
    "loss.png",
    "a_weights.png",
)
TOP_WEIGHTS = 30
HEADLINE_PERCENT = 40

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def write_report(
    model_meta: Mapping[str, Any], out_dir: Path, *, validation: Mapping[str, Any] | None = None
) -> Path:
    """Write ``report.html`` and its PNG charts into ``out_dir``; return the path of report.html.

    ``validation``, when given, replaces ``model_meta["curves"]`` (same shape: per model, the
    validation labels ``y`` and scores ``score``), e.g. scores recomputed by a scoring run.

    The report is built in a temporary directory beside ``out_dir`` and moved into place: a new
    ``out_dir`` appears whole, an existing one gets its charts replaced first and ``report.html``
    last, so a failure never leaves a half-written report. Raises DataError for malformed curves
    and ConfigError when ``out_dir`` exists and is not a directory.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"report output {out_dir} exists and is not a directory")
    with staging_directory(out_dir) as staging:
        charts = _build(model_meta, validation, staging)
        os.chmod(staging, 0o755)
        if not out_dir.exists():
            publish(staging, out_dir)
        else:
            for name in [*charts, REPORT_NAME]:
                publish(staging / name, out_dir / name)
            for stale in set(CHART_FILES) - set(charts):
                (out_dir / stale).unlink(missing_ok=True)
    return out_dir / REPORT_NAME


def _build(meta: Mapping[str, Any], validation: Mapping[str, Any] | None, where: Path) -> list[str]:
    """Write every chart there is data for, then report.html; return the chart file names."""
    curves = _curves(validation if validation is not None else meta.get("curves"))
    summaries = _summaries(meta.get("metrics"), curves)
    loss = _loss_points(meta.get("loss_history"))
    weights = _top_weights(meta.get("a_weights"))
    drawers: dict[str, Callable[[Axes], None] | None] = {
        "roc.png": (lambda ax: _draw_roc(ax, curves)) if curves else None,
        "gains.png": (lambda ax: _draw_gains(ax, curves)) if curves else None,
        "lift_by_decile.png": (lambda ax: _draw_lift(ax, curves)) if curves else None,
        "score_distribution.png": (
            (lambda ax: _draw_scores(ax, *curves["joint"])) if "joint" in curves else None
        ),
        "loss.png": (lambda ax: _draw_loss(ax, loss)) if loss else None,
        "a_weights.png": (lambda ax: _draw_weights(ax, weights)) if weights else None,
    }
    charts: list[str] = []
    for name, draw in drawers.items():
        if draw is None:
            continue
        height = 6.0 if name != "a_weights.png" else max(3.0, 0.28 * len(weights) + 1.2)
        _save_chart(where / name, draw, height=height)
        charts.append(name)
    page = _render_html(meta, summaries, charts)
    (where / REPORT_NAME).write_text(page, encoding="utf-8")
    return charts


# ---------------------------------------------------------------------------- reading the meta
def _curves(raw: Any) -> Curves:
    curves: Curves = {}
    if not isinstance(raw, Mapping):
        return curves
    for key in MODELS:
        entry = raw.get(key)
        if not isinstance(entry, Mapping) or "y" not in entry or "score" not in entry:
            continue
        y = np.asarray(entry["y"])
        score = np.asarray(entry["score"], dtype=np.float64)
        if y.shape != score.shape or y.ndim != 1:
            raise DataError(
                f"curves[{key!r}]: y has shape {y.shape} but score has shape {score.shape}"
            )
        if y.size:
            curves[key] = (y, score)
    return curves


def _summaries(raw: Any, curves: Curves) -> dict[str, Mapping[str, Any]]:
    summaries: dict[str, Mapping[str, Any]] = {}
    for key in MODELS:
        recorded = raw.get(key) if isinstance(raw, Mapping) else None
        if isinstance(recorded, Mapping):
            summaries[key] = recorded
        elif key in curves:
            summaries[key] = metrics.summary(*curves[key])
    return summaries


def _loss_points(raw: Any) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        return []
    points = []
    for i, entry in enumerate(raw):
        if isinstance(entry, Mapping) and _is_number(entry.get("loss")):
            epoch = entry.get("epoch", i + 1)
            points.append((float(epoch) if _is_number(epoch) else i + 1.0, float(entry["loss"])))
    return points


def _top_weights(raw: Any) -> list[tuple[str, float]]:
    """A's column weights, largest |w| first (ties by name), at most TOP_WEIGHTS of them."""
    if not isinstance(raw, Mapping):
        return []
    weights = [(str(k), float(v)) for k, v in raw.items() if _is_number(v)]
    weights.sort(key=lambda item: (-abs(item[1]), item[0]))
    return weights[:TOP_WEIGHTS]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------- charts
def _save_chart(path: Path, draw: Callable[[Axes], None], *, height: float) -> None:
    figure = Figure(figsize=(7.5, height), dpi=100)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    figure.tight_layout()
    figure.savefig(path, format="png")


def _draw_roc(ax: Axes, curves: Curves) -> None:
    for key, (y, score) in curves.items():
        fpr, tpr, _ = metrics.roc_curve(y, score)
        label = f"{MODELS[key]} (AUC {_fmt(metrics.auc(y, score), '.3f')})"
        ax.plot(fpr, tpr, color=COLORS[key], label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="Random")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    ax.legend(loc="lower right")


def _draw_gains(ax: Axes, curves: Curves) -> None:
    for key, (y, score) in curves.items():
        targeted, found = metrics.gains_curve(y, score)
        ax.plot(100 * targeted, 100 * found, color=COLORS[key], label=MODELS[key])
    ax.plot([0, 100], [0, 100], color="grey", linestyle=":", label="Random")
    ax.axvline(HEADLINE_PERCENT, color="grey", linewidth=0.8)
    ax.set(
        xlabel="Users targeted, highest scores first (%)",
        ylabel="Positives captured (%)",
        title="Cumulative gains",
    )
    ax.legend(loc="lower right")


def _draw_lift(ax: Axes, curves: Curves) -> None:
    width = 0.8 / len(curves)
    deciles = np.arange(1, 11)
    for i, (key, (y, score)) in enumerate(curves.items()):
        lifts = metrics.lift_by_decile(y, score)
        offset = (i - (len(curves) - 1) / 2) * width
        ax.bar(deciles + offset, np.nan_to_num(lifts), width, color=COLORS[key], label=MODELS[key])
    ax.axhline(1.0, color="grey", linestyle=":", label="Random")
    ax.set_xticks(deciles)
    ax.set(xlabel="Decile (1 = highest scores)", ylabel="Lift", title="Lift by decile")
    ax.legend(loc="upper right")


def _draw_scores(ax: Axes, y: np.ndarray, score: np.ndarray) -> None:
    bins = np.linspace(float(score.min()), float(score.max()) + 1e-12, 41).tolist()
    ax.hist(score, bins=bins, color=COLORS["joint"], alpha=0.5, label="All validation users")
    ax.hist(score[y == 1], bins=bins, color="#2ca02c", alpha=0.8, label="Positives")
    ax.set(xlabel="Joint model score", ylabel="Users", title="Score distribution (joint model)")
    ax.legend(loc="upper right")


def _draw_loss(ax: Axes, points: list[tuple[float, float]]) -> None:
    epochs, losses = zip(*points, strict=True)
    ax.plot(epochs, losses, marker="o", color=COLORS["joint"])
    ax.set(xlabel="Epoch", ylabel="Training loss (Taylor)", title="Training loss per epoch")


def _draw_weights(ax: Axes, weights: list[tuple[str, float]]) -> None:
    names = [name for name, _ in reversed(weights)]
    values = [value for _, value in reversed(weights)]
    colors = ["#2ca02c" if v >= 0 else "#d62728" for v in values]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels=names, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel="Weight (on preprocessed column)", title=f"A's columns: top {len(values)} by |w|")


# --------------------------------------------------------------------------------------- HTML
# (key, label, kind): kind decides formatting and how the delta reads.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("auc", "AUC", "ratio"),
    ("ks", "KS", "ratio"),
    ("log_loss", "Log loss (lower is better)", "ratio"),
    *((f"recall@{p}", f"Positives captured in top {p}%", "percent") for p in (10, 20, 30, 40, 50)),
    *((f"lift@{p}", f"Lift in top {p}%", "lift") for p in (10, 20, 30, 40, 50)),
    ("base_rate", "Positive rate", "percent"),
    ("rows", "Validation rows", "count"),
    ("positives", "Validation positives", "count"),
)

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.reading { background: #f3f7fb; border-left: 4px solid #1f77b4; padding: 0.8em 1em; }
.charts img { max-width: 49%; vertical-align: top; }
.note { color: #777; font-style: italic; }
"""


def _fmt(value: Any, spec: str) -> str:
    if not _is_number(value):
        return "—"
    return "n/a" if not math.isfinite(float(value)) else format(value, spec)


def _format_metric(value: Any, kind: str) -> str:
    if not _is_number(value):
        return "—"
    if not math.isfinite(float(value)):
        return "n/a"
    if kind == "percent":
        return f"{100 * float(value):.1f}%"
    if kind == "count":
        return f"{int(value):,}"
    return format(float(value), ".4f" if kind == "ratio" else ".3f")


def _format_delta(joint: Any, a_only: Any, kind: str) -> str:
    if kind == "count" or not (_is_number(joint) and _is_number(a_only)):
        return ""
    delta = float(joint) - float(a_only)
    if not math.isfinite(delta):
        return "n/a"
    if kind == "percent":
        return f"{100 * delta:+.1f} pp"
    return f"{delta:+.4f}" if kind == "ratio" else f"{delta:+.3f}"


def _metrics_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    if not summaries:
        return '<p class="note">No validation metrics were recorded for this model.</p>'
    keys = [k for k in MODELS if k in summaries]
    both = len(keys) == 2
    head = "".join(f"<th>{html.escape(MODELS[k])}</th>" for k in keys)
    head += "<th>Difference (joint − A alone)</th>" if both else ""
    rows = []
    for key, label, kind in METRIC_ROWS:
        values = [summaries[k].get(key) for k in keys]
        cells = "".join(f"<td>{html.escape(_format_metric(v, kind))}</td>" for v in values)
        if both:
            cells += f"<td>{html.escape(_format_delta(values[0], values[1], kind))}</td>"
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    return f"<table><tr><th>Metric</th>{head}</tr>{''.join(rows)}</table>"


def _finite(summary: Mapping[str, Any] | None, key: str) -> float | None:
    if summary is None or not _is_number(summary.get(key)):
        return None
    value = float(summary[key])
    return value if math.isfinite(value) else None


def _reading(meta: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """One plain-language paragraph on what B's data adds, from the recall at the top 40%."""
    job = meta.get("job")
    target = meta.get("target_description") or (
        job.get("target_description") if isinstance(job, Mapping) else None
    )
    target = target or "the positive cases"
    joint, a_only = summaries.get("joint"), summaries.get("a_only")
    top = HEADLINE_PERCENT
    recall, a_recall = _finite(joint, f"recall@{top}"), _finite(a_only, f"recall@{top}")
    if recall is None:
        return "No validation metrics were recorded, so there is no reading of the model's value."
    text = (
        f"On the validation users, the joint model captures {100 * recall:.0f}% of {target} "
        f"in the top {top}% of its scores"
    )
    text += f" vs {100 * a_recall:.0f}% for A's data alone." if a_recall is not None else "."
    lift, a_lift = _finite(joint, f"lift@{top}"), _finite(a_only, f"lift@{top}")
    if lift is not None:
        text += (
            f" Targeting the top {top}% by the joint score reaches {lift:.2f} times as many of "
            "them as targeting the same number of users at random"
        )
        text += f" ({a_lift:.2f} times with A's data alone)." if a_lift is not None else "."
    auc, a_auc = _finite(joint, "auc"), _finite(a_only, "auc")
    if auc is not None and a_auc is not None:
        text += f" AUC is {auc:.3f} for the joint model and {a_auc:.3f} for A alone."
    return text + _training_note(meta, a_auc)


def _training_note(meta: Mapping[str, Any], a_auc: float | None) -> str:
    """Why training stopped, and how users B lacks are scored (issue 10's fields, if present)."""
    text = ""
    stopped = meta.get("stopped")
    if isinstance(stopped, Mapping) and stopped.get("message"):
        text += f" Training {stopped['message']}."
    if "a_only_model" in meta:
        text += " When scoring, users B does not know are scored by A's own A-only model"
        text += f" (validation AUC {a_auc:.3f})." if a_auc is not None else "."
    calibration = meta.get("calibration")
    if isinstance(calibration, Mapping) and calibration.get("rows"):
        text += (
            f" Scores are probabilities calibrated on {int(calibration['rows']):,} validation rows."
        )
    return text


def _key_value_table(raw: Any, format_value: Callable[[Any], str]) -> str:
    if not isinstance(raw, Mapping) or not raw:
        return '<p class="note">Not recorded.</p>'
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(format_value(v))}</td></tr>"
        for k, v in _flatten(raw)
    )
    return f"<table>{rows}</table>"


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in raw.items():
        name = f"{prefix}{k}"
        items.extend(_flatten(v, f"{name}.") if isinstance(v, Mapping) else [(name, v)])
    return items


def _format_seconds(value: Any) -> str:
    if not _is_number(value):
        return str(value)
    seconds = float(value)
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _format_plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if _is_number(value) and not isinstance(value, float) and not isinstance(value, np.floating):
        return f"{int(value):,}"
    return json.dumps(value, default=str)


CHART_TITLES = {
    "roc.png": "ROC curves",
    "gains.png": "Cumulative gains",
    "lift_by_decile.png": "Lift by decile",
    "score_distribution.png": "Score distribution",
    "loss.png": "Training loss per epoch",
    "a_weights.png": "A's column weights",
}


def _render_html(
    meta: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]], charts: list[str]
) -> str:
    model_id = html.escape(str(meta.get("model_id", "unknown model")))
    facts = [
        ("Model", meta.get("model_id")),
        ("Created", meta.get("created_at")),
        ("Partner (party B)", meta.get("partner")),
        ("Intercept", meta.get("intercept")),
    ]
    fact_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(_format_plain(value))}</td></tr>"
        for label, value in facts
        if value is not None
    )
    images = "".join(
        f'<img src="{name}" alt="{html.escape(CHART_TITLES[name])}">' for name in charts
    )
    if not charts:
        images = '<p class="note">No curves, loss history or weights were recorded.</p>'
    weights_note = (
        "" if "a_weights.png" in charts else '<p class="note">A\'s weights were not recorded.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Model report: {model_id}</title><style>{CSS}</style></head>
<body>
<h1>Model report: {model_id}</h1>
<table>{fact_rows}</table>
<h2>What the partner's data adds</h2>
<p class="reading">{html.escape(_reading(meta, summaries))}</p>
<h2>Validation metrics</h2>
{_metrics_table(summaries)}
<h2>Charts</h2>
<div class="charts">{images}</div>
{weights_note}
<p class="note">Only A's own column weights are shown; the partner's weights stay with it.</p>
<h2>Rows</h2>
{_key_value_table(meta.get("rows"), _format_plain)}
<h2>Timings</h2>
{_key_value_table(meta.get("timings"), _format_seconds)}
<h2>Job</h2>
{_key_value_table(meta.get("job"), _format_plain)}
</body>
</html>
"""
