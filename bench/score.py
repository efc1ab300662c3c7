"""Batch-scoring throughput: N new users through A's ``score`` and B's role, phase by phase.

    python bench/score.py                      # 1,000,000 new users (about 3 minutes on 2 cores)
    python bench/score.py --rows 100000        # a quick run

Setup (not timed): a small model is trained in memory with the real protocol on the synthetic VIP
data (``make_vip``, 5,000 rows, 512-bit keys: the key size plays no part in scoring). Then N new
users are generated with make_vip's columns: A's file (CSV) holds all N; B's dataset holds 75% of
them plus 20% * N users A doesn't have plus B's training users, in its own order. The files are kept
under ``--data-dir`` and reused when the arguments match.

Transport: ``--transport memory`` runs both roles in this process (the in-memory transport still
encodes every message as protobuf; the two parties' PSI work cannot overlap there). ``--transport
nodes`` trains a small model through two real node processes over mTLS and then times
``fedlearn score`` through them (the figure the issue's target is about); ``--workers`` sets both
nodes' worker processes.

Phases reported (median over ``--repeats``): B loading its table (once per dataset version in a
running node, so reported apart and excluded from the total), A reading and transforming its input,
alignment split into A's and B's PSI work, B's partial scores, ranking, writing, and the total with
rows per second. Writes ``bench/results/score.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedlearn import datasets
from fedlearn.config import DatasetSpec
from fedlearn.datasets import VipPaths, make_vip
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.store import ModelStore
from party_a.score import ScoreResult, score
from party_b.node import NodeB
from tests.protocol.harness import TEST_POLICY, job_text, run_memory

RESULTS = Path(__file__).resolve().parent / "results" / "score.json"
T = TypeVar("T")


class TimedPeer(InMemoryPeer):
    """The in-memory peer, also adding up the seconds spent inside B's role per call."""

    def __init__(self, role: NodeB) -> None:
        super().__init__(role, identity="party-a")
        self.seconds: dict[str, float] = {}

    def _call(self, rpc: str, request: Any, response_type: type[T]) -> T:
        started = time.perf_counter()
        try:
            return super()._call(rpc, request, response_type)
        finally:
            self.seconds[rpc] = self.seconds.get(rpc, 0.0) + time.perf_counter() - started


def train_model(root: Path, train_rows: int) -> tuple[VipPaths, dict[str, Any], Path]:
    """A model trained in memory; returns the training data, A's metadata and B's model dir."""
    vip = make_vip(root / "train-data", rows=train_rows, seed=7)
    a_spec = DatasetSpec(
        "vip", vip.a_train_csv, vip.id_column, vip.label_column, None, list(vip.a_categorical)
    )
    b_spec = DatasetSpec(
        "vip", vip.b_features_csv, vip.id_column, None, None, list(vip.b_categorical)
    )
    run = run_memory(a_spec, b_spec, job_text("vip", epochs=2, batch_size=256), root)
    model = ModelStore(root / "a-models").load(run.meta["model_id"])
    return vip, model, root / "b-models"


def generate_new_users(out: Path, rows: int, seed: int, vip: VipPaths) -> tuple[Path, Path]:
    """A's new users (N rows) and B's dataset for scoring, with make_vip's columns (CSV)."""
    a_path, b_path = out / f"a_new_{rows}_{seed}.csv", out / f"b_{rows}_{seed}.csv"
    if a_path.is_file() and b_path.is_file():
        return a_path, b_path
    rng = np.random.default_rng(seed)
    n_extra = round(datasets.B_EXTRA * rows)
    total = rows + n_extra
    # IDs that cannot collide with make_vip's ("u"/"U" + digits).
    ids = np.array([f"n{v:010d}" for v in rng.permutation(10 * total)[:total]], dtype=object)
    wealth, reading, engagement = (rng.standard_normal(total) for _ in range(3))
    engagement = 0.4 * reading + np.sqrt(1 - 0.4**2) * engagement
    a_frame, _ = datasets._a_columns(rng, wealth, reading, engagement)
    b_frame = datasets._b_columns(rng, wealth, reading)
    a_frame.insert(0, vip.id_column, ids)
    b_frame.insert(0, vip.id_column, ids)
    known = rng.choice(rows, round(datasets.B_KNOWS_NEW * rows), replace=False)
    b_rows = np.concatenate([known, np.arange(rows, total)])
    rng.shuffle(b_rows)
    b_old = pd.read_csv(vip.b_features_csv, dtype=str, keep_default_na=False)
    b_new = pd.concat([b_frame.iloc[b_rows].astype(str).replace("<NA>", ""), b_old])
    out.mkdir(parents=True, exist_ok=True)
    a_frame.iloc[:rows].to_csv(a_path, index=False)
    b_new.replace("nan", "").to_csv(b_path, index=False)
    return a_path, b_path


