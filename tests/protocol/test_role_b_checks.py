"""B treats every value from A as untrusted: step order, session, partner, counts, ranges (issue 3)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedlearn.crypto.keys import generate_keypair, public_key_to_bytes
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.wire import ciphertext_width
from fedlearn.data import load_party_table
from fedlearn.errors import PolicyViolation, SessionEnded, SessionError
from fedlearn.model import epoch_batches
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.protocol.train_b import TrainingB
from party_a.align import open_and_align
from party_b.node import NodeB
from tests.protocol.harness import TEST_POLICY, fate_specs


def _breast_node(tmp: Path) -> NodeB:
    return NodeB(
        name="party-b",
        datasets={"d": fate_specs("breast")[1]},
        policy=TEST_POLICY,
        model_dir=tmp / "b",
        allowed_partners={"party-a"},
    )


def _train_request(
    own: OwnKeyEngine, params: m.TrainParams, version: int = m.TRAINING_PROTOCOL
) -> m.OpenSessionRequest:
    key = m.PaillierKey(n=public_key_to_bytes(own.public_key), djn_base=int_to_bytes(own.djn_base))
    return m.OpenSessionRequest(
        purpose=m.Purpose.TRAIN,
        dataset="d",
        train=params,
        paillier_key=key,
        training_protocol=version,
    )


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[NodeB, str, int, int]]:
    """A training session on breast, aligned; returns (role, session id, A's n, rows per batch)."""
    a_spec, _ = fate_specs("breast")
    role = _breast_node(tmp_path)
    own = OwnKeyEngine(generate_keypair(512))
    params = m.TrainParams(epochs=2, batch_size=128, key_bits=512)
    request = _train_request(own, params)
    ids = [str(i) for i in load_party_table(a_spec.path, id_column="id", label_column="y").ids]
    alignment = open_and_align(InMemoryPeer(role, identity="party-a"), request, ids)
    training = role._sessions[alignment.session.session_id].training
    assert isinstance(training, TrainingB)
    first_batch = epoch_batches(training.train_rows, params.batch_size, params.seed, 0)[0]
    yield role, alignment.session.session_id, int(own.public_key.n), len(first_batch)
    own.close()
    role.close()


@contextlib.contextmanager
def _refused(caplog: pytest.LogCaptureFixture, reason: str) -> Iterator[None]:
    """Expect B to end the session with the generic reason, and ``reason`` in B's own log."""
    with caplog.at_level("WARNING"), pytest.raises(SessionEnded, match="ended the session"):
        yield
    assert re.search(reason, caplog.text), caplog.text


@pytest.mark.parametrize(
    "send",
    [
        lambda sid: ("gradient", m.BatchGradientRequest(m.BatchHeader(sid, 0, 0), b"", 1)),
        lambda sid: ("forward", m.BatchForwardRequest(m.BatchHeader(sid, 0, 3), b"", b"")),
        lambda sid: ("loss", m.EpochLossRequest(sid, 0, b"")),
    ],
)
def test_steps_out_of_order_are_refused_and_end_the_session(
    session: tuple[NodeB, str, int, int], caplog: pytest.LogCaptureFixture, send: Any
) -> None:
    role, sid, _, _ = session
    step, request = send(sid)
    call: dict[str, Any] = {
        "gradient": role.batch_gradient,
        "forward": role.batch_forward,
        "loss": role.epoch_loss,
    }
    with _refused(caplog, "out of order"):
        call[step](request, "party-a")
    # The session is gone: even a request in order is now refused.
    with pytest.raises(SessionError, match="unknown or expired session"):
        role.batch_forward(m.BatchForwardRequest(m.BatchHeader(sid, 0, 0)), "party-a")


def test_unknown_session_and_other_partner_are_refused(
    session: tuple[NodeB, str, int, int],
) -> None:
    role, sid, _, _ = session
    with pytest.raises(SessionError, match="unknown or expired session"):
        role.batch_forward(m.BatchForwardRequest(m.BatchHeader("nope", 0, 0)), "party-a")
    with pytest.raises(PolicyViolation, match="not allowed"):
        role.batch_forward(m.BatchForwardRequest(m.BatchHeader(sid, 0, 0)), "party-c")


@pytest.mark.parametrize("case", ["length", "count", "zero", "too big", "non-unit"])
def test_malformed_ciphertexts_are_refused(
    session: tuple[NodeB, str, int, int], caplog: pytest.LogCaptureFixture, case: str
) -> None:
    role, sid, n, count = session
    width = ciphertext_width(n)
    header = m.BatchHeader(sid, 0, 0)
    one = (1).to_bytes(width, "big")
    bad = {
        "zero": bytes(width),
        "too big": (n * n).to_bytes(width, "big"),
        "non-unit": (3 * n).to_bytes(width, "big"),  # shares the factors of n
    }
    if case == "length":
        request, reason = m.BatchForwardRequest(header, b"\x01" * (width + 1), b""), "whole number"
    elif case == "count":
        request, reason = m.BatchForwardRequest(header, one, b""), "expected"
    else:
        payload = one * (count - 1) + bad[case]
        request = m.BatchForwardRequest(header, payload, payload)
        reason = "shares a factor with n" if case == "non-unit" else r"\[1, n\^2\)"
    with _refused(caplog, reason):
        role.batch_forward(request, "party-a")
    assert sid not in role._sessions


def test_partial_scores_only_between_epochs(session: tuple[NodeB, str, int, int]) -> None:
    role, sid, _, _ = session
    # Between epochs (before the first batch) it is answered.
    reply = role.partial_scores(m.PartialScoresRequest(sid, m.RowSubset.VALIDATION), "party-a")
    training = role._sessions[sid].training
    assert isinstance(training, TrainingB)
    assert len(reply.scores) == 8 * len(training.validation_rows)
    # The scoring subset is not for training sessions.
    with pytest.raises(SessionError):
        role.partial_scores(m.PartialScoresRequest(sid, m.RowSubset.ALIGNED), "party-a")


def test_gradient_values_beyond_the_session_limit_are_refused(
    session: tuple[NodeB, str, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    """As many values as rows would let A solve X_A^T d = G_A for d (B's partial scores); B's
    limit, fixed at alignment, is far below (columns per row and slot capacity: limits.py)."""
    role, sid, n, count = session
    ciphertext = (2).to_bytes(ciphertext_width(n), "big")  # a valid value in [1, n^2)
    header = m.BatchHeader(sid, 0, 0)
    role.batch_forward(
        m.BatchForwardRequest(
            header, ciphertext * count, ciphertext * count, curvatures=ciphertext * count
        ),
        "party-a",
    )
    training = role._sessions[sid].training
    assert isinstance(training, TrainingB)
    limit = training.peer_value_limit
    assert 0 < limit < count // 2
    with _refused(caplog, f"value_count {count} is outside 1..{limit}"):
        role.batch_gradient(m.BatchGradientRequest(header, b"", value_count=count), "party-a")


def test_partial_scores_mid_epoch_are_refused(session: tuple[NodeB, str, int, int]) -> None:
    role, sid, n, count = session
    ciphertext = (2).to_bytes(ciphertext_width(n), "big")
    header = m.BatchHeader(sid, 0, 0)
    role.batch_forward(
        m.BatchForwardRequest(
            header, ciphertext * count, ciphertext * count, curvatures=ciphertext * count
        ),
        "party-a",
    )
    with pytest.raises(SessionError, match="only between epochs"):
        role.partial_scores(m.PartialScoresRequest(sid, m.RowSubset.VALIDATION), "party-a")


# ---- reusing [[beta]] (docs/protocol.md section 2): only slopes A sent in this session -----------


def test_reuse_before_any_slope_was_sent_is_refused(
    session: tuple[NodeB, str, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    role, sid, n, count = session
    ciphertext = (2).to_bytes(ciphertext_width(n), "big")
    request = m.BatchForwardRequest(m.BatchHeader(sid, 0, 0), ciphertext * count, reuse_slopes=True)
    with _refused(caplog, f"reuse_slopes for {count} rows whose slope was not sent"):
        role.batch_forward(request, "party-a")
    assert sid not in role._sessions


def test_slopes_sent_with_reuse_are_refused(
    session: tuple[NodeB, str, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    role, sid, n, count = session
    ciphertext = (2).to_bytes(ciphertext_width(n), "big")
    header = m.BatchHeader(sid, 0, 0)
    request = m.BatchForwardRequest(header, ciphertext * count, ciphertext * count, True)
    with _refused(caplog, "slopes sent with reuse_slopes"):
        role.batch_forward(request, "party-a")


# ---- the curvature correction (docs/protocol.md section 2): sent with the slopes, or held -------

ROWS = "one ciphertext per batch row"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"reuse_slopes": True, "curvatures": ROWS}, "curvatures sent with reuse_slopes"),
        ({"reuse_slopes": True, "held_basis": True}, "curvatures sent with reuse_slopes"),
        ({"slopes": ROWS}, "expected {count} ciphertexts, got 0"),  # slopes without curvatures
        # A claims B kept w for the rows from a checkpoint; B kept none (a fresh job).
        (
            {"slopes": ROWS, "curvatures": ROWS, "held_basis": True},
            "held_basis for {count} rows without a basis",
        ),
    ],
    ids=["curvatures-with-reuse", "held-basis-with-reuse", "no-curvatures", "no-held-basis"],
)
def test_bad_curvature_terms_are_refused(
    session: tuple[NodeB, str, int, int],
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    reason: str,
) -> None:
    role, sid, n, count = session
    rows = (2).to_bytes(ciphertext_width(n), "big") * count
    values: dict[str, Any] = {
        name: rows if value is ROWS else value for name, value in fields.items()
    }
    request = m.BatchForwardRequest(m.BatchHeader(sid, 0, 0), rows, **values)
    with _refused(caplog, reason.format(count=count)):
        role.batch_forward(request, "party-a")
    assert sid not in role._sessions


# ---- the training protocol's version: a partner of another release is refused at OpenSession ---


@pytest.mark.parametrize("version", [0, m.TRAINING_PROTOCOL + 1])
def test_b_refuses_a_training_partner_of_another_release(tmp_path: Path, version: int) -> None:
    """An A from before the corrected residual (it sends no version: 0) would be refused at its
    first batch with 'expected N ciphertexts, got 0'; now at OpenSession, saying what to do."""
    role = _breast_node(tmp_path)
    own = OwnKeyEngine(generate_keypair(512))
    request = _train_request(own, m.TrainParams(epochs=2, batch_size=64, key_bits=512), version)
    try:
        with pytest.raises(PolicyViolation, match="run the same fedlearn release on both nodes"):
            role.open_session(request, "party-a")
        assert role._sessions == {}
    finally:
        own.close()
        role.close()


def test_an_alignment_whose_client_went_away_stops_between_psi_steps(tmp_path: Path) -> None:
    """A's PSI reports between its steps; where the report raises (a scoring's CLI that is gone,
    a cancelled job) it stops there and closes the session at B instead of running on."""
    from fedlearn.errors import JobCancelled
    from fedlearn.progress import ProgressEvent

    a_spec, _ = fate_specs("breast")
    role = _breast_node(tmp_path)
    ids = [str(i) for i in load_party_table(a_spec.path, id_column="id", label_column="y").ids]
    steps: list[ProgressEvent] = []

    def gone_after_the_first_step(event: ProgressEvent) -> None:
        steps.append(event)
        raise JobCancelled("the client went away; job cancelled")

    request = m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="d")
    try:
        with pytest.raises(JobCancelled):
            open_and_align(
                InMemoryPeer(role, identity="party-a"),
                request,
                ids,
                progress=gone_after_the_first_step,
            )
        assert [e.phase for e in steps] == ["alignment"] and not steps[0].message
        assert role._sessions == {}  # closed at B, not left to its lease
        done = open_and_align(InMemoryPeer(role, identity="party-a"), request, ids)
        assert len(done.own_rows) > 0  # and the next one runs
    finally:
        role.close()
