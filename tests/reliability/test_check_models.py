"""B's answer to CheckModels (`fedlearn models` asks it): intact, missing or damaged, per model id.

B answers for the asking partner's models only: another partner's model reads as missing, and no
answer names a path or another model id. Bad requests (too many ids, an id with a path part) are
refused before any file is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.errors import InvalidPeerData, PolicyViolation
from fedlearn.protocol import messages as m
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import SHARD_FILE, ModelStore
from party_b.node import MAX_CHECKED_MODELS, NodeB


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeB]:
    store = ModelStore(tmp_path / "models")
    store.save("mine-ok", {"partner": "party-a", "weights": [1.0]})
    store.save("mine-cut", {"partner": "party-a", "weights": [1.0]})
    store.save("theirs", {"partner": "party-c", "weights": [2.0]})
    shard = tmp_path / "models" / "mine-cut" / SHARD_FILE
    shard.write_bytes(shard.read_bytes()[:20])
    node = NodeB(
        name="party-b",
        datasets={},
        policy=PeerPolicy(),
        model_dir=tmp_path / "models",
        allowed_partners={"party-a", "party-c"},
    )
    yield node
    node.close()


def test_each_model_is_intact_missing_or_damaged_for_this_partner(
    node: NodeB, tmp_path: Path
) -> None:
    ids = ("mine-ok", "mine-cut", "theirs", "never")
    reply = node.check_models(m.CheckModelsRequest(ids), "party-a")
    assert reply.states == (
        m.ShardState.INTACT,
        m.ShardState.DAMAGED,
        m.ShardState.MISSING,  # party-c's model: to party-a it does not exist
        m.ShardState.MISSING,
    )
    assert "not complete JSON" in reply.reasons[1]
    assert reply.reasons[0] == reply.reasons[2] == reply.reasons[3] == ""
    assert not any(str(tmp_path) in r or "theirs" in r for r in reply.reasons)
    other = node.check_models(m.CheckModelsRequest(("theirs", "mine-ok")), "party-c")
    assert other.states == (m.ShardState.INTACT, m.ShardState.MISSING)


def test_bad_requests_are_refused_before_any_file_is_read(node: NodeB) -> None:
    with pytest.raises(InvalidPeerData, match="at most"):
        node.check_models(m.CheckModelsRequest(("x",) * (MAX_CHECKED_MODELS + 1)), "party-a")
    with pytest.raises(InvalidPeerData, match="not valid"):
        node.check_models(m.CheckModelsRequest(("../models/mine-ok",)), "party-a")
    with pytest.raises(PolicyViolation):
        node.check_models(m.CheckModelsRequest(("mine-ok",)), "party-x")