def _timed(work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def run_memory_once(
    model: dict[str, Any],
    b_spec: DatasetSpec,
    b_models: Path,
    input_path: Path,
    output_path: Path,
    args: argparse.Namespace,
) -> dict[str, float]:
    """One scoring run, both roles in this process; seconds per phase."""
    role = NodeB(
        name="party-b",
        datasets={b_spec.name: b_spec},
        policy=TEST_POLICY,
        model_dir=b_models,
        allowed_partners={"party-a"},
    )
    try:
        table, b_load = _timed(lambda: role._load_table(b_spec))  # a running node caches this
        peer = TimedPeer(role)
        result: ScoreResult = score(
            peer,
            model=model,
            input_path=input_path,
            output_path=output_path,
            chunk_rows=args.chunk_rows,
            expected_partner="party-b",
            workers=args.workers,
        )
    finally:
        role.close()
    psi_b = sum(peer.seconds.get(rpc, 0.0) for rpc in ("psi_blind", "psi_peer_set", "psi_result"))
    timings = result.timings
    return {
        "b_table_load (cached in a node)": b_load,
        "a_read_transform": timings["reading"],
        "alignment": timings["alignment"],
        "alignment_a_psi": timings["alignment"] - psi_b - peer.seconds.get("open_session", 0.0),
        "alignment_b_psi": psi_b,
        "b_partial_scores": timings["partial_scores"],
        "ranking": timings["ranking"],
        "writing": timings["writing"],
        "total": timings["total"],
        "matched": float(result.matched),
        "peer_rows": float(len(table.ids)),
    }


def node_configs(root: Path, vip: Any, b_path: Path, *, workers: int = 1) -> tuple[Path, Path]:
    """A's and B's node configs under ``root``: A trains on the VIP set's training file, B serves
    ``b_path`` (the new users' B columns), test-sized keys; (A's config, B's config)."""
    from fedlearn.scaffold import PartyData, write_node_configs

    a_cfg, b_cfg, _, _ = write_node_configs(
        root,
        PartyData(
            vip.a_train_csv,
            vip.id_column,
            tuple(vip.a_categorical),
            vip.label_column,
            tuple(vip.a_columns),
        ),
        PartyData(b_path, vip.id_column, tuple(vip.b_categorical)),
        workers=workers,
        min_key_bits=512,
        min_batch_size=64,
        deadline_s=3600.0,
    )
    # Batches of 256 rows and B's 34 columns after one-hot: 4 rows per column (the default is 8;
    # job_text's jobs ask for 3 on A's side).
    b_cfg.write_text(
        b_cfg.read_text().replace("min_rows_per_column = 8", "min_rows_per_column = 4")
    )
    return a_cfg, b_cfg


def run_nodes(args: argparse.Namespace) -> None:
    """Train a small model through two real node processes, then score N users through them."""
    import re

    from bench.nodes import fedlearn, running_nodes

    work = Path(tempfile.mkdtemp(prefix="fl-score-nodes-"))
    vip = make_vip(work / "train-data", rows=args.train_rows, seed=7)
    print(f"generating {args.rows} new users in {args.data_dir} ...", flush=True)
    a_path, b_path = generate_new_users(args.data_dir, args.rows, args.seed, vip)
    a_cfg, b_cfg = node_configs(work, vip, b_path, workers=args.workers)
    job = work / "job.toml"
    job.write_text(job_text("vip", epochs=2, batch_size=256))
    seconds = []
    with running_nodes(a_cfg, b_cfg):
        trained = fedlearn(a_cfg, "train", "--job", str(job))
        model_id = trained.split("model: ", 1)[1].split()[0]
        for repeat in range(args.repeats):
            out = fedlearn(
                a_cfg,
                "score",
                "--model",
                model_id,
                "--input",
                str(a_path),
                "--output",
                str(work / f"scores-{repeat}.csv"),
            )
            match = re.search(
                r"scored (\d+) users \((\d+) known to the partner\) in ([\d.]+) s", out
            )
            assert match, out
            seconds.append(float(match.group(3)))
            print(f"run {repeat + 1}: {out.strip()}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(seconds)
    rate = args.rows / median
    print(
        f"\n{args.rows:,} users scored through two node processes (mTLS), workers {args.workers}: "
        f"median {median:.1f} s over {args.repeats} ({rate:,.0f} rows/s); target < 120 s: "
        f"{'met' if median < 120 else 'MISSED'}"
    )
    out_path = args.out.with_name("score_nodes.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "transport": "nodes",
                "workers": args.workers,
                "seconds": seconds,
                "median_s": median,
                "rows_per_second": round(rate),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="new users to score")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per party")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--train-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--transport", choices=("memory", "nodes"), default="memory")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "fl-score")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.transport == "nodes":
        run_nodes(args)
        return

    work = Path(tempfile.mkdtemp(prefix="fl-score-"))
    try:
        print(f"training a small model on {args.train_rows} rows ...", flush=True)
        vip, model, b_models = train_model(work, args.train_rows)
        print(f"generating {args.rows} new users in {args.data_dir} ...", flush=True)
        a_path, b_path = generate_new_users(args.data_dir, args.rows, args.seed, vip)
        b_spec = DatasetSpec("vip", b_path, vip.id_column, None, None, list(vip.b_categorical))
        runs = []
        for repeat in range(args.repeats):
            output = work / f"scores-{repeat}.csv"
            runs.append(run_memory_once(model, b_spec, b_models, a_path, output, args))
            print(f"run {repeat + 1}: total {runs[-1]['total']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    counts = ("matched", "peer_rows")
    b_rows = int(medians["peer_rows"])
    print(
        f"\n{args.rows} users at A, {b_rows} at B, {int(medians['matched'])} matched; "
        f"median of {args.repeats}, {args.transport} transport, A workers {args.workers}"
    )
    print("| phase | seconds |\n| --- | ---: |")
    for key, value in medians.items():
        if key not in counts:
            print(f"| {key} | {value:.2f} |")
    rate = args.rows / medians["total"]
    print(f"\nthroughput: {rate:,.0f} rows/s ({medians['total']:.1f} s for {args.rows:,} rows)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "peer_rows": b_rows,
                "matched": int(medians["matched"]),
                "transport": args.transport,
                "workers_a": args.workers,
                "chunk_rows": args.chunk_rows,
                "repeats": args.repeats,
                "seconds": {k: round(v, 3) for k, v in medians.items() if k not in counts},
                "rows_per_second": round(rate),
                "runs": runs,
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
