"""The HTML report a growth team decides with: joint model against A's data alone, on validation.

:func:`write_report` turns A's model metadata into one self-contained ``report.html`` (charts are
inline PNGs, so the file can be mailed). The business part comes first: a plain reading, a warning
when the validation set is too small to trust, the targeting table (top 5..50% of users: users,
buyers found, share of all buyers captured, lift, each with a 90% bootstrap band; joint and A-only),
then gains, lift, calibration, scores and A's column effects. Engineering detail (rows, timings in
pipeline order, traffic, key fingerprints, intercept, the job's keys, the loss) sits in a collapsed
``<details>`` section. Everything comes from A's side; B's weights never reach A, so never appear.

The metadata keys read (all optional)::

    model_id, created_at, partner, job, target_description (or job["target_description"])
    metrics:   {"joint": summary, "a_only": summary}       # fedlearn.metrics.summary dicts
    curves:    {"joint": {"y": [...], "score": [...]}, "a_only": {...}}   # validation rows
    loss_history: [{"epoch": 1, "loss": 0.61, ...}, ...]
    a_weights: {"column name": weight, ...},  intercept, categorical_columns
    timings, rows, traffic, key_fingerprints, calibration, fallback

A missing section is left out of the page (with a short note), never an error. When ``metrics`` is
missing but ``curves`` are there, the metrics are computed from the curves. A scoring run's report
is :func:`fedlearn.scores_report.write_scores_report`.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedlearn import metrics
from fedlearn import report_charts as charts
from fedlearn.atomic import write_atomic
from fedlearn.calibration import MIN_GAIN, Calibration
from fedlearn.errors import ConfigError, DataError
from fedlearn.preprocess import MISSING_LABEL
from fedlearn.report_charts import COLORS, MODELS, Curves
from fedlearn.targeting import MIN_POSITIVES, Band, calibration_bins, targeting_table

REPORT_NAME = "report.html"
TOP_WEIGHTS = 30
HEADLINE_PERCENT = 40
#: The order of the phases in the timings table (others follow, then the total).
PHASE_ORDER = (
    "keys",
    "alignment",
    "preprocessing",
    "forward",
    "gradient",
    "update",
    "loss",
    "evaluation",
)
__all__ = ["COLORS", "MODELS", "REPORT_NAME", "write_page", "write_report"]


def write_report(
    model_meta: Mapping[str, Any], out_dir: Path, *, validation: Mapping[str, Any] | None = None
) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and return its path.

    ``validation``, when given, replaces ``model_meta["curves"]`` (same shape: per model, the
    validation labels ``y`` and scores ``score``), e.g. scores recomputed by a scoring run.
    Raises DataError for malformed curves and ConfigError when ``out_dir`` is not a directory.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"report output {out_dir} exists and is not a directory")
    return write_page(build_page(model_meta, validation), out_dir / REPORT_NAME)


def write_page(page: str, path: Path) -> Path:
    """Write ``page`` to ``path`` atomically (readable by all, as a report is meant to be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, page, mode=0o644)


def build_page(meta: Mapping[str, Any], validation: Mapping[str, Any] | None = None) -> str:
    """The report's HTML text for ``meta`` (see the module doc)."""
    curves = _curves(validation if validation is not None else meta.get("curves"))
    summaries = _summaries(meta.get("metrics"), curves)
    return _render_html(meta, summaries, curves)


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


def _effects(
    raw: Any, categorical: Any = None, preprocessor: Any = None
) -> tuple[list[tuple[str, float]], int]:
    """A's column effects, largest |effect| first, at most TOP_WEIGHTS; and how many there are.

    A one-hot group (``col=level`` for a categorical column, ``col:binK[...)`` for a binned
    numeric one) always has exactly one level set, so adding a constant to all its weights changes
    nothing: only differences mean something. Each level is shown relative to the group's
    reference level, which is left out: "device_os=ios vs android". The reference is the column's
    most common training value (the first category of the saved ``preprocessor``; without one,
    the first level listed). Dense columns and missing-value indicators are shown as they are.
    """
    if not isinstance(raw, Mapping):
        return [], 0
    weights = [(str(k), float(v)) for k, v in raw.items() if _is_number(v)]
    categorical_set = {str(c) for c in categorical} if isinstance(categorical, list) else None
    groups: dict[str, list[tuple[str, float]]] = {}
    effects: list[tuple[str, float]] = []
    for name, value in weights:
        group, level = _one_hot_group(name, categorical_set)
        if group is None:
            effects.append((name, value))
        else:
            groups.setdefault(group, []).append((level, value))
    common = _most_common_levels(preprocessor)
    for group, levels in groups.items():
        if len(levels) < 2:
            effects.extend((f"{group}={level}", value) for level, value in levels)
            continue
        levels.sort(key=lambda item: item[0] != common.get(group))  # stable: the rest keep order
        reference, base = levels[0]
        effects.extend(
            (f"{group}={level} vs {reference}", value - base) for level, value in levels[1:]
        )
    effects.sort(key=lambda item: (-abs(item[1]), item[0]))
    return effects[:TOP_WEIGHTS], len(effects)


