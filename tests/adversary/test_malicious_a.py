"""A dishonest A against the real B (issue 11 items 3, 5 and 6).

Item 3: B counted values, not capacity: a slot holds several of B's 21-bit scores, so 64 "gradient
values" carried u_B for a whole batch. Item 5: EpochLoss decrypted whatever it was sent. Item 6: a
wide A (many columns per batch row) solves its own gradients for u_B; B's policy now caps columns
per batch row.
"""

from __future__ import annotations

from pathlib import Path

import gmpy2
import numpy as np
import pytest

from fedlearn.crypto.keys import generate_keypair
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes
from fedlearn.errors import ConfigError, FedlearnError
from fedlearn.protocol import messages as m
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.protocol.steps import class_sum_bound_bits, loss_bound_bits
from tests.adversary.harness import (
    SCORE_BITS,
    ASession,
    close,
    horner,
    open_a_session,
    plain,
    weighted_sum,
    wide_a_table,
)


def _stuffed_slots(session: ASession, scores: list, slot_count: int, per_slot: int) -> list:
    """Packed ciphertexts whose slots hold ``per_slot`` of B's scores each, lowest bits first."""
    layout, n = session.layout, session.peer_n
    nsquare = n * n
    slots = []
    for index in range(slot_count):
        chunk = scores[index * per_slot : (index + 1) * per_slot]
        if not chunk:
            slots.append(plain(0, n))
            continue
        slots.append(
            weighted_sum(chunk, [1 << (SCORE_BITS * t) for t in range(len(chunk))], nsquare)
        )
    return [
        horner(slots[start : start + layout.slots], layout, nsquare)
        for start in range(0, slot_count, layout.slots)
    ]


def _read_slots(masked: bytes, count: int, per_slot: int) -> list[int]:
    width = len(masked) // count
    values: list[int] = []
    for index in range(count):
        slot = int.from_bytes(masked[index * width : (index + 1) * width], "big")
        values.extend((slot >> (SCORE_BITS * t)) & ((1 << SCORE_BITS) - 1) for t in range(per_slot))
    return values


def _packing_attack(
    session: ASession, count: int, per_slot: int, epoch: int = 0
) -> tuple[int, int]:
    """(rows of the batch whose exact u_B A read, rows in the batch) from one BatchGradient."""
    batch = 0
    rows = session.batch_rows(epoch, batch)
    truth = session.true_scores(rows)
    scores = session.forward(epoch, batch)
    packed = _stuffed_slots(session, scores, count, per_slot)
    try:
        reply = session.gradient(epoch, batch, packed, count)
    except FedlearnError:
        return 0, len(rows)
    read = _read_slots(reply.masked_values, count, per_slot)
    return sum(1 for got, want in zip(read, truth, strict=False) if got == want), len(rows)


def test_a_cannot_pack_a_batch_of_scores_into_its_value_count(tmp_path: Path) -> None:
    """64 values x 6 scores per slot covered every row of a 151-row batch before the fix."""
    session = open_a_session(tmp_path)
    try:
        # The first BatchGradient of the session fixes A's count; give B weights that are not
        # zero yet (as after some epochs) so that its scores are worth reading.
        state = session.b_state
        state.weights = np.random.default_rng(0).normal(0, 0.3, state.features.n_features)
        read, rows = _packing_attack(session, count=64, per_slot=6)
        assert read == 0, f"A read u_B for {read} of {rows} rows with 64 values"
        assert session.b_state is None  # the refusal ended B's session
    finally:
        close(session)


