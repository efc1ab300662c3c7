"""B computes the intersection itself (issue 11, item 7): a cheating A gets only the true matches.

Before, A sent B the indices of B's rows that matched, and B took them: a scoring session with one
unmatched ID that claimed all of B's rows got B's partial score for B's whole population (shown
against that code: 150 IDs in common, 200 claimed, 200 scores returned). Now A can only send B's
points raised to its own scalar; B matches them against A's points raised to B's, which it
computed and keeps until then. Each test plays one strategy of a cheating A against B's real code
and checks which of B's rows B took as matched, at scoring and at training.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedlearn.config import DatasetSpec
from fedlearn.crypto.keys import generate_keypair, public_key_to_bytes
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.psi import POINT_BYTES, PsiKey, session_salt
from fedlearn.data import load_party_table
from fedlearn.errors import DataError, InvalidPeerData, SessionError
from fedlearn.preprocess import Preprocessor
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.store import ModelStore
from party_b.node import NodeB
from tests.protocol.harness import TEST_POLICY

B_ROWS, SHARED = 200, 150
PARTNER = "party-a"


@dataclass
class Setup:
    node: NodeB
    b_ids: list[str]
    a_ids: list[str]  # SHARED of B's IDs and one B does not have
    b_scores: dict[str, float]  # B's partial score of each of its users, from the model


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    rng = np.random.default_rng(5)
    b_ids = [f"b-{i:04d}" for i in rng.permutation(B_ROWS)]
    lines = "".join(f"{i},{rng.normal():.4f},{rng.normal():.4f}\n" for i in b_ids)
    (tmp_path / "b.csv").write_text("id,x1,x2\n" + lines)
    spec = DatasetSpec("d", tmp_path / "b.csv", "id", None, None, [])
    table = load_party_table(spec.path, id_column="id")
    prep = Preprocessor(
        numeric=table.numeric_columns,
        categorical=table.categorical_columns,
    )
    prep.fit(table.features)
    weights = [0.7, -0.4][: len(prep.output_names_)] + [0.1] * (len(prep.output_names_) - 2)
    x = prep.quantize(prep.transform(table.features)) / prep.scales_
    shard = {
        "model_id": "m1",
        "partner": PARTNER,
        "dataset": "d",
        "preprocessor": prep.to_dict(),
        "weights": weights,
    }
    ModelStore(tmp_path / "models").save("m1", shard)
    node = NodeB(
        name="party-b",
        datasets={"d": spec},
        policy=TEST_POLICY,
        model_dir=tmp_path / "models",
        allowed_partners={PARTNER},
    )
    a_ids = [*sorted(b_ids)[:SHARED], "not-at-b"]
    yield Setup(node, b_ids, a_ids, dict(zip(table.ids, x @ np.asarray(weights), strict=True)))
    node.close()


@dataclass
class Opened:
    session_id: str
    salt: bytes
    b_points: bytes  # H(id_B)^b, B's order


def _open(setup: Setup, purpose: m.Purpose) -> tuple[Opened, OwnKeyEngine | None]:
    own_salt = secrets.token_bytes(32)
    engine = None
    if purpose == m.Purpose.SCORE:
        request = m.OpenSessionRequest(
            purpose=purpose, dataset="d", psi_salt=own_salt, model_id="m1"
        )
    else:
        engine = OwnKeyEngine(generate_keypair(512))
        request = m.OpenSessionRequest(
            purpose=purpose,
            dataset="d",
            psi_salt=own_salt,
            train=m.TrainParams(epochs=1, batch_size=16, key_bits=512),
            paillier_key=m.PaillierKey(
                n=public_key_to_bytes(engine.public_key), djn_base=int_to_bytes(engine.djn_base)
            ),
        )
    opened = setup.node.open_session(request, PARTNER)
    peer_set = setup.node.psi_peer_set(m.PsiPeerSetRequest(opened.session_id), PARTNER)
    salt = session_salt(own_salt, opened.psi_salt)
    return Opened(opened.session_id, salt, peer_set.points), engine


# A strategy: (setup, opened, A's scalar) -> (PsiBlind points, PsiResult points). It never sees
# anything raised to B's scalar before PsiResult: that is what the protocol allows it.
Strategy = Callable[[Setup, Opened, PsiKey], tuple[bytes, bytes]]


def _honest(setup: Setup, opened: Opened, key: PsiKey) -> tuple[bytes, bytes]:
    return key.blind_ids(setup.a_ids, opened.salt), key.blind_points(opened.b_points)


def _reflect_b_points(setup: Setup, opened: Opened, key: PsiKey) -> tuple[bytes, bytes]:
    """Send B its own points as A's, hoping B's blinding lines them up with A's blinding."""
    return opened.b_points, key.blind_points(opened.b_points)


