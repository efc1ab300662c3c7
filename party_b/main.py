"""``party-b serve --config b.toml``: B's node, a PeerService over B's own data files."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from fedlearn.config_b import load_config
from fedlearn.nodecli import check_datasets, node_main
from fedlearn.transport import build_server, serve_until_signal
from party_b.node import NodeB
from party_b.servicer import PeerServicer, add_to_server

log = logging.getLogger("party_b")


def serve(args: argparse.Namespace) -> signal.Signals | None:
    config = load_config(args.config)
    role = NodeB(
        name=config.name,
        datasets=config.datasets,
        policy=config.policy,
        model_dir=config.model_dir,
        allowed_partners=config.allowed_partners,
        workers=config.workers,
        background="process",  # a node: fill obfuscator pools on a core the node is not using
        executor=config.executor,
        ray_address=config.ray_address,
    )
    insecure_identity = None
    if config.transport.insecure:
        insecure_identity = sorted(config.allowed_partners)[0]
        log.warning(
            "insecure transport on loopback: callers are taken to be %r without a certificate",
            insecure_identity,
        )
    # peer_facing: error messages to A name no path and no ID (fedlearn.transport.errors).
    server, port = build_server(
        config.listen, config.transport, source=config.source.name, peer_facing=True
    )
    servicer = PeerServicer(role, insecure_identity=insecure_identity, transport=config.transport)
    add_to_server(servicer, server)
    host = config.listen.rsplit(":", 1)[0]
    # One line on stdout that scripts can wait for (the port matters when the config asks for :0).
    print(f"party-b {config.name} listening on {host}:{port}", flush=True)
    log.info(
        "datasets: %s; partners: %s; policy: %s",
        ", ".join(config.datasets),
        ", ".join(sorted(config.allowed_partners)),
        config.policy,
    )
    check_datasets(config.datasets, log)
    try:
        return serve_until_signal(server, grace_s=5.0)
    finally:
        role.close()


def main(argv: list[str] | None = None) -> None:
    sys.exit(
        node_main(
            "party-b",
            "Party B's node: answers A's private set intersection, "
            "training and scoring calls over mutual TLS.",
            serve,
            argv,
        )
    )


if __name__ == "__main__":
    main()
