"""Party A's node config (a.toml): its control API, TLS files, the peer it calls, and its datasets.

[node]      name, model_dir, workers, executor, ray_address
[control]   listen                          # A's control API for the `fedlearn` CLI
[tls]       ca, cert, key, insecure, deadline_s
[tls.pins]  party-b = "sha256:..."       # the CA that issues B's certificate
[peer]      address, name                    # B's address and the name in B's certificate
[[datasets]] name, path, id_column, label_column, features, categorical
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedlearn.config import (
    DatasetSpec,
    check_own_name,
    check_pins,
    load_toml,
    read_datasets,
    read_executor,
    read_tls,
    root_section,
)
from fedlearn.errors import ConfigError
from fedlearn.transport.config import TransportConfig


@dataclass(frozen=True)
class NodeAConfig:
    source: Path
    name: str
    control_listen: str
    model_dir: Path
    workers: int
    transport: TransportConfig
    peer_address: str
    peer_name: str
    datasets: dict[str, DatasetSpec]
    #: Where the heavy crypto runs: "process" (local pool) or "ray" (actors; docs/scaling.md).
    executor: str = "process"
    #: The party's own Ray cluster (executor = "ray"); None: a local Ray started by the node.
    ray_address: str | None = None


def load_config(path: Path | str) -> NodeAConfig:
    data, source = load_toml(path)
    if "peer" not in data and ("partners" in data or "policy" in data):
        raise ConfigError(
            f"{source.name} is a config of party B's node ([partners], [policy]); party-a and the "
            "fedlearn CLI need A's node config (with [peer] and [control]: README, step 3)"
        )
    root = root_section(data, source)
    node = root.get_table("node", required=True)
    name = node.get_name_value("name", required=True)
    model_dir = node.get_path("model_dir", "models")
    workers = node.get_int("workers", 1, minimum=1, maximum=256)
    executor, ray_address = read_executor(node)
    node.finish()
    control = root.get_table("control")
    control_listen = control.get_str("listen", "127.0.0.1:50051")
    control.finish()
    transport = read_tls(root)
    transport.validate(control_listen, source=source.name)
    check_own_name(name, transport, source)
    peer = root.get_table("peer", required=True)
    peer_address = peer.get_str("address", required=True)
    peer_name = peer.get_name_value("name", required=True)
    peer.finish()
    transport.validate(peer_address, source=source.name)
    check_pins(transport, [peer_name], source)
    datasets = read_datasets(root, label_allowed=True)
    root.finish()
    assert model_dir is not None
    return NodeAConfig(
        source,
        name,
        control_listen,
        model_dir,
        workers,
        transport,
        peer_address,
        peer_name,
        datasets,
        executor,
        ray_address,
    )
