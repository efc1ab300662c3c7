"""Mutual TLS over real gRPC on loopback: who may connect, and what each side learns."""

from __future__ import annotations

import time

import grpc
import pytest

from fedlearn.errors import PeerUnavailable
from fedlearn.transport import (
    TransportConfig,
    call_unary,
    certificate_name,
    peer_identity,
    wait_ready,
)

from .support import Certs, method


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    return (peer_identity(context) or "<none>").encode()


HANDLERS = {"WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami)}


def test_mtls_handshake_and_peer_identity(certs: Certs, serve) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    channel = running.channel(certs.config("party-a"), server_name="party-b")
    answer = call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="party-b")
    assert answer == b"party-a"
    wait_ready(channel, timeout_s=5, peer="party-b")


def test_certificate_name_is_the_party(certs: Certs) -> None:
    assert certificate_name(certs.dir / "party-a.pem") == "party-a"
    assert certificate_name(certs.dir / "ca.pem") == "fedlearn development CA"


def test_client_with_certificate_from_another_ca_is_refused(
    certs: Certs, other_certs: Certs, serve
) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    # mallory trusts our CA (so it accepts B's certificate) but holds a certificate from another CA.
    intruder = other_certs.config("mallory", ca_from=certs)
    channel = running.channel(intruder, server_name="party-b")
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match="TLS handshake with party-b failed") as info:
        # A large backoff: were the TLS failure retried, this would take over 3 s.
        call_unary(method(channel, "WhoAmI"), b"", deadline_s=10, peer="party-b", backoff_s=1.0)
    assert time.monotonic() - started < 3
    assert "does not trust this node's certificate" in str(info.value)


def test_server_with_certificate_from_another_ca_is_refused(
    certs: Certs, other_certs: Certs, serve
) -> None:
    running = serve(other_certs.config("party-b", ca_from=certs), HANDLERS)
    channel = running.channel(certs.config("party-a"), server_name="party-b")
    with pytest.raises(PeerUnavailable, match="does not trust the peer's certificate"):
        call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="party-b")


def test_server_name_mismatch_is_refused(certs: Certs, serve) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    # The server presents party-b's certificate (valid, from the right CA), but we want party-a.
    channel = running.channel(certs.config("party-a"), server_name="party-a")
    with pytest.raises(PeerUnavailable, match=r"set \[peer\] name in this node"):
        call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="party-a")


def test_without_server_name_the_address_is_verified(certs: Certs, serve) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    # 127.0.0.1 is among the certificate's IP subject alternative names.
    channel = running.channel(certs.config("party-a"), server_name=None)
    assert call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="p") == b"party-a"


def test_wait_ready_raises_tls_failure_at_once(certs: Certs, other_certs: Certs, serve) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    channel = running.channel(other_certs.config("mallory", ca_from=certs))
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match="TLS handshake"):
        wait_ready(channel, timeout_s=10, peer="party-b")
    assert time.monotonic() - started < 3


def test_plaintext_client_to_tls_server_is_refused(certs: Certs, serve) -> None:
    running = serve(certs.config("party-b"), HANDLERS)
    channel = running.channel(TransportConfig(insecure=True), server_name=None)
    with pytest.raises(PeerUnavailable, match="TLS handshake"):
        call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="party-b")


def test_tls_client_to_plaintext_server_is_refused(certs: Certs, serve) -> None:
    running = serve(TransportConfig(insecure=True), HANDLERS)
    channel = running.channel(certs.config("party-a"))
    with pytest.raises(PeerUnavailable, match="does not speak TLS"):
        call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="party-b")


def test_insecure_on_loopback_works_without_identity(serve) -> None:
    running = serve(TransportConfig(insecure=True), HANDLERS)
    channel = running.channel(TransportConfig(insecure=True), server_name=None)
    assert call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer="p") == b"<none>"
