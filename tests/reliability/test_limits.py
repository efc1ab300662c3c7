"""Hard limits at B, checked before the work: sessions, leases, key sizes, identity, log volume."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.crypto.keys import generate_keypair, public_key_to_bytes
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.errors import Busy, InvalidPeerData, PolicyViolation, SessionError
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.transport import exit_code_for
from fedlearn.transport.malformed import MalformedRequestFilter
from party_b.node import NodeB
from party_b.servicer import PeerServicer
from tests.protocol.harness import TEST_POLICY, fate_specs


def _node(tmp_path: Path, session_ttl_s: float | None = None, **policy: object) -> NodeB:
    _, b_spec = fate_specs("breast")
    return NodeB(
        name="party-b",
        datasets={"d": b_spec},
        policy=dataclasses.replace(TEST_POLICY, **policy),  # type: ignore[arg-type]
        model_dir=tmp_path / "b",
        allowed_partners={"party-a", "party-c"},
        session_ttl_s=session_ttl_s,
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeB]:
    role = _node(tmp_path, max_sessions=3, max_sessions_per_partner=2, max_training_sessions=1)
    yield role
    role.close()


ALIGN = m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="d", psi_salt=b"s" * 32)


def _train_request(key_bits: int = 512) -> tuple[m.OpenSessionRequest, OwnKeyEngine]:
    own = OwnKeyEngine(generate_keypair(512))
    key = m.PaillierKey(n=public_key_to_bytes(own.public_key), djn_base=int_to_bytes(own.djn_base))
    params = m.TrainParams(epochs=2, batch_size=128, key_bits=key_bits)
    return m.OpenSessionRequest(m.Purpose.TRAIN, "d", b"s" * 32, params, key), own


def test_sessions_are_capped_per_partner_and_in_all(node: NodeB) -> None:
    first = node.open_session(ALIGN, "party-a")
    node.open_session(ALIGN, "party-a")
    with pytest.raises(Busy, match=r"2 open sessions for party-a.*max_sessions_per_partner") as e:
        node.open_session(ALIGN, "party-a")
    assert exit_code_for(e.value) == 4
    node.open_session(ALIGN, "party-c")  # another partner still gets in ...
    with pytest.raises(Busy, match=r"3 open sessions, the limit \(max_sessions\)"):
        node.open_session(ALIGN, "party-c")  # ... until the node's total is reached
    node.close_session(m.CloseSessionRequest(first.session_id), "party-a")
    node.open_session(ALIGN, "party-a")  # closing frees the room


def test_training_sessions_with_helpers_are_capped(node: NodeB) -> None:
    request, own = _train_request()
    try:
        opened = node.open_session(request, "party-a")
        with pytest.raises(Busy, match="1 training sessions, the limit"):
            node.open_session(request, "party-c")
        node.open_session(ALIGN, "party-c")  # alignment needs no helper
        node.close_session(m.CloseSessionRequest(opened.session_id), "party-a")
        node.open_session(request, "party-c")
    finally:
        own.close()


def test_key_sizes_above_the_policy_are_refused_before_key_generation(node: NodeB) -> None:
    request, own = _train_request(key_bits=16384)
    try:
        started = time.perf_counter()
        with pytest.raises(PolicyViolation, match="key_bits 16384 is above the maximum 4096"):
            node.open_session(request, "party-a")
        assert time.perf_counter() - started < 2.0  # a 16384-bit key pair takes minutes
        odd = dataclasses.replace(request, train=dataclasses.replace(request.train, key_bits=1025))
        with pytest.raises(PolicyViolation, match="key_bits: must be a multiple of 64"):
            node.open_session(odd, "party-a")
        small = dataclasses.replace(request.train, key_bits=512)
        huge = dataclasses.replace(
            request, train=small, paillier_key=m.PaillierKey(n=b"\xff" * 1024)
        )
        with pytest.raises(InvalidPeerData, match="more than the 4096-bit limit"):
            node.open_session(huge, "party-a")
    finally:
        own.close()
    assert not node._sessions and not node._opening


def test_a_vanished_partners_sessions_are_reclaimed_after_the_lease(tmp_path: Path) -> None:
    role = _node(tmp_path, session_ttl_s=0.3)  # the lease, shortened for the test
    request, own = _train_request()
    try:
        busy = role.open_session(ALIGN, "party-a")
        idle = role.open_session(request, "party-a")
        helper = role._sessions[idle.session_id].training
        assert helper is not None
        role._sessions[busy.session_id].lock.acquire()  # a step still running at B
        deadline = time.monotonic() + 10
        while idle.session_id in role._sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert idle.session_id not in role._sessions
        assert helper.own._stop.is_set()  # type: ignore[attr-defined]  # its helper was stopped
        assert busy.session_id in role._sessions  # a running step keeps its session
        role._sessions[busy.session_id].lock.release()
        with pytest.raises(SessionError, match="unknown or expired session"):
            role.psi_peer_set(m.PsiPeerSetRequest(idle.session_id), "party-a")
    finally:
        own.close()
        role.close()


class _Context:
    def __init__(self, active: bool = True) -> None:
        self.active = active

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def is_active(self) -> bool:
        return self.active


def test_a_partner_that_is_not_allowed_is_refused_before_its_stream_is_read(
    node: NodeB,
) -> None:
    read = []

    def stream() -> Iterator[object]:
        read.append(1)
        yield from ()

    servicer = PeerServicer(node, insecure_identity="party-z")
    with pytest.raises(PolicyViolation, match="partner 'party-z' is not allowed"):
        servicer.PsiBlind(stream(), _Context())
    assert read == []


def test_a_stream_cut_by_a_partner_that_went_away_is_neither_used_nor_refused(
    node: NodeB,
) -> None:
    """A partner killed mid-message: the stream ends early and the call is no longer active. What
    arrived is not the partner's word: B does not use it and does not end the session over it
    (the lease reclaims it); on a live call the same message goes to B's checks as ever."""
    from fedlearn.errors import PeerUnavailable
    from fedlearn.proto.v1 import peer_pb2

    opened = node.open_session(ALIGN, "party-a")
    cut = peer_pb2.PsiBlindRequest(session_id=opened.session_id)  # the points never came
    servicer = PeerServicer(node, insecure_identity="party-a")
    with pytest.raises(PeerUnavailable, match="went away during its PsiBlind message"):
        servicer.PsiBlind(iter([cut]), _Context(active=False))
    assert opened.session_id in node._sessions  # still there, for its lease
    # A live call: the message goes to B's own checks (an empty chunk of points is accepted).
    (answer,) = list(servicer.PsiBlind(iter([cut]), _Context()))
    assert answer.accepted == 0


def test_malformed_requests_are_one_line_each_at_most_every_interval() -> None:
    now = [0.0]
    folder = MalformedRequestFilter(interval_s=10.0, clock=lambda: now[0])
    logger = logging.getLogger("test-malformed")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.addFilter(folder)
    logger.propagate = False
    for step in range(5000):
        now[0] = step * 0.01  # 5,000 requests in 50 s
        try:
            raise ValueError("Error parsing message")
        except ValueError:
            logger.exception("Exception deserializing message!")
    logger.warning("something else")
    assert folder.total == 5000
    assert len(records) == 5 + 1
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    assert "ValueError" in records[1].getMessage() and "999 more" in records[1].getMessage()
    assert records[-1].getMessage() == "something else"
