"""Fixtures for transport tests: development certificates from two unrelated CAs, and a tiny server.

Servers bind 127.0.0.1 port 0 and use bytes-in/bytes-out generic handlers, so these tests do not
depend on the project's .proto files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
import pytest

from fedlearn.certs import make_dev_certs
from fedlearn.transport import TransportConfig, build_server, start_server

from .support import SERVICE, Certs, RunningServer

Handlers = Mapping[str, grpc.RpcMethodHandler]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out, ["party-a", "party-b"])
    return Certs(out)


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates with the same party names, issued by a different CA."""
    out = tmp_path_factory.mktemp("other-certs")
    make_dev_certs(out, ["party-a", "party-b", "mallory"])
    return Certs(out)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """``serve(cfg, handlers)`` starts a server on 127.0.0.1:0; every one is stopped at teardown."""
    started: list[grpc.Server] = []

    def start(cfg: TransportConfig, handlers: Handlers, **kwargs: Any) -> RunningServer:
        server, port = build_server("127.0.0.1:0", cfg, max_workers=4, **kwargs)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, dict(handlers)),)
        )
        start_server(server)
        started.append(server)
        return RunningServer(server, port)

    yield start
    for server in started:
        server.stop(None)
