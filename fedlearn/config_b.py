"""Party B's node config (b.toml): where it listens, its TLS files, partners, policy and datasets.

[node]      name, listen, model_dir, workers, executor, ray_address
[tls]       ca, cert, key, insecure, deadline_s
[tls.pins]  party-a = "sha256:..."       # the CA that issues each partner's certificate
[partners]  allowed = ["party-a"]        # certificate names allowed to open sessions
[policy]    min_key_bits, max_key_bits, min_batch_size, max_epochs, allow_partial_scores, min_rows_per_column
[[datasets]] name, path, id_column, features ("all" or a list), categorical
"""

from __future__ import annotations

import logging
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
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.transport.config import TransportConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeBConfig:
    source: Path
    name: str
    listen: str
    model_dir: Path
    workers: int
    transport: TransportConfig
    allowed_partners: frozenset[str]
    policy: PeerPolicy
    datasets: dict[str, DatasetSpec]
    #: Where the heavy crypto runs: "process" (local pool) or "ray" (actors; docs/scaling.md).
    executor: str = "process"
    #: The party's own Ray cluster (executor = "ray"); None: a local Ray started by the node.
    ray_address: str | None = None


def load_config(path: Path | str) -> NodeBConfig:
    data, source = load_toml(path)
    if "partners" not in data and ("peer" in data or "control" in data):
        raise ConfigError(
            f"{source.name} is a config of party A's node ([peer], [control]); party-b needs B's "
            "node config (with [partners] and [policy]: README, step 2)"
        )
    root = root_section(data, source)
    node = root.get_table("node", required=True)
    name = node.get_name_value("name", required=True)
    listen = node.get_str("listen", "127.0.0.1:50052")
    model_dir = node.get_path("model_dir", "models")
    workers = node.get_int("workers", 1, minimum=1, maximum=256)
    executor, ray_address = read_executor(node)
    node.finish()
    transport = read_tls(root)
    transport.validate(listen, source=source.name)
    check_own_name(name, transport, source)

    partners = root.get_table("partners", required=True)
    allowed = partners.get_str_list("allowed")
    partners.finish()
    if not allowed:
        raise ConfigError(f"{source.name}: [partners] allowed: list at least one partner name")
    check_pins(transport, allowed, source)

    section = root.get_table("policy")
    limits, defaults = PeerPolicy._parameter_constraints, PeerPolicy()
    policy = PeerPolicy(
        **{
            key: section.get_constrained(key, limits[key], getattr(defaults, key)) for key in limits
        },
        allow_partial_scores=section.get_bool("allow_partial_scores", True),
    )
    section.finish()
    if policy.max_key_bits < policy.min_key_bits:
        raise ConfigError(
            f"{source.name}: [policy] max_key_bits = {policy.max_key_bits} is below "
            f"min_key_bits = {policy.min_key_bits}; raise max_key_bits"
        )
    if policy.min_key_bits < 2048:
        log.warning(
            "%s: [policy] min_key_bits = %d is below 2048; use only for tests",
            source.name,
            policy.min_key_bits,
        )
    datasets = read_datasets(root, label_allowed=False)
    root.finish()
    assert model_dir is not None
    return NodeBConfig(
        source,
        name,
        listen,
        model_dir,
        workers,
        transport,
        frozenset(allowed),
        policy,
        datasets,
        executor,
        ray_address,
    )
