"""The training summary the CLI prints: each metric with its direction, and why training stopped."""

from __future__ import annotations

from fedlearn.cli import better_model, format_training_summary


def test_lower_log_loss_is_better_and_higher_auc_is_better() -> None:
    assert better_model("log_loss", 0.353, 0.375) == "joint"
    assert better_model("log_loss", 0.375, 0.353) == "A only"
    assert better_model("auc", 0.80, 0.70) == "joint"
    assert better_model("auc", 0.70, 0.80) == "A only"
    assert better_model("auc", 0.8001, 0.8002) == "tie"
    assert better_model("auc", None, 0.8) == "-"


def test_summary_never_calls_a_worse_log_loss_a_gain() -> None:
    summary = {
        "model_id": "m",
        "metrics": {
            "joint": {"auc": 0.81, "log_loss": 0.375},
            "a_only": {"auc": 0.70, "log_loss": 0.353},
        },
        "stopped": {"reason": "budget", "message": "not converged: the budget of 10 epochs ..."},
    }
    lines = format_training_summary(summary)
    assert not any("gain" in line for line in lines)
    (log_loss,) = [line for line in lines if line.startswith("log loss")]
    assert "(lower is better)" in log_loss and log_loss.split()[-1] == "only"  # "A only"
    (auc,) = [line for line in lines if line.startswith("AUC")]
    assert "(higher is better)" in auc and auc.split()[-1] == "joint"
    assert "training stopped: not converged" in lines[-1]


def test_scoring_summary_names_each_model_with_its_validation_auc() -> None:
    from pathlib import Path

    from party_a.score import ScoreResult, model_summary

    result = ScoreResult(
        rows=1000,
        matched=750,
        output_path=Path("scores.csv"),
        seconds=1.0,
        by_model={"joint": 750, "a_only": 250},
        validation_auc={"joint": 0.812, "a_only": 0.701},
    )
    text = model_summary(result)
    assert "A-only model: 250 users, validation AUC 0.701" in text
    assert "joint model: 750 users, validation AUC 0.812" in text


def test_summary_prints_the_models_notes() -> None:
    lines = format_training_summary(
        {"model_id": "m", "notes": ["A's column(s) const hold one value on every training row"]}
    )
    assert "note: A's column(s) const hold one value on every training row" in lines


def test_the_metrics_table_columns_line_up() -> None:
    metrics = {"auc": 0.78, "log_loss": 0.392, "recall@10": 0.286, "lift@50": 1.658}
    lines = format_training_summary({"model_id": "m", "metrics": {"joint": metrics, "a_only": {}}})
    table = [line for line in lines if "better" in line]
    # The labels differ in length, the value columns are right-aligned: equal lengths = aligned
    # (the longest label, "recall top 10% (higher is better)", had pushed its row 7 characters out).
    assert len(table) == 14 and len({len(line) for line in table}) == 1, table