def test_a_honest_value_count_reads_at_most_the_documented_bound(tmp_path: Path) -> None:
    """With its honest column count, A's slots come back truncated to b + 1 bits: at most
    floor((b + 1) / 21) of B's scores per value, f_A (b + 1) / 21 per batch (docs/threat-model.md)."""
    session = open_a_session(tmp_path)
    try:
        session.honest_epoch(0)
        count = session.training.features.n_features
        read, rows = _packing_attack(session, count=count, per_slot=6, epoch=1)
        bound = count * ((session.layout.value_bound_bits + 1) // SCORE_BITS)
        assert read <= bound < rows, f"A read {read} scores, the documented bound is {bound}"
    finally:
        close(session)


def test_epoch_loss_is_range_checked(tmp_path: Path) -> None:
    """Before the fix one EpochLoss decrypted 24 of B's scores packed into one 512-bit plaintext;
    now a value beyond the loss bound ends the session, and B returns only the low b_L + 1 bits
    (and of the class sum, likewise checked, the low b_S + 1)."""
    session = open_a_session(tmp_path)
    try:
        session.honest_epoch(0)
        forwards = [
            r.message for r in session.record if isinstance(r.message, m.BatchForwardResponse)
        ]
        n = session.peer_n
        scores = ciphertexts_from_bytes(forwards[-1].ciphertexts, n)
        per_call = (n.bit_length() - 1) // SCORE_BITS
        truth = [int(v) for v in session.b_state.own.decrypt(scores[:per_call])]
        for count in (per_call, 2):  # the whole plaintext; then what fits in the loss bound
            packed = weighted_sum(
                scores[:count], [1 << (SCORE_BITS * t) for t in range(count)], n * n
            )
            payload = ciphertexts_to_bytes([packed], n)
            try:  # the same packed scores as the loss and as the class sum
                reply = session.peer.epoch_loss(
                    m.EpochLossRequest(session.session_id, 0, payload, class_sum=payload)
                )
            except FedlearnError:
                continue
            exact = 0
            for returned in (reply.value, reply.class_value):
                value = int.from_bytes(returned, "big")
                read = [(value >> (SCORE_BITS * t)) & ((1 << SCORE_BITS) - 1) for t in range(count)]
                exact += sum(1 for got, want in zip(read, truth, strict=False) if got == want)
            n_train = session.training.n_train
            bound = (loss_bound_bits(n_train, 12) + 1) // SCORE_BITS
            bound += (class_sum_bound_bits(n_train, 12) + 1) // SCORE_BITS
            assert exact <= bound, f"one EpochLoss gave A {exact} of B's scores (bound {bound})"
    finally:
        close(session)


def test_wide_a_is_refused_by_its_own_job_and_by_b(tmp_path: Path) -> None:
    """Issue item 6: a wide A solves its own gradients for u_B (bench/wide_party.py measures it).

    A with 41 columns (one-hot) against batches of ~151 rows and 4 rows per column (37 allowed):
    an honest A refuses its own job before any ciphertext; an A that skips its own check is
    refused by B at its first BatchGradient, before B decrypts anything, and the session ends.
    """
    policy = PeerPolicy(min_key_bits=512, min_batch_size=16, max_epochs=50, min_rows_per_column=4)
    table = wide_a_table(tmp_path)
    with pytest.raises(ConfigError, match="allow at most 37 feature columns"):
        open_a_session(tmp_path / "honest", policy=policy, table=table, rows_per_column=4)
    session = open_a_session(tmp_path / "wide", policy=policy, table=table, rows_per_column=1)
    try:
        assert session.training.features.n_features > 37
        with pytest.raises(FedlearnError, match="ended the session"):
            session.honest_epoch(0)
        assert session.b_state is None
    finally:
        close(session)


def test_b_refuses_a_non_unit_ciphertext_and_ends_the_session(tmp_path: Path) -> None:
    """A multiple of A's prime p as [[alpha]]: before the fix B's background gradient failed on
    it and the session was stuck at the gradient step (an AssertionError on every later call)."""
    session = open_a_session(tmp_path)
    try:
        training = session.training
        rows = session.batch_rows(0, 0)
        own_n = int(training.own.public_key.n)
        s = len(rows)
        encrypted = training.own.encrypt([0] * (3 * s))
        encrypted[0] = gmpy2.mpz(session.keypair.private_key.p)
        header = m.BatchHeader(session.session_id, 0, 0)
        forward = m.BatchForwardRequest(
            header,
            ciphertexts_to_bytes(encrypted[:s], own_n),
            ciphertexts_to_bytes(encrypted[s : 2 * s], own_n),
            curvatures=ciphertexts_to_bytes(encrypted[2 * s :], own_n),
        )
        with pytest.raises(FedlearnError):
            session.peer.batch_forward(forward)
            session.gradient(0, 0, [plain(0, session.peer_n)] * 4, 11)
        assert session.b_state is None
    finally:
        close(session)


def test_b_refuses_a_djn_base_of_order_two(tmp_path: Path) -> None:
    """h_s = n^2 - 1 = -1: B's re-randomisation with A's base multiplied by +-1 (issue item 4)."""
    keypair = generate_keypair(512)
    n = int(keypair.public_key.n)
    with pytest.raises(FedlearnError, match="base"):
        open_a_session(tmp_path, keypair=keypair, djn_base=n * n - 1)