def _most_common_levels(preprocessor: Any) -> dict[str, str]:
    """Column -> its most common training category, from a saved preprocessor (Preprocessor.to_dict)."""
    from fedlearn.preprocess import MISSING_LABEL as missing

    states = preprocessor.get("categorical_state") if isinstance(preprocessor, Mapping) else None
    common: dict[str, str] = {}
    for state in states if isinstance(states, list) else []:
        categories = state.get("categories") if isinstance(state, Mapping) else None
        if categories:
            first = categories[0]
            common[str(state.get("name"))] = missing if first is None else str(first)
    return common


def _one_hot_group(name: str, categorical: set[str] | None) -> tuple[str | None, str]:
    if ":bin" in name:
        group, _, level = name.partition(":bin")
        return group, f"bin{level}"
    if "=" in name:
        group, _, level = name.partition("=")
        if (group in categorical) if categorical is not None else level != MISSING_LABEL:
            return group, level
    return None, ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


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
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td .band { color: #777; font-size: 85%; }
.reading { background: #f3f7fb; border-left: 4px solid #1f77b4; padding: 0.8em 1em; }
.warning { background: #fff4e5; border-left: 4px solid #e67e00; padding: 0.8em 1em; }
.charts img { max-width: 49%; vertical-align: top; }
.note { color: #777; font-style: italic; }
details { margin: 1.5em 0; } summary { cursor: pointer; font-size: 1.2em; font-weight: 600; }
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


def target_description(meta: Mapping[str, Any]) -> str | None:
    """What the model predicts, in the job's words (``target_description``), if it said."""
    job = meta.get("job")
    target = meta.get("target_description") or (
        job.get("target_description") if isinstance(job, Mapping) else None
    )
    return str(target) if target else None


def _reading(meta: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """One plain-language paragraph on what B's data adds, from the recall at the top 40%."""
    target = target_description(meta) or "the positive cases"
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
    raw = meta.get("calibration")
    if isinstance(raw, Mapping) and raw.get("rows"):
        try:
            calibration = Calibration.from_dict(raw)
        except (KeyError, TypeError, ValueError):
            return text
        if calibration.kept:
            text += f" Scores are probabilities calibrated on {calibration.rows:,} validation rows."
        else:
            text += (
                " Scores are the joint model's own probabilities: a calibration fitted on"
                f" {calibration.rows:,} validation rows did not improve on them by more than chance"
                f" (log-likelihood gain {calibration.gain or 0.0:.2f}, below {MIN_GAIN:.2f})."
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


def _band(band: Band, kind: str) -> str:
    def fmt(value: float) -> str:
        if not math.isfinite(value):
            return "n/a"
        if kind == "percent":
            return f"{100 * value:.0f}%"
        if kind == "count":
            return f"{value:,.0f}"
        return f"{value:.2f}"

    return f'{fmt(band.value)} <span class="band">({fmt(band.low)}–{fmt(band.high)})</span>'


def _targeting(curves: Curves) -> str:
    """The targeting table: top N%, users, buyers found, share of buyers, lift; bands at 90%."""
    if "joint" not in curves:
        return '<p class="note">No validation scores were recorded, so there is no targeting table.</p>'
    tables = {key: targeting_table(*curves[key]) for key in MODELS if key in curves}
    both = "a_only" in tables
    head = (
        "<tr><th rowspan=2>Target the top</th><th rowspan=2>Users</th>"
        f"<th colspan=3>{html.escape(MODELS['joint'])}</th>"
        + (f"<th colspan=2>{html.escape(MODELS['a_only'])}</th>" if both else "")
        + "</tr><tr><th>Buyers found</th><th>Share of all buyers</th><th>Lift</th>"
        + ("<th>Share of all buyers</th><th>Lift</th>" if both else "")
        + "</tr>"
    )
    rows = []
    for i, row in enumerate(tables["joint"]):
        cells = (
            f"<td>{row.percent}%</td><td>{row.users:,}</td><td>{_band(row.buyers, 'count')}</td>"
            f"<td>{_band(row.share, 'percent')}</td><td>{_band(row.lift, 'lift')}</td>"
        )
        if both:
            other = tables["a_only"][i]
            cells += f"<td>{_band(other.share, 'percent')}</td><td>{_band(other.lift, 'lift')}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<table>{head}{''.join(rows)}</table>"
        '<p class="note">On the validation users (a random share of the aligned users the model '
        "never trained on). In brackets: 90% bootstrap interval. Lift 1.0 is random targeting. "
        "For a campaign on N users, expect about the share shown of all the buyers among them.</p>"
    )


def _warning(summaries: Mapping[str, Mapping[str, Any]], curves: Curves) -> str:
    positives = _finite(summaries.get("joint"), "positives")
    if positives is None and "joint" in curves:
        positives = float(np.sum(curves["joint"][0]))
    if positives is None or positives >= MIN_POSITIVES:
        return ""
    return (
        f'<p class="warning"><b>Too few buyers to trust these figures.</b> The validation set '
        f"holds only {positives:,.0f} buyers (fewer than {MIN_POSITIVES}); differences between "
        "the models and lifts of single deciles may be noise: read the intervals, and validate "
        "on more users (a larger validation_fraction, or more data) before deciding.</p>"
    )


def _notes(meta: Mapping[str, Any]) -> str:
    """The model's notes from training (a column that leaks the label, a constant column) as
    warnings at the top: a leaking column makes every figure below look better than new users
    will be scored."""
    notes = meta.get("notes")
    if not isinstance(notes, list):
        return ""
    return "".join(
        f'<p class="warning"><b>Check the data.</b> {html.escape(str(note))}.</p>' for note in notes
    )


def _timings(raw: Any) -> dict[str, Any]:
    """Timings in pipeline order (keys, alignment, ..., evaluation), others after, total last."""
    if not isinstance(raw, Mapping):
        return {}
    known = [k for k in PHASE_ORDER if k in raw]
    rest = sorted(k for k in raw if k not in PHASE_ORDER and k != "total")
    ordered = {k: raw[k] for k in [*known, *rest]}
    if "total" in raw:
        ordered["total"] = raw["total"]
    return ordered


def _chart_section(meta: Mapping[str, Any], curves: Curves) -> str:
    images: list[str] = []
    if curves:
        images.append(
            charts.chart(
                "Cumulative gains", lambda ax: charts.draw_gains(ax, curves, HEADLINE_PERCENT)
            )
        )
        images.append(charts.chart("Lift by decile", lambda ax: charts.draw_lift(ax, curves)))
        calibration = {key: calibration_bins(*curves[key]) for key in curves}
        images.append(
            charts.chart("Calibration", lambda ax: charts.draw_calibration(ax, calibration))
        )
        images.append(charts.chart("ROC curves", lambda ax: charts.draw_roc(ax, curves)))
    if "joint" in curves:
        images.append(
            charts.chart("Score distribution", lambda ax: charts.draw_scores(ax, *curves["joint"]))
        )
    effects, total = _effects(
        meta.get("a_weights"), meta.get("categorical_columns"), meta.get("preprocessor")
    )
    if effects:
        title = (
            f"A's columns: all {total} effects"
            if total == len(effects)
            else f"A's columns: the {len(effects)} largest of {total} effects"
        )
        images.append(
            charts.chart(
                title,
                lambda ax: charts.draw_weights(ax, effects, title),
                height=max(3.0, 0.26 * len(effects) + 1.4),
            )
        )
    if not images:
        return '<p class="note">No validation curves or weights were recorded.</p>'
    note = (
        '<p class="note">A category is shown against its column\'s most common value (a bin against '
        "the lowest bin), the reference: only differences between levels of one column mean "
        "anything. Only A's "
        "own columns are shown; the partner's weights stay with the partner.</p>"
        if effects
        else '<p class="note">A\'s weights were not recorded.</p>'
    )
    return f'<div class="charts">{"".join(images)}</div>{note}'


def _engineering(meta: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    stopped = meta.get("stopped")
    facts = {
        "Intercept": meta.get("intercept"),
        "Epochs run": meta.get("epochs_completed"),
        "Training stopped": (
            stopped.get("message") or stopped.get("reason")
            if isinstance(stopped, Mapping)
            else None
        ),
        "B's mean partial score (for users B does not know)": meta.get("b_mean_partial_score"),
    }
    fact_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(_format_plain(v))}</td></tr>"
        for k, v in facts.items()
        if v is not None
    )
    loss = _loss_points(meta.get("loss_history"))
    loss_chart = (
        charts.chart("Loss bound per epoch", lambda ax: charts.draw_loss(ax, loss))
        + '<p class="note">A quadratic upper bound of the training log loss, which the parties can '
        "evaluate under encryption: it can rise while the model improves (as B's scores grow), so "
        "judge the model by the validation metrics; training stops when the scores stop "
        "moving.</p>"
        if loss
        else '<p class="note">No loss history was recorded.</p>'
    )
    extra = _calibration_detail(meta)
    return f"""<details>
<summary>Engineering detail</summary>
<h3>Validation metrics</h3>
{_metrics_table(summaries)}
<h3>Model</h3>
<table>{fact_rows}</table>
<h3>Rows</h3>
{_key_value_table(meta.get("rows"), _format_plain)}
<h3>Timings</h3>
{_key_value_table(_timings(meta.get("timings")), _format_seconds)}
<h3>Traffic between the nodes</h3>
{_key_value_table(meta.get("traffic"), _format_plain)}
<h3>Session key fingerprints</h3>
{_key_value_table(meta.get("key_fingerprints"), _format_plain)}
{extra}
<h3>Training loss</h3>
<div class="charts">{loss_chart}</div>
<h3>Job</h3>
{_key_value_table(meta.get("job"), _format_plain)}
</details>"""


def _calibration_detail(meta: Mapping[str, Any]) -> str:
    """The joint model's calibration map and A's own fallback model, when they were recorded."""
    parts = []
    calibration = meta.get("calibration")
    if isinstance(calibration, Mapping):
        parts.append(
            f"<h3>Calibration of the joint model</h3>{_key_value_table(calibration, _format_plain)}"
        )
    before = (
        meta.get("metrics", {}).get("joint_uncalibrated")
        if isinstance(meta.get("metrics"), Mapping)
        else None
    )
    after = (
        meta.get("metrics", {}).get("joint") if isinstance(meta.get("metrics"), Mapping) else None
    )
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        parts.append(
            "<p>Validation log loss of the joint model: "
            f"{html.escape(_format_metric(before.get('log_loss'), 'ratio'))} before calibration, "
            f"{html.escape(_format_metric(after.get('log_loss'), 'ratio'))} after "
            "(the ranking, so AUC and lift, is unchanged).</p>"
        )
    fallback = meta.get("a_only_model")
    if isinstance(fallback, Mapping):
        weights = fallback.get("weights")
        rows = {
            "Used for": "users the partner does not know (scoring output: model = a_only)",
            "Columns": len(weights) if isinstance(weights, Mapping) else None,
            "Intercept": fallback.get("intercept"),
        }
        table = _key_value_table({k: v for k, v in rows.items() if v is not None}, _format_plain)
        cal = fallback.get("calibration")
        cal_table = _key_value_table(cal, _format_plain) if isinstance(cal, Mapping) else ""
        parts.append(f"<h3>A-only fallback model</h3>{table}{cal_table}")
    return "".join(parts)


def _render_html(
    meta: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]], curves: Curves
) -> str:
    model_id = html.escape(str(meta.get("model_id", "unknown model")))
    target = target_description(meta)
    facts = [
        ("Model", meta.get("model_id")),
        ("Created", meta.get("created_at")),
        ("Partner (party B)", meta.get("partner")),
        ("Predicts", target),
    ]
    fact_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(_format_plain(value))}</td></tr>"
        for label, value in facts
        if value is not None
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Model report: {model_id}</title><style>{CSS}</style></head>
<body>
<h1>Model report: {model_id}</h1>
<table>{fact_rows}</table>
{_warning(summaries, curves)}
{_notes(meta)}
<h2>What the partner's data adds</h2>
<p class="reading">{html.escape(_reading(meta, summaries))}</p>
<h2>Whom to target</h2>
{_targeting(curves)}
<h2>Charts</h2>
{_chart_section(meta, curves)}
{_engineering(meta, summaries)}
</body>
</html>
"""
