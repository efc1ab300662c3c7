"""Start-up checks on the transport config: each mistake stops the node with a message naming it."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fedlearn.errors import ConfigError
from fedlearn.transport import TransportConfig, build_channel, build_server, is_loopback_address

from .support import Certs

INSECURE = TransportConfig(insecure=True)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:0", "127.3.4.5:50051", "[::1]:50051", "localhost:50051", "LOCALHOST:1", "unix:/x"],
)
def test_loopback_addresses(address: str) -> None:
    assert is_loopback_address(address)
    INSECURE.validate(address, source="a.toml")


@pytest.mark.parametrize(
    "address", ["0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.5:50051", "node-b:443", "[::2]:1"]
)
def test_insecure_off_loopback_is_refused(address: str) -> None:
    assert not is_loopback_address(address)
    with pytest.raises(ConfigError, match=r"b\.toml: \[tls\] insecure = true is allowed only"):
        INSECURE.validate(address, source="b.toml")


def test_build_server_refuses_insecure_on_all_interfaces() -> None:
    with pytest.raises(ConfigError, match=r"set insecure = false or listen on 127\.0\.0\.1"):
        build_server("0.0.0.0:0", INSECURE, source="b.toml")


def test_build_channel_refuses_insecure_to_a_remote_peer() -> None:
    with pytest.raises(ConfigError, match="only on a loopback address"):
        build_channel("10.1.2.3:50051", INSECURE, server_name=None, source="a.toml")


def test_insecure_together_with_tls_files_is_contradictory(certs: Certs) -> None:
    cfg = replace(certs.config("party-a"), insecure=True)
    with pytest.raises(ConfigError, match=r"insecure = true contradicts ca, cert, key being set"):
        cfg.validate("127.0.0.1:1", source="a.toml")


def test_missing_cert_file_is_named(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "certs" / "x.pem"
    cfg = replace(certs.config("party-a"), cert=missing)
    with pytest.raises(ConfigError) as info:
        cfg.validate("127.0.0.1:1", source="a.toml")
    assert str(info.value) == f"a.toml: [tls] cert: file {missing} does not exist"


@pytest.mark.parametrize("key", ["ca", "cert", "key"])
def test_unset_tls_file_is_named(certs: Certs, key: str) -> None:
    changes: dict[str, Any] = {key: None}
    cfg = replace(certs.config("party-a"), **changes)
    with pytest.raises(ConfigError, match=rf"a\.toml: \[tls\] {key}: not set; .*fedlearn certs"):
        cfg.validate("127.0.0.1:1", source="a.toml")


def test_key_of_another_party_is_a_mismatch(certs: Certs) -> None:
    cfg = replace(certs.config("party-a"), key=certs.dir / "party-b.key")
    with pytest.raises(ConfigError, match=r"\[tls\] key: .*party-b\.key does not belong to"):
        cfg.validate("127.0.0.1:1", source="a.toml")


def test_not_pem(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"\[tls\] ca: .*junk\.pem is not a PEM certificate"):
        replace(certs.config("party-a"), ca=junk).validate("127.0.0.1:1", source="a.toml")
    with pytest.raises(ConfigError, match=r"\[tls\] key: .*junk\.pem is not a PEM private key"):
        replace(certs.config("party-a"), key=junk).validate("127.0.0.1:1", source="a.toml")


def test_directory_instead_of_file(certs: Certs) -> None:
    cfg = replace(certs.config("party-a"), cert=certs.dir)
    with pytest.raises(ConfigError, match=r"\[tls\] cert: .* is not a file"):
        cfg.validate("127.0.0.1:1", source="a.toml")


@pytest.mark.parametrize("deadline", [0, -1.0, float("nan"), float("inf")])
def test_deadline_must_be_positive(deadline: float) -> None:
    with pytest.raises(ConfigError, match="deadline_s: expected a positive number"):
        TransportConfig(insecure=True, deadline_s=deadline).validate("127.0.0.1:1", source="x")


def test_valid_tls_config_passes(certs: Certs) -> None:
    certs.config("party-a").validate("0.0.0.0:50051", source="a.toml")


def test_taken_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            build_server(f"127.0.0.1:{port}", INSECURE, source="b.toml")


def test_second_node_on_the_same_port_is_refused() -> None:
    # gRPC sets SO_REUSEPORT by default, which would let both bind; server_options turns it off.
    first, port = build_server("127.0.0.1:0", INSECURE)
    try:
        with pytest.raises(ConfigError, match="cannot listen on"):
            build_server(f"127.0.0.1:{port}", INSECURE)
    finally:
        first.stop(None)
