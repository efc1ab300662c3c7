"""Both nodes as real processes on ephemeral loopback ports with mTLS (issue 2)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from fedlearn.certs import add_party_certs, make_dev_certs
from fedlearn.data import read_table
from fedlearn.errors import PeerUnavailable, PolicyViolation
from fedlearn.launch import NodeProcess
from fedlearn.protocol import messages as m
from fedlearn.transport import TransportConfig, build_channel
from party_a.peer_client import GrpcPeer
from tests.e2e.conftest import Nodes, small_demo

pytestmark = pytest.mark.e2e


def peer_with(nodes: Nodes, certs: Path, name: str) -> GrpcPeer:
    """A client of B's PeerService that presents ``name``'s certificate from ``certs``."""
    cfg = TransportConfig(
        ca=nodes.demo.root / "certs" / "ca.pem",
        cert=certs / f"{name}.pem",
        key=certs / f"{name}.key",
        deadline_s=10,
    )
    address = f"127.0.0.1:{nodes.demo.peer_port}"
    channel = build_channel(address, cfg, server_name="party-b")
    return GrpcPeer(channel, peer_name="party-b", address=address, deadline_s=10)


def test_alignment_through_both_nodes(nodes: Nodes) -> None:
    result = nodes.cli("align", "--dataset", "vip")
    assert result.returncode == 0, result.stderr
    data = nodes.demo.data
    ids_a = {i.strip() for i in read_table(data.a_train_csv)[data.id_column]}
    ids_b = {i.strip() for i in read_table(data.b_features_csv)[data.id_column]}
    assert f"A (vip): {len(ids_a)} IDs" in result.stdout
    assert f"B (vip): {len(ids_b)} IDs" in result.stdout
    assert f"intersection: {len(ids_a & ids_b)} IDs" in result.stdout
    assert 0 < len(ids_a & ids_b) < len(ids_a)


def test_client_certificate_from_another_ca_is_refused(nodes: Nodes, tmp_path: Path) -> None:
    make_dev_certs(tmp_path / "evil", ["party-a"])
    peer = peer_with(nodes, tmp_path / "evil", "party-a")
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match=r"TLS|certificate|closed"):
        peer.open_session(
            m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="vip", psi_salt=b"s" * 32)
        )
    assert time.monotonic() - started < 10


def test_partner_missing_from_allow_list_gets_permission_denied(
    nodes: Nodes, tmp_path: Path
) -> None:
    # Same CA as the demo, but a party that B's [partners] allowed does not list.
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(nodes.demo.root / "certs" / name, certs / name)
    add_party_certs(certs, ["party-c"])
    peer = peer_with(nodes, certs, "party-c")
    with pytest.raises(PolicyViolation, match="party-c"):
        peer.open_session(
            m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="vip", psi_salt=b"s" * 32)
        )


def test_peer_down_fails_fast_and_node_keeps_serving(tmp_path: Path) -> None:
    demo = small_demo(tmp_path / "down")  # B is never started
    a = NodeProcess("a", demo.a_config, demo.root / "a.log")
    try:
        nodes = Nodes(demo, a, a)
        started = time.monotonic()
        result = nodes.cli("align", "--dataset", "vip", timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 4, result.stderr
        assert "party-b" in result.stderr, result.stderr
        assert "not reachable" in result.stderr.lower(), result.stderr
        # The node at fault is named once, with one hint; A's node, which answered, is not blamed.
        assert result.stderr.count("not reachable") == 1, result.stderr
        assert result.stderr.count("Is the node running") == 1, result.stderr
        assert "party-a's node" not in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert elapsed < 20
        # A's node is still up and answering.
        listing = nodes.cli("models")
        assert listing.returncode == 0, listing.stderr
        assert "no models yet" in listing.stdout
    finally:
        assert a.stop() == 0
