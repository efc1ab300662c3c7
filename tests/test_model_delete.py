"""`fedlearn models delete` at A's node: B's shard first, so a partner that cannot be reached never
leaves a shard at B that no command reaches; ``--local-only`` for a partner gone for good."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fedlearn.errors import NotFound, PeerUnavailable
from fedlearn.protocol import messages as m
from fedlearn.store import ModelStore
from party_a.node import NodeA


class _Peer:
    def __init__(self, fault: Exception | None = None) -> None:
        self.fault = fault
        self.asked: list[str] = []

    def delete_model(self, request: m.DeleteModelRequest) -> m.DeleteModelResponse:
        self.asked.append(request.model_id)
        if self.fault is not None:
            raise self.fault
        return m.DeleteModelResponse()


def _node(tmp_path: Path, peer: _Peer) -> SimpleNamespace:
    store = ModelStore(tmp_path / "models")
    store.save("vip-1", {"weights": [1.0]})
    return SimpleNamespace(store=store, peer=peer, config=SimpleNamespace(peer_name="party-b"))


def test_b_down_deletes_nothing_and_says_how_to_go_on(tmp_path: Path) -> None:
    node = _node(tmp_path, _Peer(PeerUnavailable("party-b at b:50052 is not reachable")))
    with pytest.raises(PeerUnavailable, match=r"nothing was deleted.*--local-only"):
        NodeA.delete_model(node, "vip-1")  # type: ignore[arg-type]
    assert node.store.list_ids() == ["vip-1"]


def test_deleted_at_b_then_at_a_and_b_holding_none_is_said(tmp_path: Path) -> None:
    node = _node(tmp_path, _Peer())
    assert NodeA.delete_model(node, "vip-1") == (True, "", False)  # type: ignore[arg-type]
    assert node.store.list_ids() == [] and node.peer.asked == ["vip-1"]
    with pytest.raises(NotFound):
        NodeA.delete_model(node, "vip-1")  # type: ignore[arg-type]
    gone = _node(tmp_path / "2", _Peer(NotFound("no model here")))
    assert NodeA.delete_model(gone, "vip-1") == (True, "", True)  # type: ignore[arg-type]


def test_local_only_does_not_ask_b(tmp_path: Path) -> None:
    node = _node(tmp_path, _Peer(PeerUnavailable("down")))
    deleted, why, _ = NodeA.delete_model(node, "vip-1", local_only=True)  # type: ignore[arg-type]
    assert not deleted and "not asked" in why and node.peer.asked == []
    assert node.store.list_ids() == []
