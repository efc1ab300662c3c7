"""Helpers shared by the transport tests: certificates, a running server, bytes-in/out methods."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fedlearn.transport import TransportConfig, build_channel

SERVICE = "fedlearn.test.Test"


@dataclass(frozen=True)
class Certs:
    dir: Path

    def config(self, party: str, *, ca_from: Certs | None = None) -> TransportConfig:
        ca_dir = (ca_from or self).dir
        return TransportConfig(
            ca=ca_dir / "ca.pem", cert=self.dir / f"{party}.pem", key=self.dir / f"{party}.key"
        )


@dataclass
class RunningServer:
    server: grpc.Server
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self, cfg: TransportConfig, *, server_name: str | None = "party-b") -> grpc.Channel:
        return build_channel(self.address, cfg, server_name=server_name)


def method(channel: grpc.Channel, name: str, shape: str = "unary_unary") -> Any:
    """A bytes-in/bytes-out multicallable for ``/fedlearn.test.Test/<name>``."""
    return getattr(channel, shape)(f"/{SERVICE}/{name}")
