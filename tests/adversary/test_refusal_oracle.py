"""Issue 11 item 1: a refused request must not be a decryption oracle.

Before the fix, B stayed at the same step after a refusal and told A which index failed and why, so
A could binary-search its way to B's secrets one refusal at a time: B's partial scores through
refused BatchGradients, B's exact gradient integers through refused BatchUpdates.
"""

from __future__ import annotations

import re
from pathlib import Path

import gmpy2
import pytest

from fedlearn.crypto.wire import ints_to_bytes
from fedlearn.errors import FedlearnError, SessionEnded
from fedlearn.protocol import messages as m
from tests.adversary.harness import (
    SCORE_BITS,
    ASession,
    close,
    horner,
    open_a_session,
    plain,
)


def _gradient_oracle(session: ASession, epoch: int, batch: int, rows_wanted: int) -> dict[int, int]:
    """B's v for the first ``rows_wanted`` rows of a batch, from refusals only (None if it fails).

    The top slot of packed ciphertext 0 holds ``v 2^k + c``; ciphertext 1 always breaks its bound.
    B refuses either way, and before the fix named the first ciphertext that failed: 0 exactly
    when ``v 2^k + c`` is beyond the slot bound, i.e. when v >= the threshold c encodes.
    """
    layout = session.layout
    n = session.peer_n
    nsquare = n * n
    count = session.training.features.n_features
    ciphertext_count = layout.ciphertext_count(count)
    bound_bits = layout.value_bound_bits + layout.mask_bits + 1  # slot values below 2^bound_bits
    shift = bound_bits - SCORE_BITS
    scores = session.forward(epoch, batch)
    found: dict[int, int] = {}
    for row in range(rows_wanted):
        low, high = 0, 1 << SCORE_BITS  # v in [low, high)
        while high - low > 1:
            threshold = (low + high) // 2
            top = horner(
                [
                    gmpy2.powmod(scores[row], 1 << shift, nsquare)
                    * plain((1 << bound_bits) - (threshold << shift), n)
                    % nsquare
                ]
                + [plain(0, n)] * (layout.slots - 1),
                layout,
                nsquare,
            )
            broken = plain(1 << (bound_bits + (layout.slots - 1) * layout.slot_bits), n)
            packed = [top, broken] + [plain(0, n)] * (ciphertext_count - 2)
            try:
                session.gradient(epoch, batch, packed, count)
            except FedlearnError as exc:
                which = re.search(r"packed plaintext (\d+)", str(exc))
                if which is None:
                    return found  # no usable answer: the oracle is closed
                if which.group(1) == "0":
                    low = threshold
                else:
                    high = threshold
                continue
            return found  # accepted: the session moved on
        found[row] = low
    return found


def test_refused_gradients_do_not_reveal_bs_scores(tmp_path: Path) -> None:
    session = open_a_session(tmp_path)
    try:
        session.honest_epoch(0)  # B's weights are no longer zero
        truth = session.true_scores(session.batch_rows(1, 0))
        found = _gradient_oracle(session, 1, 0, rows_wanted=3)
        exact = [row for row, v in found.items() if v == truth[row]]
        assert exact == [], f"A read B's exact partial score of rows {exact} through refusals"
        # The first refusal ended the session on B's side: nothing of it is left.
        assert session.b_state is None
        with pytest.raises(FedlearnError, match="unknown or expired session"):
            session.forward(1, 0)
    finally:
        close(session)


def _update_oracle(session: ASession, values_wanted: int) -> tuple[dict[int, int], list[int]]:
    """B's gradient integers G_B[j] from refused BatchUpdates (j < values_wanted).

    A knows S_j = G_j + 2^b + R_j (it decrypted it). It sends values j' < j as they are (they pass),
    value j as S_j - 2^b - g, and values after j as 0 (they fail). Before the fix B refused, naming
    the first value out of bound: j exactly when g >= G_j. Returns (what A found, the S_j).
    """
    training = session.training
    epoch, batch = 1, 0
    rows = session.batch_rows(epoch, batch)
    layout = training.peer_layout
    # A's honest forward and gradient, to reach the update step with B's masked values in hand.
    captured: dict[str, bytes] = {}
    original = session.peer.batch_update

    def capture(request: m.BatchUpdateRequest) -> m.BatchUpdateResponse:
        captured["masked"] = request.masked_values
        raise _Stop

    session.peer.batch_update = capture  # type: ignore[method-assign]
    with pytest.raises(_Stop):
        training.run_batch(epoch, batch, rows)
    session.peer.batch_update = original  # type: ignore[method-assign]
    width = len(captured["masked"]) // training.peer_value_count
    masked = [
        int.from_bytes(captured["masked"][i * width : (i + 1) * width], "big")
        for i in range(training.peer_value_count)
    ]
    offset = 1 << layout.value_bound_bits
    found: dict[int, int] = {}
    for j in range(values_wanted):
        low, high = -offset, offset  # G_j in [low, high)
        while high - low > 1:
            guess = (low + high - 1) // 2
            values = masked[:j] + [masked[j] - offset - guess] + [0] * (len(masked) - j - 1)
            request = m.BatchUpdateRequest(
                m.BatchHeader(session.session_id, epoch, batch),
                ints_to_bytes([max(v, 0) for v in values], width),
            )
            try:
                session.peer.batch_update(request)
            except FedlearnError as exc:
                which = re.search(r"value (\d+)", str(exc))
                if which is None:
                    return found, masked
                if int(which.group(1)) == j:
                    high = guess + 1  # g >= G_j
                else:
                    low = guess + 1  # g < G_j
                continue
            return found, masked  # accepted: the batch is over
        found[j] = low
    return found, masked


class _Stop(Exception):
    pass


def test_refused_updates_do_not_reveal_bs_gradient(tmp_path: Path) -> None:
    session = open_a_session(tmp_path)
    try:
        session.honest_epoch(0)
        state = session.b_state
        found, masked = _update_oracle(session, values_wanted=2)
        offset = 1 << session.training.peer_layout.value_bound_bits
        truth = {j: masked[j] - offset - state.own_masks[j] for j in range(2)}
        exact = {j: v for j, v in found.items() if v == truth[j]}
        assert exact == {}, f"A read B's exact gradient integers {exact} through refusals"
    finally:
        close(session)


def test_refusals_cross_as_one_generic_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two different failures (a count out of limit, a decrypted slot out of bound) cross as the
    same text, naming the step only; the detail is in B's log."""
    messages = []
    for case, count in (("count", 999), ("slot", None)):
        session = open_a_session(tmp_path / case)
        try:
            layout = session.layout
            n = session.peer_n
            count = count or session.training.features.n_features
            session.forward(0, 0)
            broken = plain(1 << (layout.slot_value_bound.bit_length() - 1), n)
            packed = [broken] * layout.ciphertext_count(count)
            with caplog.at_level("WARNING"), pytest.raises(SessionEnded) as refused:
                session.gradient(0, 0, packed, count)
            messages.append(str(refused.value))
            assert refused.value.__cause__ is None and refused.value.__context__ is None
            assert session.b_state is None
        finally:
            close(session)
    assert (
        messages[0]
        == messages[1]
        == (
            "party-b ended the session: a BatchGradient request was refused "
            "(the reason is in party-b's log)"
        )
    )
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "value_count 999" in logged and "slot beyond its bound" in logged
