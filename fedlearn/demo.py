"""``make demo``: the whole job on synthetic data, through two real nodes over mutual TLS on loopback.

Generates the VIP data set and development certificates, starts party B's and party A's nodes, then
runs what an operator at A would: alignment, training, batch scoring of new users, the report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fedlearn import metrics
from fedlearn.cli import format_training_summary
from fedlearn.data import read_table
from fedlearn.launch import NodeProcess
from fedlearn.scaffold import write_vip_demo


def fedlearn_command(*args: str, capture: bool = False) -> str:
    """Run ``fedlearn ARGS`` as an operator would; with ``capture``, return its stdout."""
    print(f"\n$ fedlearn {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "fedlearn.cli", *args],
        check=False,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: `fedlearn {args[0]}` failed with exit code {result.returncode}")
    return result.stdout or ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo"))
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument(
        "--epochs",
        type=lambda text: text if text == "auto" else int(text),
        default="auto",
        help='"auto" (the job default: until converged) or a number of epochs',
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"demo: writing data, certificates and configs to {args.dir}/", flush=True)
    demo = write_vip_demo(args.dir, rows=args.rows, seed=args.seed, epochs=args.epochs)
    for line in demo.describe():
        print("  " + line)
    logs = demo.root / "logs"
    b = NodeProcess("b", demo.b_config, logs / "party-b.log")
    try:
        a = NodeProcess("a", demo.a_config, logs / "party-a.log")
        try:
            print(f"demo: {b.ready_line}\ndemo: {a.ready_line}", flush=True)
            config = ["--config", str(demo.a_config)]
            fedlearn_command("align", "--dataset", "vip", *config)
            # --json: the model id comes from the job's record, not from parsing text.
            job = json.loads(
                fedlearn_command("train", "--job", str(demo.job), "--json", *config, capture=True)
            )
            model_id = job["model_id"]
            for line in format_training_summary(job["summary"]):
                print(line)
            scores = demo.root / "scores" / "new_users_scores.csv"
            scores.parent.mkdir(parents=True, exist_ok=True)
            fedlearn_command(
                "score",
                "--model",
                model_id,
                "--input",
                str(demo.data.a_new_users_csv),
                "--output",
                str(scores),
                *config,
            )
            report_dir = demo.root / "report" / model_id
            fedlearn_command("report", "--model", model_id, "--out", str(report_dir), *config)
            scores_report = demo.root / "report" / "scores"
            fedlearn_command(
                "report", "--scores", str(scores), "--out", str(scores_report), *config
            )
            fedlearn_command("models", *config)
            _check_scores(
                scores, demo.data.a_new_users_truth_csv, demo.data.id_column, demo.data.label_column
            )
        finally:
            print(f"\ndemo: stopping party-a (exit {a.stop()})", flush=True)
    finally:
        print(f"demo: stopping party-b (exit {b.stop()})", flush=True)
    print(f"\ndemo: done in {time.perf_counter() - started:.0f} s")
    print(
        f"  models:  {demo.root / 'models-a' / model_id} (A's shard), "
        f"{demo.root / 'models-b' / model_id} (B's shard)"
    )
    print(f"  scores:  {scores}")
    print(f"  report:  {report_dir / 'report.html'} (scoring run: {scores_report / 'report.html'})")
    print(f"  logs:    {logs}")


def _check_scores(scores_path: Path, truth_path: Path, id_column: str, label: str) -> None:
    """The new users' real outcomes are known for the demo: how well did the scores rank them?"""
    scores = read_table(scores_path)
    truth = read_table(truth_path).set_index(id_column)[label].astype(int)
    y = truth.reindex(scores[id_column].str.strip()).to_numpy()
    s = scores["score"].astype(float).to_numpy()
    matched = scores["partner_matched"].astype(str).str.lower().eq("true").to_numpy()
    print(
        f"\ndemo: new users scored against their real 30-day outcome: AUC {metrics.auc(y, s):.3f}, "
        f"recall in the top 40% {metrics.recall_at_top(y, s, 0.4):.3f}; "
        f"{matched.mean():.0%} known to B (AUC among them {metrics.auc(y[matched], s[matched]):.3f})"
    )
    if not np.isfinite(s).all():
        raise SystemExit("demo: some scores are not finite")


if __name__ == "__main__":
    main()
