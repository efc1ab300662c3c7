"""A dishonest B against the real A's ``train`` (issue 11 items 2, 4 and 8's gcd check).

Item 2: A accepted any ``value_count`` from B up to 1,000,000 and decrypted B's packed ciphertexts
for it, so B could put A's encrypted residual terms in extra slots and read every label.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest

from fedlearn import model
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes, ints_from_bytes
from fedlearn.errors import FedlearnError
from fedlearn.job import parse_job
from fedlearn.protocol import messages as m
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.payloads import int_to_bytes
from fedlearn.protocol.steps import SCORE_CLIP, residual_frac_bits
from fedlearn.store import ModelStore
from party_a.train import train
from tests.adversary.harness import DishonestB, breast_a_table, breast_role, horner, plain
from tests.protocol.harness import fate_specs, job_text

JOB = job_text(epochs=2, batch_size=128, key_bits=512)
#: Bits of (sigmoid(u_A) - y + 1) 2^28, the label-bearing value B builds from [[alpha]] and [[beta]].
LABEL_VALUE_BITS = 30


def _run_a(b: DishonestB, tmp: Path, job: str = JOB) -> dict[str, Any]:
    a_spec, _ = fate_specs("breast")
    peer = InMemoryPeer(b, identity="party-a")  # type: ignore[arg-type]
    return train(
        peer,
        table=breast_a_table(),
        spec=a_spec,
        job=parse_job(job),
        own_name="party-a",
        store=ModelStore(tmp / "a-models"),
    )


def _session(b: DishonestB) -> Any:
    (session,) = b.real._sessions.values()
    return session


def _labels_by_common_row(b: DishonestB) -> np.ndarray:
    """A's labels in the session's common order (ground truth, to score B's reads)."""
    table = breast_a_table()
    session = _session(b)
    ids = session.table.ids[session.aligned_rows]
    position = {str(i): k for k, i in enumerate(table.ids)}
    labels = np.asarray(table.labels)
    return np.array([labels[position[str(i)]] for i in ids])


def _forward(b: DishonestB, real: Any, request: m.BatchForwardRequest, partner: str | None) -> Any:
    b.seen["forward"] = request
    return real(request, partner)


def _gradient_reading_labels(
    b: DishonestB, real: Any, request: m.BatchGradientRequest, partner: str | None
) -> Any:
    """B's honest answer, with A's residual terms for every batch row packed in front of it."""
    reply = real(request, partner)
    session = _session(b)
    training = session.training
    peer_n = int(training.peer.public_key.n)
    nsquare = peer_n * peer_n
    forward = b.seen["forward"]
    alpha = ciphertexts_from_bytes(forward.ciphertexts, peer_n)
    beta = ciphertexts_from_bytes(forward.slopes, peer_n)
    frac = training.params.score_frac_bits
    offset = plain(1 << residual_frac_bits(frac), peer_n)
    # [[(sigmoid(u_A) - y + 1) 2^28]]_A per row: below 2^28 exactly when y = 1.
    values = [
        a * gmpy2.powmod(bt, SCORE_CLIP << frac, nsquare) * offset % nsquare
        for a, bt in zip(alpha, beta, strict=True)
    ]
    per_slot = (training.own_layout.value_bound_bits + 80) // LABEL_VALUE_BITS
    layout = training.own_layout
    slots = []
    for start in range(0, len(values), per_slot):
        chunk = values[start : start + per_slot]
        total = gmpy2.mpz(1)
        for t, value in enumerate(chunk):
            total = total * gmpy2.powmod(value, 1 << (LABEL_VALUE_BITS * t), nsquare) % nsquare
        slots.append(total)
    while len(slots) % layout.slots:
        slots.append(plain(0, peer_n))
    crafted = [
        horner(slots[i : i + layout.slots], layout, nsquare)
        for i in range(0, len(slots), layout.slots)
    ]
    b.seen["crafted"] = (len(slots), per_slot, len(values), list(training.batch_rows))
    honest = ciphertexts_from_bytes(reply.packed_ciphertexts, peer_n)
    return m.BatchGradientResponse(
        packed_ciphertexts=ciphertexts_to_bytes(crafted + honest, peer_n),
        masked_values=reply.masked_values,
        value_count=len(slots) + reply.value_count,
    )


def _update_reading_labels(
    b: DishonestB, real: Any, request: m.BatchUpdateRequest, partner: str | None
) -> Any:
    slot_count, per_slot, rows, batch_rows = b.seen.pop("crafted")
    total = slot_count + _session(b).training.features.n_features
    width = len(request.masked_values) // total
    values = ints_from_bytes(request.masked_values, width)
    read: list[int] = []
    for slot in values[:slot_count]:
        read.extend(
            (slot >> (LABEL_VALUE_BITS * t)) & ((1 << LABEL_VALUE_BITS) - 1)
            for t in range(per_slot)
        )
    if "truth" not in b.seen:
        b.seen["truth"] = _labels_by_common_row(b)
    b.seen.setdefault("labels", {}).update(
        {row: int(v < (1 << 28)) for row, v in zip(batch_rows, read[:rows], strict=True)}
    )
    honest = b"".join(
        values[slot_count + i].to_bytes(width, "big") for i in range(total - slot_count)
    )
    return real(m.BatchUpdateRequest(request.header, honest), partner)


def test_b_cannot_read_labels_through_extra_gradient_values(tmp_path: Path) -> None:
    b = DishonestB(
        breast_role(tmp_path),
        overrides={
            "batch_forward": _forward,
            "batch_gradient": _gradient_reading_labels,
            "batch_update": _update_reading_labels,
        },
    )
    try:
        with contextlib.suppress(FedlearnError):
            _run_a(b, tmp_path)
        read = b.seen.get("labels", {})
        correct = 0
        if read:
            labels = b.seen["truth"]
            correct = sum(1 for row, y in read.items() if labels[row] == y)
        assert correct == 0, f"B read {correct} labels"
        assert b.real._sessions == {}  # A refused, and closed the session: B dropped it too
    finally:
        b.real.close()


def _forward_with_non_unit(
    b: DishonestB, real: Any, request: m.BatchForwardRequest, partner: str | None
) -> Any:
    reply = real(request, partner)
    own = _session(b).training.own
    n = int(own.public_key.n)
    scores = ciphertexts_from_bytes(reply.ciphertexts, n)
    scores[0] = gmpy2.mpz(own.secret.p)  # a multiple of p: not a unit mod n^2
    return m.BatchForwardResponse(
        ciphertexts_to_bytes(scores, n), reply.loss_term, reply.curvature_basis
    )


def test_a_refuses_a_non_unit_ciphertext_cleanly(tmp_path: Path) -> None:
    b = DishonestB(breast_role(tmp_path), overrides={"batch_forward": _forward_with_non_unit})
    try:
        with pytest.raises(FedlearnError) as refused:
            _run_a(b, tmp_path)
        assert "unit" in str(refused.value) or "invertible" in str(refused.value)
    finally:
        b.real.close()


def _open_with_base(
    b: DishonestB, real: Any, request: m.OpenSessionRequest, partner: str | None
) -> Any:
    reply = real(request, partner)
    n = int.from_bytes(reply.paillier_key.n, "big")
    key = m.PaillierKey(n=reply.paillier_key.n, djn_base=int_to_bytes(n * n - 1))
    return dataclasses.replace(reply, paillier_key=key)


def test_a_refuses_a_djn_base_of_order_two(tmp_path: Path) -> None:
    b = DishonestB(breast_role(tmp_path), overrides={"open_session": _open_with_base})
    try:
        with pytest.raises(FedlearnError, match="base"):
            _run_a(b, tmp_path)
    finally:
        b.real.close()


def _update_with_statistics(mean: float, std: float) -> Any:
    def update(b: DishonestB, real: Any, request: m.BatchUpdateRequest, partner: str | None) -> Any:
        reply = real(request, partner)
        if reply.score_mean == 0.0 and reply.score_std == 0.0:
            return reply  # not the epoch's last batch
        return m.BatchUpdateResponse(reply.weight_change_norm, mean, std)

    return update


@pytest.mark.parametrize(
    ("mean", "std", "reason"),
    [
        (float("nan"), 1.0, "not finite"),
        (0.0, float("inf"), "not finite"),
        (SCORE_CLIP + 1.0, 1.0, "out of range"),
        (0.0, -1.0, "out of range"),
        (0.0, SCORE_CLIP + 1.0, "out of range"),
    ],
)
def test_a_refuses_score_statistics_out_of_range(
    tmp_path: Path, mean: float, std: float, reason: str
) -> None:
    """B's mean and deviation of its scores (the next epoch's standardisation) are checked before
    A fits over them: B's clipped scores lie in [-K, K]."""
    b = DishonestB(
        breast_role(tmp_path), overrides={"batch_update": _update_with_statistics(mean, std)}
    )
    try:
        with pytest.raises(FedlearnError, match=f"score statistics are {reason}"):
            _run_a(b, tmp_path)
    finally:
        b.real.close()


def test_a_refuses_a_curvature_basis_it_did_not_ask_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a reuse epoch A sends no gamma and takes its held corrections; a basis B sends anyway
    (to make A form a correction of B's choosing) is refused before A uses it."""
    monkeypatch.setattr(model, "SLOPE_FRESH_STEPS", 1)  # epochs 0 and 1 refresh, 2 reuses
    monkeypatch.setattr(model, "SLOPE_REFRESH_EVERY", 4)  # (3 is the last)
    last: list[bytes] = []

    def forward(
        b: DishonestB, real: Any, request: m.BatchForwardRequest, partner: str | None
    ) -> Any:
        reply = real(request, partner)
        if reply.curvature_basis:
            last[:] = [reply.curvature_basis]
            return reply
        return m.BatchForwardResponse(reply.ciphertexts, reply.loss_term, last[0])

    b = DishonestB(breast_role(tmp_path), overrides={"batch_forward": forward})
    try:
        with pytest.raises(FedlearnError, match="curvature basis that was not asked for"):
            _run_a(b, tmp_path, job_text(epochs=4, batch_size=128, key_bits=512))
    finally:
        b.real.close()


def test_a_refuses_a_b_of_another_release_before_any_work(tmp_path: Path) -> None:
    """A B from before the corrected residual answers OpenSession without a version (0): A closes
    the session before PSI instead of failing at the first batch on a missing curvature basis."""
    calls: list[str] = []

    def old_open(b: DishonestB, real: Any, request: Any, partner: str | None) -> Any:
        reply = real(request, partner)
        return m.OpenSessionResponse(
            reply.session_id, reply.psi_salt, reply.paillier_key, reply.checkpoint_epochs
        )

    def psi(b: DishonestB, real: Any, request: Any, partner: str | None) -> Any:
        calls.append("psi")
        return real(request, partner)

    b = DishonestB(breast_role(tmp_path), overrides={"open_session": old_open, "psi_peer_set": psi})
    try:
        with pytest.raises(FedlearnError, match="run the same fedlearn release on both nodes"):
            _run_a(b, tmp_path)
        assert calls == [] and b.real._sessions == {}  # no PSI; A closed the session
    finally:
        b.real.close()
