"""Two real nodes on loopback with mTLS over data files of the benchmark's choosing."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedlearn.launch import NodeProcess
from fedlearn.scaffold import PartyData, write_node_configs

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def write_configs(
    root: Path,
    *,
    a_data: Path,
    b_data: Path,
    id_column: str,
    label_column: str,
    a_categorical: list[str] | None = None,
    b_categorical: list[str] | None = None,
    workers: int = 1,
    min_key_bits: int = 2048,
    min_rows_per_column: int = 8,
) -> tuple[Path, Path]:
    """a.toml and b.toml for dataset "d" (long deadlines: benchmark batches can be large).

    ``min_rows_per_column`` is B's [policy] value (docs/threat-model.md; 8 by default).
    """
    a, b, _, _ = write_node_configs(
        root,
        PartyData(a_data, id_column, tuple(a_categorical or ()), label_column),
        PartyData(b_data, id_column, tuple(b_categorical or ())),
        dataset="d",
        workers=workers,
        min_key_bits=min_key_bits,
        max_epochs=100,
        deadline_s=3600.0,
    )
    b.write_text(
        b.read_text().replace(
            "min_rows_per_column = 8", f"min_rows_per_column = {min_rows_per_column}"
        )
    )
    return a, b


@contextmanager
def running_nodes(a_config: Path, b_config: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """A's and B's node processes, started (B first) and stopped around the block."""
    logs = a_config.parent / "logs"
    b = NodeProcess("b", b_config, logs / "b.log")
    try:
        a = NodeProcess("a", a_config, logs / "a.log")
        try:
            yield a, b
        finally:
            a.stop()
    finally:
        b.stop()


def fedlearn(a_config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fedlearn.cli", *args, "--config", str(a_config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"fedlearn {args[0]} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path
