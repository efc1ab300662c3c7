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

from fedlearn.certs import make_dev_certs
from fedlearn.launch import NodeProcess
from fedlearn.scaffold import free_port

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
) -> tuple[Path, Path]:
    certs = root / "certs"
    if not (certs / "ca.pem").exists():
        make_dev_certs(certs, ["party-a", "party-b"])
    control, peer = free_port(), free_port()
    a = root / "a.toml"
    a.write_text(f"""[node]
name = "party-a"
model_dir = "models-a"
workers = {workers}
[control]
listen = "127.0.0.1:{control}"
[tls]
ca = "certs/ca.pem"
cert = "certs/party-a.pem"
key = "certs/party-a.key"
deadline_s = 3600
[peer]
address = "127.0.0.1:{peer}"
name = "party-b"
[[datasets]]
name = "d"
path = "{a_data}"
id_column = "{id_column}"
label_column = "{label_column}"
categorical = {json.dumps(a_categorical or [])}
""")
    b = root / "b.toml"
    b.write_text(f"""[node]
name = "party-b"
listen = "127.0.0.1:{peer}"
model_dir = "models-b"
workers = {workers}
[tls]
ca = "certs/ca.pem"
cert = "certs/party-b.pem"
key = "certs/party-b.key"
deadline_s = 3600
[partners]
allowed = ["party-a"]
[policy]
min_key_bits = {min_key_bits}
min_batch_size = 256
max_epochs = 100
[[datasets]]
name = "d"
path = "{b_data}"
id_column = "{id_column}"
categorical = {json.dumps(b_categorical or [])}
""")
    return a, b


@contextmanager
def running_nodes(a_config: Path, b_config: Path) -> Iterator[None]:
    logs = a_config.parent / "logs"
    b = NodeProcess("b", b_config, logs / "b.log")
    try:
        a = NodeProcess("a", a_config, logs / "a.log")
        try:
            yield
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