def _same_points_both_ways(setup: Setup, opened: Opened, key: PsiKey) -> tuple[bytes, bytes]:
    """Send H(id_B)^(ba) both as A's points and as the blinding of B's: equal on A's side."""
    doubled = key.blind_points(opened.b_points)
    return doubled, doubled


def _b_points_as_result(setup: Setup, opened: Opened, key: PsiKey) -> tuple[bytes, bytes]:
    """Send A's honest points, and B's own points back unblinded as the PsiResult."""
    return key.blind_ids(setup.a_ids, opened.salt), opened.b_points


STRATEGIES: dict[str, tuple[Strategy, int]] = {
    # name: (strategy, how many of B's rows B must take as matched)
    "honest": (_honest, SHARED),
    "reflect B's points": (_reflect_b_points, 0),
    "same points both ways": (_same_points_both_ways, 0),
    "B's points as the result": (_b_points_as_result, 0),
}


def _run(setup: Setup, purpose: m.Purpose, strategy: Strategy) -> tuple[str, np.ndarray]:
    opened, engine = _open(setup, purpose)
    try:
        key = PsiKey.generate()
        own_points, result_points = strategy(setup, opened, key)
        setup.node.psi_blind(m.PsiBlindRequest(opened.session_id, own_points), PARTNER)
        # A training session with no rows in common is refused (DataError): nothing to train on.
        with contextlib.suppress(DataError):
            setup.node.psi_result(m.PsiResultRequest(opened.session_id, result_points), PARTNER)
        rows = setup.node._sessions[opened.session_id].aligned_rows
        return opened.session_id, np.asarray(rows if rows is not None else [], dtype=np.int64)
    finally:
        if engine is not None:
            engine.close()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_scoring_a_cheating_a_gets_scores_for_the_true_matches_only(
    setup: Setup, name: str
) -> None:
    strategy, expected = STRATEGIES[name]
    session_id, rows = _run(setup, m.Purpose.SCORE, strategy)
    matched = {setup.b_ids[i] for i in rows}
    assert matched <= set(setup.a_ids) and len(matched) == expected
    if expected:
        reply = setup.node.partial_scores(
            m.PartialScoresRequest(session_id, m.RowSubset.ALIGNED), PARTNER
        )
        scores = np.frombuffer(reply.scores, dtype="<f8")
        assert len(scores) == SHARED  # not B_ROWS: the attack returned all 200
        truth = sorted(setup.b_scores[i] for i in matched)
        np.testing.assert_allclose(sorted(scores), truth)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_training_a_cheating_a_gets_the_true_matches_only(setup: Setup, name: str) -> None:
    strategy, expected = STRATEGIES[name]
    _, rows = _run(setup, m.Purpose.TRAIN, strategy)
    assert {setup.b_ids[i] for i in rows} <= set(setup.a_ids)
    assert len(rows) == expected


def test_psi_result_is_taken_once(setup: Setup) -> None:
    """A refused PsiResult cannot be retried with what A learnt from the refusal (it learnt nothing
    raised to B's scalar, but a second try is refused anyway), nor can a good one be replaced."""
    opened, _ = _open(setup, m.Purpose.SCORE)
    key = PsiKey.generate()
    node, sid = setup.node, opened.session_id
    node.psi_blind(m.PsiBlindRequest(sid, key.blind_ids(setup.a_ids, opened.salt)), PARTNER)
    with pytest.raises(InvalidPeerData, match="expected 200 points"):
        node.psi_result(m.PsiResultRequest(sid, opened.b_points[:-POINT_BYTES]), PARTNER)
    with pytest.raises(SessionError, match="out of order"):
        node.psi_result(m.PsiResultRequest(sid, key.blind_points(opened.b_points)), PARTNER)


@pytest.mark.parametrize("bad", ["identity", "not canonical", "repeated"])
def test_invalid_points_in_psi_result_are_refused(setup: Setup, bad: str) -> None:
    opened, _ = _open(setup, m.Purpose.SCORE)
    key = PsiKey.generate()
    node, sid = setup.node, opened.session_id
    node.psi_blind(m.PsiBlindRequest(sid, key.blind_ids(setup.a_ids, opened.salt)), PARTNER)
    points = bytearray(key.blind_points(opened.b_points))
    if bad == "identity":
        points[:POINT_BYTES] = bytes(POINT_BYTES)
    elif bad == "not canonical":
        points[:POINT_BYTES] = (2**255 - 19).to_bytes(POINT_BYTES, "little")
    else:
        points[:POINT_BYTES] = points[POINT_BYTES : 2 * POINT_BYTES]
    match = "more than once" if bad == "repeated" else "not a canonical ristretto255 point"
    with pytest.raises(InvalidPeerData, match=match):
        node.psi_result(m.PsiResultRequest(sid, bytes(points)), PARTNER)
    assert node._sessions[sid].aligned_rows is None
