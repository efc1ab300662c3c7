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
from dataclasses import dataclass
from pathlib import Path

from fedlearn.atomic import write_atomic
from fedlearn.certs import ca_fingerprint, make_dev_certs
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


def _toml_list(values: tuple[str, ...] | list[str] | None) -> str:
    values = values or ()
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


@dataclass(frozen=True)
class PartyData:
    """One party's data file and which columns mean what (for writing its node config)."""

    path: Path
    id_column: str
    categorical: tuple[str, ...] = ()
    label_column: str | None = None
    features: tuple[str, ...] | None = None  # None: all columns but the id and the label


def _dataset_table(name: str, data: PartyData, root: Path) -> str:
    path = os.path.relpath(data.path, root)
    lines = [
        "[[datasets]]",
        f'name = "{name}"',
        f'path = "{path}"',
        f'id_column = "{data.id_column}"',
    ]
    if data.label_column:
        lines.append(f'label_column = "{data.label_column}"')
    lines.append(f"features = {_toml_list(data.features)}" if data.features else 'features = "all"')
    lines.append(f"categorical = {_toml_list(data.categorical)}")
    return "\n".join(lines) + "\n"


def write_node_configs(
    root: Path,
    a: PartyData,
    b: PartyData,
    *,
    dataset: str = "vip",
    workers: int = 1,
    min_key_bits: int = 2048,
    min_batch_size: int = 256,
    max_epochs: int = 100,
    deadline_s: float = 120.0,
) -> tuple[Path, Path, int, int]:
    """a.toml and b.toml in ``root`` for two nodes on loopback with the development certificates in
    ``root/certs`` (made if missing). Returns (a.toml, b.toml, A's control port, B's port)."""
    root = Path(root).resolve()
    certs = root / "certs"
    if not (certs / "ca.pem").exists():
        make_dev_certs(certs, ["party-a", "party-b"])
    ca_pin = ca_fingerprint(certs / "ca.pem")
    control_port, peer_port = free_port(), free_port()
    while peer_port == control_port:
        peer_port = free_port()
    a_config = root / "a.toml"
    write_atomic(
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
deadline_s = {deadline_s}

[tls.pins]                          # the one CA allowed to issue each partner's certificate
party-b = "{ca_pin}"

[peer]
address = "127.0.0.1:{peer_port}"
name = "party-b"                    # the name B's certificate must carry

{_dataset_table(dataset, a, root)}""",
    )
    b_config = root / "b.toml"
    write_atomic(
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
deadline_s = {deadline_s}

[tls.pins]                          # the one CA allowed to issue each partner's certificate
party-a = "{ca_pin}"

[partners]
allowed = ["party-a"]               # certificate names that may open sessions

[policy]
min_key_bits = {min_key_bits}
min_batch_size = {min_batch_size}
max_epochs = {max_epochs}
allow_partial_scores = true
min_rows_per_column = 8             # batch rows per feature column, for either party

{_dataset_table(dataset, b, root)}""",
    )
    return a_config, b_config, control_port, peer_port


def write_vip_demo(
    root: Path,
    *,
    rows: int = 50_000,
    seed: int = 7,
    epochs: int | str = "auto",
    key_bits: int = 2048,
    workers: int = 1,
) -> VipDemo:
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data = make_vip(root / "data", rows=rows, seed=seed)
    a_config, b_config, control_port, peer_port = write_node_configs(
        root,
        PartyData(
            data.a_train_csv,
            data.id_column,
            tuple(data.a_categorical),
            data.label_column,
            tuple(data.a_columns),
        ),
        PartyData(data.b_features_csv, data.id_column, tuple(data.b_categorical)),
        workers=workers,
    )
    job = root / "job.toml"
    write_atomic(
        job,
        f"""# Joint training of the 30-day VIP model (see fedlearn/job.py for every key).
[data]
dataset = "vip"
peer_dataset = "vip"
target_description = "30-day VIP buyers"
validation_fraction = 0.2
seed = 42

[train]
epochs = {epochs if isinstance(epochs, int) else '"auto"'}    # "auto": until converged, at most max_epochs
batch_size = "auto"             # 1024, or more rows when a party's columns need them
optimizer = "adam"
learning_rate = 0.1

[early_stopping]
monitor = "score_change"        # the joint score's RMS change per epoch (logits)
tolerance = 0.02
patience = 2

[crypto]
key_bits = {key_bits}
""",
    )
    return VipDemo(root, data, a_config, b_config, job, control_port, peer_port)
