"""``party-a serve --config a.toml``: A's node, serving the control API its own CLI talks to."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from fedlearn.config_a import load_config
from fedlearn.nodecli import check_datasets, node_main
from fedlearn.transport import build_server, serve_until_signal
from party_a.control import ControlServicer, add_to_server
from party_a.node import NodeA

log = logging.getLogger("party_a")


def serve(args: argparse.Namespace) -> signal.Signals | None:
    config = load_config(args.config)
    node = NodeA(config)
    server, port = build_server(config.control_listen, config.transport, source=config.source.name)
    add_to_server(ControlServicer(node), server)
    host = config.control_listen.rsplit(":", 1)[0]
    print(
        f"party-a {config.name} control listening on {host}:{port}; peer {config.peer_name} at "
        f"{config.peer_address}",
        flush=True,
    )
    check_datasets(config.datasets, log)
    try:
        return serve_until_signal(server, grace_s=5.0)
    finally:
        node.close()


def main(argv: list[str] | None = None) -> None:
    sys.exit(
        node_main(
            "party-a",
            "Party A's node: drives alignment, training and scoring with B "
            "and serves the control API for the fedlearn CLI.",
            serve,
            argv,
        )
    )


if __name__ == "__main__":
    main()
