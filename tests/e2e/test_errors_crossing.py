"""Errors that cross from B to A name no path and no ID (issue 11): each kind, triggered from A's side.

B's real node logic (NodeB) behind its real servicer, on a peer-facing gRPC server on loopback; A
calls it through its real client. B's files live under a folder whose name is a marker, B's data
holds a raw ID that is in no intersection, B's model folder holds other partners' models: none of
these may appear in what A receives, while B's log keeps the detail.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from fedlearn import errors as fe
from fedlearn.config import DatasetSpec
from fedlearn.protocol import messages as m
from fedlearn.store import ModelStore
from fedlearn.transport import TransportConfig, build_server, start_server
from party_a.peer_client import GrpcPeer
from party_b.node import NodeB
from party_b.servicer import PeerServicer, add_to_server
from tests.protocol.harness import TEST_POLICY

MARKER = "b-private-folder-7f3e"
RAW_ID = "raw-id-outside-the-intersection-9931"
OTHER_MODEL = "their-model-0042"
OTHER_PARTNER = "rival-bank-17"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[GrpcPeer, NodeB]]:
    root = tmp_path / MARKER
    root.mkdir()
    good = root / "good.csv"
    good.write_text("id,x\n" + "".join(f"u{i},{i % 7}\n" for i in range(40)))
    dup = root / "dup.csv"
    dup.write_text(f"id,x\nu1,1\n{RAW_ID},2\n{RAW_ID},3\n")
    store = ModelStore(root / "models")
    store.save(OTHER_MODEL, {"partner": OTHER_PARTNER, "dataset": "good"})
    store.save("mine", {"partner": "party-a", "dataset": "good"})
    node = NodeB(
        name="party-b",
        datasets={
            "good": DatasetSpec("good", good, "id", None, None, []),
            "dup": DatasetSpec("dup", dup, "id", None, None, []),
            "gone": DatasetSpec("gone", root / "gone.csv", "id", None, None, []),
        },
        policy=TEST_POLICY,
        model_dir=root / "models",
        allowed_partners={"party-a"},
    )
    cfg = TransportConfig(insecure=True)
    server, port = build_server("127.0.0.1:0", cfg, max_workers=4, peer_facing=True)
    add_to_server(PeerServicer(node, insecure_identity="party-a"), server)
    start_server(server)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield GrpcPeer(channel, peer_name="party-b", address="here", deadline_s=30), node
    finally:
        channel.close()
        server.stop(None)
        node.close()


def _open(dataset: str, model_id: str = "", purpose: m.Purpose = m.Purpose.ALIGN) -> Callable:
    request = m.OpenSessionRequest(
        purpose=purpose, dataset=dataset, psi_salt=secrets.token_bytes(32), model_id=model_id
    )
    return lambda peer: peer.open_session(request)


def _internal_error(peer: GrpcPeer, node: NodeB) -> Callable:
    def broken(*args: object) -> None:
        raise RuntimeError(f"{node.store.root}/{OTHER_MODEL}: {RAW_ID}")

    setattr(node, "close_session", broken)  # noqa: B010 (mypy: a method replaced on purpose)
    return lambda p: p.close_session(m.CloseSessionRequest("0" * 32))


TRIGGERS: dict[str, tuple[Callable[[GrpcPeer, NodeB], Callable], type]] = {
    # kind of error: (how A triggers it, the class A gets)
    "unknown model (folder and other models' ids)": (
        lambda p, n: _open("good", "no-such-model", m.Purpose.SCORE),
        fe.NotFound,
    ),
    "another partner's model": (
        lambda p, n: _open("good", OTHER_MODEL, m.Purpose.SCORE),
        fe.NotFound,
    ),
    "deleting another partner's model": (
        lambda p, n: lambda peer: peer.delete_model(m.DeleteModelRequest(OTHER_MODEL)),
        fe.NotFound,
    ),
    "B's data file is missing (path)": (lambda p, n: _open("gone"), fe.DataError),
    "B's data has a duplicate raw ID": (lambda p, n: _open("dup"), fe.DataError),
    "internal error quoting a path and an ID": (_internal_error, fe.FedlearnError),
}


@pytest.mark.parametrize("kind", sorted(TRIGGERS))
def test_errors_crossing_to_a_name_no_path_and_no_id(
    peer: tuple[GrpcPeer, NodeB], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, node = peer
    trigger, expected = TRIGGERS[kind]
    call = trigger(client, node)
    with caplog.at_level(logging.WARNING), pytest.raises(expected) as info:
        call(client)
    crossed = str(info.value)
    secrets_of_b = [MARKER, RAW_ID, OTHER_PARTNER, str(node.store.root), "/tmp"]
    if "another partner's model" not in kind:  # there A named the model id itself
        secrets_of_b.append(OTHER_MODEL)
    for secret in secrets_of_b:
        assert secret not in crossed, f"{kind}: {secret!r} crossed in {crossed!r}"
    # B's own log keeps what A does not see (the full message, or the traceback).
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert MARKER in logged or RAW_ID in logged or OTHER_PARTNER in logged, logged


def test_refusals_about_the_request_still_say_what_is_wrong(peer: tuple[GrpcPeer, NodeB]) -> None:
    client, _ = peer
    with pytest.raises(fe.NotFound, match="no model 'no-such-model' here"):
        _open("good", "no-such-model", m.Purpose.SCORE)(client)
    with pytest.raises(fe.NotFound, match="no dataset 'nope'"):
        _open("nope")(client)
    with pytest.raises(fe.DataError, match=r"reference [0-9a-f]{8}"):
        _open("dup")(client)
