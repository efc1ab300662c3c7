"""A ready-to-run demo folder: the synthetic VIP data, development certificates and node configs.

DIR/data/         a_train.csv, b_features.csv, a_new_users.csv, a_new_users_truth.csv
DIR/certs/        ca.pem, party-a.pem/.key, party-b.pem/.key
DIR/a.toml        A's node (control API on loopback, mTLS to B)
DIR/b.toml        B's node (mTLS, allows party-a, default policy)
DIR/job.toml      the training job
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fedlearn.certs import make_dev_certs
from fedlearn.datasets import VipPaths, make_vip


@dataclass(frozen=True)
class VipDemo:
    root: Path
    data: VipPaths
    a_config: Path
    b_config: Path
    job: Path
    control_port: int
    peer_port: int

    def describe(self) -> list[str]:
        return [
            f"data:        {self.data.out_dir}",
            f"A's config:  {self.a_config}   (party-a serve --config {self.a_config})",
            f"B's config:  {self.b_config}   (party-b serve --config {self.b_config})",
            f"job:         {self.job}        (fedlearn train --config {self.a_config} --job {self.job})",
            f"new users:   {self.data.a_new_users_csv}",
        ]


def free_port() -> int:
    """A currently free loopback TCP port (for demo configs; the node binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _write(path: Path, text: str) -> None:
    """Write a small text file atomically (temp file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_vip_demo(
    root: Path,
    *,
    rows: int = 50_000,
    seed: int = 7,
    epochs: int = 10,
    key_bits: int = 2048,
    workers: int = 1,
) -> VipDemo:
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data = make_vip(root / "data", rows=rows, seed=seed)
    certs = root / "certs"
    if not (certs / "ca.pem").exists():
        make_dev_certs(certs, ["party-a", "party-b"])
    control_port, peer_port = free_port(), free_port()
    while peer_port == control_port:
        peer_port = free_port()
    a_features = [c for c in data.a_columns]
    a_config = root / "a.toml"
    _write(
        a_config,
        f"""# Party A's node: the label party. Paths are relative to this file.
[node]
name = "party-a"                    # must be the name in [tls] cert
model_dir = "models-a"
workers = {workers}                         # worker processes for the encrypted math

[control]
listen = "127.0.0.1:{control_port}"     # the control API the fedlearn CLI talks to

[tls]
ca = "certs/ca.pem"
cert = "certs/party-a.pem"
key = "certs/party-a.key"

[peer]
address = "127.0.0.1:{peer_port}"
name = "party-b"                    # the name B's certificate must carry

[[datasets]]
name = "vip"
path = "data/{data.a_train_csv.name}"
id_column = "{data.id_column}"
label_column = "{data.label_column}"
features = {_toml_list(a_features)}
categorical = {_toml_list(data.a_categorical)}
""",
    )
    b_config = root / "b.toml"
    _write(
        b_config,
        f"""# Party B's node: the feature party. Paths are relative to this file.
[node]
name = "party-b"
listen = "127.0.0.1:{peer_port}"
model_dir = "models-b"
workers = {workers}

[tls]
ca = "certs/ca.pem"
cert = "certs/party-b.pem"
key = "certs/party-b.key"

[partners]
allowed = ["party-a"]               # certificate names that may open sessions

[policy]
min_key_bits = 2048
min_batch_size = 256
max_epochs = 50
allow_partial_scores = true

[[datasets]]
name = "vip"
path = "data/{data.b_features_csv.name}"
id_column = "{data.id_column}"
features = "all"
categorical = {_toml_list(data.b_categorical)}
""",
    )
    job = root / "job.toml"
    _write(
        job,
        f"""# Joint training of the 30-day VIP model (see fedlearn/job.py for every key).
[data]
dataset = "vip"
peer_dataset = "vip"
validation_fraction = 0.2
seed = 42

[train]
epochs = {epochs}
batch_size = 1024
optimizer = "momentum"
learning_rate = 0.02

[early_stopping]
monitor = "loss"
tolerance = 0.0001
patience = 2

[crypto]
key_bits = {key_bits}
""",
    )
    return VipDemo(root, data, a_config, b_config, job, control_port, peer_port)
