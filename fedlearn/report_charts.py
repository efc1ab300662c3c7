"""The report's charts, drawn with matplotlib (Agg, no display) and inlined as base64 PNG data URIs.

Every ``draw_*`` function draws on the axes it is given; :func:`chart` renders one to an
``<img>`` tag whose source is the PNG itself, so the HTML page stands alone (it can be mailed).
Bars carry their values; colours are the same for a model on every chart.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedlearn import metrics
from fedlearn.targeting import CalibrationBin

MODELS = {"joint": "Joint model (A + B)", "a_only": "A's data alone"}
COLORS = {"joint": "#1f77b4", "a_only": "#ff7f0e"}
Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def chart(title: str, draw: Callable[[Axes], None], *, height: float = 4.2) -> str:
    """An ``<img>`` tag holding the chart drawn by ``draw`` as an inline PNG."""
    figure = Figure(figsize=(6.4, height), dpi=100)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(title)}">'


def draw_roc(ax: Axes, curves: Curves) -> None:
    for key, (y, score) in curves.items():
        fpr, tpr, _ = metrics.roc_curve(y, score)
        ax.plot(
            fpr, tpr, color=COLORS[key], label=f"{MODELS[key]} (AUC {metrics.auc(y, score):.3f})"
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="Random")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    ax.legend(loc="lower right", fontsize=8)


def draw_gains(ax: Axes, curves: Curves, marker_percent: int) -> None:
    for key, (y, score) in curves.items():
        targeted, found = metrics.gains_curve(y, score)
        ax.plot(100 * targeted, 100 * found, color=COLORS[key], label=MODELS[key])
    ax.plot([0, 100], [0, 100], color="grey", linestyle=":", label="Random")
    ax.axvline(marker_percent, color="grey", linewidth=0.8)
    ax.set(
        xlabel="Users targeted, highest scores first (%)",
        ylabel="Buyers captured (%)",
        title="Cumulative gains",
    )
    ax.legend(loc="lower right", fontsize=8)


def draw_lift(ax: Axes, curves: Curves) -> None:
    """Lift per score decile, one bar per model, the value written on each bar."""
    width = 0.8 / len(curves)
    deciles = np.arange(1, 11)
    for i, (key, (y, score)) in enumerate(curves.items()):
        lifts = np.nan_to_num(metrics.lift_by_decile(y, score))
        offset = (i - (len(curves) - 1) / 2) * width
        bars = ax.bar(deciles + offset, lifts, width, color=COLORS[key], label=MODELS[key])
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in lifts], fontsize=6, padding=1)
    ax.axhline(1.0, color="grey", linestyle=":", label="Random")
    ax.set_xticks(deciles)
    ax.set(xlabel="Decile (1 = highest scores)", ylabel="Lift", title="Lift by decile")
    ax.legend(loc="upper right", fontsize=8)


def draw_calibration(ax: Axes, bins_by_model: dict[str, list[CalibrationBin]]) -> None:
    """Observed buyer rate against the predicted probability, per score decile."""
    top = 0.0
    for key, bins in bins_by_model.items():
        predicted = [b.predicted for b in bins]
        observed = [b.observed for b in bins]
        ax.plot(predicted, observed, marker="o", color=COLORS[key], label=MODELS[key])
        top = max(top, *predicted, *observed)
    top = min(1.0, top * 1.1 + 1e-3)
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="Perfectly calibrated")
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="Predicted probability (mean per score decile)",
        ylabel="Observed buyer rate",
        title="Calibration",
    )
    ax.legend(loc="upper left", fontsize=8)


def draw_scores(ax: Axes, y: np.ndarray, score: np.ndarray) -> None:
    bins = np.linspace(float(score.min()), float(score.max()) + 1e-12, 41).tolist()
    ax.hist(score, bins=bins, color=COLORS["joint"], alpha=0.5, label="All validation users")
    ax.hist(score[y == 1], bins=bins, color="#2ca02c", alpha=0.8, label="Buyers")
    ax.set(xlabel="Joint model score", ylabel="Users", title="Score distribution (joint model)")
    ax.legend(loc="upper right", fontsize=8)


def draw_loss(ax: Axes, points: Sequence[tuple[float, float]]) -> None:
    epochs, losses = zip(*points, strict=True)
    ax.plot(epochs, losses, marker="o", color=COLORS["joint"])
    ax.set(xlabel="Epoch", ylabel="Bound of the log loss", title="Loss bound per epoch")


def draw_weights(ax: Axes, weights: Sequence[tuple[str, float]], title: str) -> None:
    """Horizontal bars, largest effect on top, each with its value."""
    names = [name for name, _ in reversed(weights)]
    values = [value for _, value in reversed(weights)]
    colors = ["#2ca02c" if v >= 0 else "#d62728" for v in values]
    bars = ax.barh(range(len(values)), values, color=colors)
    ax.bar_label(bars, labels=[f"{v:+.2f}" for v in values], fontsize=7, padding=2)
    ax.set_yticks(range(len(values)), labels=names, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    span = max((abs(v) for v in values), default=1.0) or 1.0
    ax.set_xlim(-1.25 * span if min(values, default=0) < 0 else 0, 1.25 * span)
    ax.set(xlabel="Effect on log-odds (per std. dev., or vs reference)", title=title)


def draw_histogram(ax: Axes, groups: dict[str, np.ndarray], *, xlabel: str, title: str) -> None:
    values = [v for v in groups.values() if v.size]
    if not values:
        return
    low = min(float(v.min()) for v in values)
    high = max(float(v.max()) for v in values)
    bins = np.linspace(low, high + 1e-12 if math.isfinite(high) else 1.0, 41).tolist()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for color, (label, data) in zip(palette, groups.items(), strict=False):
        ax.hist(data, bins=bins, alpha=0.6, color=color, label=f"{label} ({data.size:,})")
    ax.set(xlabel=xlabel, ylabel="Users", title=title)
    ax.legend(loc="upper right", fontsize=8)
