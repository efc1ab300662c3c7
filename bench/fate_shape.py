"""FATE's published performance shape: A 100,000 rows x 30 columns, B the same rows x 300 columns.

    python -m bench.fate_shape [--batches 20] [--workers 1 2] [--full] [--quick]

Synthetic, dense, standardised columns (standard normal, exactly standardised), the label drawn from a
latent logistic model over both parties' columns. 2048-bit keys, batch 1024, both nodes on this
machine over mTLS. FATE 2.0 reports 2 min 16 s per epoch for this shape with 16 cores per party and
1024-bit keys. Target (issue 5): <= 180 s per epoch here (2 cores, both parties); stretch 136 s.

A full epoch is 100,000 rows (validation fraction 0, as an epoch over all rows). By default only
``--batches`` batches are run (a data set of batches x 1024 rows with the same columns) and the epoch
is **extrapolated** from the measured training-loop time per row (per-batch work does not depend on the
data set's length; PSI and preprocessing are reported apart). ``--full`` runs the real 100,000 rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import bound
from bench.nodes import save
from bench.training import (
    LOOP_PHASES,
    PHASE_NAMES,
    Job,
    aligned,
    loop_seconds,
    machine,
    train_through_nodes,
)

EPOCH_ROWS = 100_000
A_COLUMNS, B_COLUMNS = 30, 300
#: Rows per column this shape needs (1,024 / 300 = 3.4); below the default of 8, see run().
FATE_ROWS_PER_COLUMN = 3
TARGET_S, STRETCH_S, FATE_S = 180.0, 136.0, 136.0


def make_data(root: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """A (id, y, 30 columns) and B (id, 300 columns) as Parquet, the same IDs in different orders."""
    rng = np.random.default_rng(seed)

    def standardised(columns: int) -> np.ndarray:
        x = rng.standard_normal((rows, columns))
        return (x - x.mean(axis=0)) / x.std(axis=0)

    x_a, x_b = standardised(A_COLUMNS), standardised(B_COLUMNS)
    # Latent logistic model: the score has variance ~3 (A's part 1, B's part 2), intercept -1.
    w_a = rng.standard_normal(A_COLUMNS) / np.sqrt(A_COLUMNS)
    w_b = rng.standard_normal(B_COLUMNS) * np.sqrt(2.0 / B_COLUMNS)
    score = x_a @ w_a + x_b @ w_b - 1.0
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-score))).astype(np.int64)
    ids = np.array([f"u{i:07d}" for i in range(rows)])
    a = pd.DataFrame(x_a.astype(np.float32), columns=[f"a{j}" for j in range(A_COLUMNS)])
    a.insert(0, "y", y)
    a.insert(0, "id", ids)
    b = pd.DataFrame(x_b.astype(np.float32), columns=[f"b{j}" for j in range(B_COLUMNS)])
    b.insert(0, "id", ids)
    b = b.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    root.mkdir(parents=True, exist_ok=True)
    a.to_parquet(root / "a.parquet", index=False)
    b.to_parquet(root / "b.parquet", index=False)
    return root / "a.parquet", root / "b.parquet"


def run(rows: int, workers_list: list[int], *, key_bits: int = 2048) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-fate-"))
    a_data, b_data = make_data(root / "data", rows)
    # FATE's shape puts 300 columns at B against batches of 1,024 rows: 3.4 rows per column, which the
    # default policy (8) refuses because B could then solve its gradients for the labels
    # (docs/threat-model.md). The benchmark keeps FATE's shape and lowers the limit on both sides.
    job = Job(
        epochs=1,
        key_bits=key_bits,
        validation_fraction=0.0,
        min_rows_per_column=FATE_ROWS_PER_COLUMN,
    )
    data = aligned(a_data, b_data, seed=job.seed, validation_fraction=0.0)
    counts = bound.count_epoch(
        data.x_a_q,
        data.x_b_q,
        data.train,
        batch_size=job.batch_size,
        seed=job.seed,
        key_bits=key_bits,
    )
    runs = {}
    primitives = [bound.time_primitives(key_bits)]
    for workers in workers_list:
        (meta,) = train_through_nodes(
            root / f"nodes-w{workers}",
            a_data,
            b_data,
            [job],
            workers=workers,
            min_rows_per_column=FATE_ROWS_PER_COLUMN,
        )
        primitives.append(bound.time_primitives(key_bits))
        loop = loop_seconds(meta)
        train_rows = meta["rows"]["train"]
        runs[workers] = {
            "timings": meta["timings"],
            "rows": meta["rows"],
            "loop_s": loop,
            "batches": max(1, train_rows // job.batch_size),
            "per_batch_s": loop / max(1, train_rows // job.batch_size),
            "epoch_s_extrapolated": loop * EPOCH_ROWS / train_rows,
            "measured_full_epoch": train_rows >= EPOCH_ROWS,
        }
    prim = bound.Primitives(
        bits=key_bits,
        slot_bits=primitives[0].slot_bits,
        **{
            key: statistics.median([getattr(p, key) for p in primitives])
            for key in primitives[0].as_dict()
            if key not in ("bits", "slot_bits")
        },
    )
    best = min(runs.values(), key=lambda r: r["epoch_s_extrapolated"])
    reports = {w: bound.bound_report(counts, prim, r["loop_s"]) for w, r in runs.items()}
    epoch = best["epoch_s_extrapolated"]
    return {
        "machine": machine(),
        "rows_run": rows,
        "key_bits": key_bits,
        "runs": runs,
        "bound": reports,
        "targets": [
            {
                "benchmark": "fate_shape",
                "target": f"<= {TARGET_S:.0f} s per epoch (stretch {STRETCH_S:.0f} s)",
                "measured": f"{epoch:.0f} s"
                + ("" if best["measured_full_epoch"] else " (extrapolated)"),
                "met": epoch <= TARGET_S,
            },
            {
                "benchmark": "fate_shape",
                "target": "bound fraction >= 0.6",
                "measured": ", ".join(
                    f"workers={w}: {r['fraction_two_cores']:.2f}" for w, r in reports.items()
                ),
                "met": max(r["fraction_two_cores"] for r in reports.values()) >= 0.6,
            },
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    first = next(iter(runs.values()))
    label = (
        "measured"
        if first["measured_full_epoch"]
        else f"**extrapolated** from {first['batches']} batches ({result['rows_run']:,} rows)"
    )
    header = " | ".join(f"workers = {w}" for w in runs)
    lines = [
        f"FATE's shape: A {A_COLUMNS} columns, B {B_COLUMNS} columns, dense; "
        f"{result['key_bits']}-bit keys, batch 1024, both nodes on this 2-core machine over mTLS; "
        f"epoch of {EPOCH_ROWS:,} rows {label}",
        "",
        f"| phase (A's view), seconds per batch | {header} |",
        "| --- |" + " ---: |" * len(runs),
    ]
    for phase in LOOP_PHASES:
        cells = " | ".join(
            f"{r['timings'].get(phase, 0.0) / r['batches']:.2f}" for r in runs.values()
        )
        lines.append(f"| {PHASE_NAMES[phase]} | {cells} |")
    lines.append(
        "| **batch** | " + " | ".join(f"**{r['per_batch_s']:.2f}**" for r in runs.values()) + " |"
    )
    lines.append(
        "| **epoch, 100,000 rows (s)** | "
        + " | ".join(f"**{r['epoch_s_extrapolated']:.0f}**" for r in runs.values())
        + " |"
    )
    lines.append(
        "| alignment of this run's rows (s), not in the epoch | "
        + " | ".join(f"{r['timings']['alignment']:.1f}" for r in runs.values())
        + " |"
    )
    lines.append(
        "| fraction of the two-core bound | "
        + " | ".join(f"{result['bound'][w]['fraction_two_cores']:.2f}" for w in runs)
        + " |"
    )
    best = min(r["epoch_s_extrapolated"] for r in runs.values())
    verdict = "met" if best <= TARGET_S else "MISSED"
    stretch = "met" if best <= STRETCH_S else "missed"
    lines += [
        "",
        f"Target <= {TARGET_S:.0f} s per epoch: **{verdict}** (best {best:.0f} s); stretch "
        f"{STRETCH_S:.0f} s: {stretch}. FATE 2.0: {FATE_S:.0f} s with 16 cores per party and "
        "1024-bit keys.",
        "",
        bound.markdown(
            next(iter(result["bound"].values())),
            "The bound for the batches run (counted on the same quantised data; workers = "
            f"{next(iter(runs))}):",
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--full", action="store_true", help="run all 100,000 rows (slow)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 batches, workers 1")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.workers = 2, [1]
    rows = EPOCH_ROWS if args.full else args.batches * 1024
    result = run(rows, args.workers)
    table = markdown(result)
    print(table)
    path = save("fate_shape_quick" if args.quick else "fate_shape", {**result, "table": table})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
