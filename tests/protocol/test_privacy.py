"""What crosses between A and B during a training run (issue 3 item 8; docs/protocol.md's table).

One training run in memory on FATE's breast split (512-bit keys, 4 epochs, batch 64; the third
reuses the slopes' ciphertexts, so no [[beta]] crosses in it) with every
message recorded as it crossed the wire. Two kinds of check:

1. Field by field, every field of every message is one of the documented kinds: ciphertexts
   (fixed width, each in [1, n^2) for the right party's key), PSI points, masked slot values,
   public parameters and documented scalars, or the final validation partial scores.
   A field that the table below does not know fails the test.
2. No bytes payload holds a plaintext label vector, raw or preprocessed feature value, final
   weight, residual, per-row score or per-batch gradient, in any of the usual binary encodings.
   A planted payload and the validation partial scores (which do cross, as documented) show the
   search finds what is there.

Which key each ciphertext is under, whether the holder of that key ever gets a value back
undisguised, whether masks are uniform, and the mutation checks that show those checks fail on
planted leaks are in tests/protocol/test_privacy_keys.py.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from fedlearn import model
from fedlearn.crypto.psi import POINT_BYTES
from fedlearn.crypto.wire import ciphertext_width
from fedlearn.model import (
    epoch_batches,
    max_batch_rows,
    sigmoid,
    sigmoid_slope,
    slopes_refreshed,
)
from fedlearn.protocol import messages as m
from fedlearn.protocol import steps, train_a, train_b
from fedlearn.protocol.steps import (
    SCORE_CLIP,
    class_sum_bound_bits,
    gradient_layout,
    loss_bound_bits,
)
from tests.protocol.harness import MemoryRun, fate_specs, job_text, rebuild, run_memory

EPOCHS = 4
BATCH_SIZE = 64


@dataclasses.dataclass
class Captured:
    """Plaintext values each party computed in the run (captured in process, never sent)."""

    a_terms: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
    a_slopes: list[np.ndarray] = dataclasses.field(default_factory=list)  # as used (held or fresh)
    a_offsets: list[np.ndarray] = dataclasses.field(default_factory=list)  # likewise
    b_scores: list[np.ndarray] = dataclasses.field(default_factory=list)
    gradients: list[list[int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Recorded:
    run: MemoryRun
    captured: Captured
    data: dict[str, np.ndarray]


@pytest.fixture(scope="module", autouse=True)
def _short_fresh_start() -> Iterator[None]:
    """Fresh slopes in epochs 0 and 1 only (breast's 7 batches would take 6 epochs for the first 40
    steps), so that epoch 2 of the 4 reuses them and its messages are checked too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "SLOPE_FRESH_STEPS", 1)
        patch.setattr(model, "SLOPE_REFRESH_EVERY", 4)  # epoch 2 reuses, 3 is the last
        yield


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    captured = Captured()
    real_terms, real_scores, real_unmask = (
        train_a.label_party_terms,
        train_b.feature_party_scores,
        steps.unmask_truncated,
    )

    def label_party_terms(
        u_a: np.ndarray, y: np.ndarray, frac: int, beta: Any = None, offset: Any = None
    ) -> Any:
        captured.a_terms.append((np.array(u_a), np.array(y)))
        alpha, used = real_terms(u_a, y, frac, beta, offset)
        captured.a_slopes.append(np.array(used) / 2.0**steps.SLOPE_FRAC_BITS)
        captured.a_offsets.append(np.zeros(len(u_a)) if offset is None else np.array(offset))
        return alpha, used

    def feature_party_scores(u_b: np.ndarray, frac: int) -> list[int]:
        captured.b_scores.append(np.array(u_b))
        return real_scores(u_b, frac)

    def unmask(masked: Sequence[int], masks: Sequence[int], layout: Any) -> list[int]:
        values = real_unmask(masked, masks, layout)
        captured.gradients.append(list(values))
        return values

    a_spec, b_spec = fate_specs("breast")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_a, "label_party_terms", label_party_terms)
        patch.setattr(train_b, "feature_party_scores", feature_party_scores)
        patch.setattr(steps, "unmask_truncated", unmask)
        run = run_memory(
            a_spec,
            b_spec,
            job_text(epochs=EPOCHS, batch_size=BATCH_SIZE, key_bits=512),
            tmp_path_factory.mktemp("privacy"),
        )
    return Recorded(run, captured, rebuild(run))


# ---- 1. every field is of a documented kind --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Session:
    """What the checks need to know about the run (all public to both parties)."""

    n_a: int
    n_b: int
    a_rows: int
    b_rows: int
    aligned: int
    train_rows: int
    validation_rows: int
    batch_sizes: dict[tuple[int, int], int]
    a_features: int
    b_features: int


#: check(field value, session, the request of this exchange) raises AssertionError when wrong.
Check = Callable[[Any, Session, Any], None]


def ciphertexts(key: str, count: Callable[[Session, Any], int]) -> Check:
    """Fixed-width big-endian ciphertexts, each in [1, n^2) for ``key``'s n ("A" or "B")."""

    def check(value: Any, session: Session, message: Any) -> None:
        n = session.n_a if key == "A" else session.n_b
        width = ciphertext_width(n)
        assert isinstance(value, bytes) and len(value) == width * count(session, message)
        for start in range(0, len(value), width):
            assert 1 <= int.from_bytes(value[start : start + width], "big") < n * n

    return check


def points(count: Callable[[Session, Any], int]) -> Check:
    def check(value: Any, session: Session, message: Any) -> None:
        assert isinstance(value, bytes) and len(value) == POINT_BYTES * count(session, message)

    return check


def masked_slots(key: str) -> Check:
    """Masked gradient slots packed under ``key``'s n, as the key holder returns them: width, count.

    An honest slot is ``G + 2^b + R`` with |G| < 2^b and R uniform below 2^(b + 80); the key
    holder returns its low b + 1 bits, ``(G + 2^b + R) mod 2^(b + 1)``, which is exactly uniform
    (test_masked_slots_are_not_the_gradients checks they differ from the gradients).
    """

    def check(value: Any, session: Session, message: Any) -> None:
        layout = _layout(session, session.n_a if key == "A" else session.n_b)
        count = session.b_features if key == "A" else session.a_features
        width = layout.returned_bytes
        assert isinstance(value, bytes) and len(value) == width * count
        for start in range(0, len(value), width):
            slot = int.from_bytes(value[start : start + width], "big")
            assert 0 <= slot < 1 << layout.returned_bits

    return check


def _layout(session: Session, n: int) -> Any:
    return gradient_layout(
        n,
        max_rows=max_batch_rows(session.train_rows, BATCH_SIZE),
        feature_bits=m.PreprocessParams().feature_bits,
        score_frac_bits=m.TrainParams().score_frac_bits,
    )


def equals(expected: Callable[[Session, Any], Any]) -> Check:
    def check(value: Any, session: Session, message: Any) -> None:
        assert value == expected(session, message)

    return check


def session_id(value: Any, session: Session, message: Any) -> None:
    assert isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value)


def header(value: Any, session: Session, message: Any) -> None:
    assert isinstance(value, m.BatchHeader)
    session_id(value.session_id, session, message)
    assert (value.epoch, value.batch) in session.batch_sizes


def salt(value: Any, session: Session, message: Any) -> None:
    assert isinstance(value, bytes) and len(value) == 32


def public_key(key: str) -> Check:
    def check(value: Any, session: Session, message: Any) -> None:
        n = session.n_a if key == "A" else session.n_b
        assert int.from_bytes(value.n, "big") == n and n.bit_length() == 512
        assert 1 <= int.from_bytes(value.djn_base, "big") < n * n

    return check


def public(value: Any, session: Session, message: Any) -> None:
    """Job parameters, names, enums and empty fields: public by construction."""


def finite_scalar(value: Any, session: Session, message: Any) -> None:
    assert isinstance(value, float) and np.isfinite(value)


def masked_loss(value: Any, session: Session, message: Any) -> None:
    """(L_B + R_L) mod 2^(b + 1), |L_B| < 2^b, R_L uniform in [2^b, 2^(b + 80)): B returns only
    the low b + 1 bits of what it decrypted, masked like a gradient slot."""
    number = int.from_bytes(value, "big")
    bound = loss_bound_bits(session.train_rows, m.TrainParams().score_frac_bits)
    assert 0 <= number < 1 << (bound + 1)


def masked_class_sum(value: Any, session: Session, message: Any) -> None:
    """(S_1 + R_S) mod 2^(b + 1): the low b + 1 bits only, as for the loss."""
    number = int.from_bytes(value, "big")
    bound = class_sum_bound_bits(session.train_rows, m.TrainParams().score_frac_bits)
    assert 0 <= number < 1 << (bound + 1)


def _assert(condition: bool) -> None:
    assert condition


def validation_scores(value: Any, session: Session, message: Any) -> None:
    scores = np.frombuffer(value, dtype="<f8")
    assert len(scores) == session.validation_rows and np.all(np.isfinite(scores))


def _batch_rows(session: Session, message: Any) -> int:
    return session.batch_sizes[(message.header.epoch, message.header.batch)]


def _batches(session: Session) -> int:
    return max(batch for _, batch in session.batch_sizes) + 1


def _fresh_slope_rows(session: Session, message: Any) -> int:
    """[[beta]] per row in the epochs the public schedule refreshes, none in the others."""
    return _batch_rows(session, message) if not message.reuse_slopes else 0


def _packed_count(key: str) -> Callable[[Session, Any], int]:
    """Packed ciphertexts of A's gradient (under B's key) or B's (under A's key)."""

    def count(session: Session, message: Any) -> int:
        if key == "B":
            return _layout(session, session.n_b).ciphertext_count(session.a_features)
        return _layout(session, session.n_a).ciphertext_count(session.b_features)

    return count


#: Every field of every message that crosses, and what it must be (docs/protocol.md, the table).
FIELDS: dict[type, dict[str, Check]] = {
    m.OpenSessionRequest: {
        "purpose": equals(lambda s, msg: m.Purpose.TRAIN),
        "dataset": public,
        "psi_salt": salt,
        "train": public,
        "paillier_key": public_key("A"),
        "model_id": equals(lambda s, msg: ""),
        "job_id": public,  # A's job id: B's checkpoint folder is a hash of it and the partner
        "resume_epochs": equals(lambda s, msg: ()),  # a fresh job
        "training_protocol": equals(lambda s, msg: m.TRAINING_PROTOCOL),
    },
    m.OpenSessionResponse: {
        "session_id": session_id,
        "psi_salt": salt,
        "paillier_key": public_key("B"),
        "checkpoint_epochs": equals(lambda s, msg: ()),
        "resume_epoch": equals(lambda s, msg: 0),
        "training_protocol": equals(lambda s, msg: m.TRAINING_PROTOCOL),
    },
    m.PsiBlindRequest: {"session_id": session_id, "points": points(lambda s, msg: s.a_rows)},
    m.PsiBlindResponse: {"accepted": equals(lambda s, msg: s.a_rows)},
    m.PsiPeerSetRequest: {"session_id": session_id},
    m.PsiPeerSetResponse: {
        "points": points(lambda s, msg: s.b_rows),
        "total": equals(lambda s, msg: s.b_rows),
    },
    m.PsiResultRequest: {"session_id": session_id, "peer_points": points(lambda s, msg: s.b_rows)},
    m.PsiResultResponse: {
        "intersection_size": equals(lambda s, msg: s.aligned),
        "points": points(lambda s, msg: s.a_rows),
    },
    m.BatchForwardRequest: {
        "header": header,
        "ciphertexts": ciphertexts("A", _batch_rows),
        "slopes": ciphertexts("A", _fresh_slope_rows),
        "reuse_slopes": equals(
            lambda s, msg: not slopes_refreshed(msg.header.epoch, EPOCHS, _batches(s))
        ),
        "curvatures": ciphertexts("A", _fresh_slope_rows),
        "held_basis": equals(lambda s, msg: False),  # a fresh job: nothing to re-send
    },
    m.BatchForwardResponse: {
        "ciphertexts": ciphertexts("B", _batch_rows),
        "loss_term": ciphertexts("B", lambda s, msg: 1),
        "curvature_basis": ciphertexts("B", _fresh_slope_rows),
    },
    m.BatchGradientRequest: {
        "header": header,
        "packed_ciphertexts": ciphertexts("B", _packed_count("B")),
        "value_count": equals(lambda s, msg: s.a_features),
    },
    m.BatchGradientResponse: {
        "packed_ciphertexts": ciphertexts("A", _packed_count("A")),
        "masked_values": masked_slots("B"),
        "value_count": equals(lambda s, msg: s.b_features),
    },
    m.BatchUpdateRequest: {"header": header, "masked_values": masked_slots("A")},
    m.BatchUpdateResponse: {
        "weight_change_norm": finite_scalar,
        "score_mean": finite_scalar,  # B's, over the epoch (documented; 0 before the last batch)
        "score_std": finite_scalar,
    },
    m.EpochLossRequest: {
        "session_id": session_id,
        "epoch": lambda value, s, msg: _assert(0 <= value < EPOCHS),
        "ciphertext": ciphertexts("B", lambda s, msg: 1),
        "class_sum": ciphertexts("B", lambda s, msg: 1),
    },
    m.EpochLossResponse: {"value": masked_loss, "class_value": masked_class_sum},
    m.PartialScoresRequest: {
        "session_id": session_id,
        "subset": equals(lambda s, msg: m.RowSubset.VALIDATION),
    },
    m.PartialScoresResponse: {"scores": validation_scores},
    m.CommitModelRequest: {"session_id": session_id, "model_id": public},
    m.CommitModelResponse: {"mean_partial_score": finite_scalar},
    m.DeleteModelRequest: {"model_id": public},  # only when A cannot save its shard
    m.DeleteModelResponse: {},
    # `fedlearn models`: whether B holds each of A's models (B answers for A's models only).
    m.CheckModelsRequest: {"model_ids": public},
    m.CheckModelsResponse: {"states": public, "reasons": public},
    m.CloseSessionRequest: {"session_id": session_id, "discard": equals(lambda s, msg: False)},
    m.CloseSessionResponse: {},
}


def _slots(data: bytes, width: int) -> list[int]:
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def _session(recorded: Recorded) -> Session:
    run = recorded.run
    (opened,) = [r.message for r in run.record if isinstance(r.message, m.OpenSessionRequest)]
    (answer,) = [r.message for r in run.record if isinstance(r.message, m.OpenSessionResponse)]
    train_rows, validation_rows = recorded.data["train"], recorded.data["validation"]
    batch_sizes = {
        (epoch, batch): len(rows)
        for epoch in range(EPOCHS)
        for batch, rows in enumerate(epoch_batches(train_rows, BATCH_SIZE, 42, epoch))
    }
    return Session(
        n_a=int.from_bytes(opened.paillier_key.n, "big"),
        n_b=int.from_bytes(answer.paillier_key.n, "big"),
        a_rows=len(run.a_table.ids),
        b_rows=len(run.b_table.ids),
        aligned=len(run.common_ids),
        train_rows=len(train_rows),
        validation_rows=len(validation_rows),
        batch_sizes=batch_sizes,
        a_features=recorded.data["x_a"].shape[1] + 1,  # with the intercept
        b_features=recorded.data["x_b"].shape[1],
    )


def test_every_field_of_every_message_is_of_a_documented_kind(recorded: Recorded) -> None:
    session = _session(recorded)
    record = recorded.run.record
    assert session.n_a != session.n_b
    request: Any = None
    seen: set[type] = set()
    for index, crossed in enumerate(record):
        message = crossed.message
        # A response is checked against the request it answers (the record alternates them).
        request = message if crossed.direction == "A->B" else request
        kind = type(message)
        assert kind in FIELDS, f"message {index}: {kind.__name__} is not in the table"
        seen.add(kind)
        expected = {f.name for f in dataclasses.fields(message)}
        assert expected == set(FIELDS[kind]), f"{kind.__name__}: fields {expected}"
        direction = "A->B" if kind.__name__.endswith("Request") else "B->A"
        assert crossed.direction == direction
        for name, check in FIELDS[kind].items():
            try:
                check(getattr(message, name), session, request)
            except AssertionError as exc:
                raise AssertionError(f"message {index} {kind.__name__}.{name}: {exc}") from exc
    # Every step of a training session happened, so every row of the table was exercised.
    not_in_training = {m.DeleteModelRequest, m.DeleteModelResponse}
    not_in_training |= {m.CheckModelsRequest, m.CheckModelsResponse}  # `fedlearn models` only
    assert seen == set(FIELDS) - not_in_training
    # Both kinds of epoch crossed, so the fields' checks saw fresh and reused terms alike.
    forwards = [r.message for r in record if isinstance(r.message, m.BatchForwardRequest)]
    assert any(f.reuse_slopes for f in forwards) and not all(f.reuse_slopes for f in forwards)
    n_batches = len(session.batch_sizes)
    assert sum(isinstance(r.message, m.BatchUpdateRequest) for r in record) == n_batches
    assert sum(isinstance(r.message, m.EpochLossRequest) for r in record) == EPOCHS
    # The only partial scores that cross are the validation ones, once, at the end of training.
    scores_at = [i for i, r in enumerate(record) if isinstance(r.message, m.PartialScoresRequest)]
    updates_at = [i for i, r in enumerate(record) if isinstance(r.message, m.BatchUpdateRequest)]
    assert len(scores_at) == 1 and scores_at[0] > updates_at[-1]


def test_masked_slots_are_not_the_gradients(recorded: Recorded) -> None:
    """Each masked slot on the wire differs from the true gradient (and its offset encoding)."""
    session = _session(recorded)
    layout_b, layout_a = _layout(session, session.n_b), _layout(session, session.n_a)
    masked: list[list[int]] = []
    for crossed in recorded.run.record:
        message = crossed.message
        if isinstance(message, m.BatchGradientResponse):  # A's gradient, masked by A
            masked.append(_slots(message.masked_values, layout_b.returned_bytes))
        elif isinstance(message, m.BatchUpdateRequest):  # B's gradient, masked by B
            masked.append(_slots(message.masked_values, layout_a.returned_bytes))
    gradients = recorded.captured.gradients
    assert len(gradients) == len(masked) == 2 * len(session.batch_sizes)
    # A unmasks its gradient before B unmasks its own, batch after batch: same order as the wire.
    nonzero = 0
    for wire_values, true_values in zip(masked, gradients, strict=True):
        assert len(wire_values) == len(true_values)
        for slot, value in zip(wire_values, true_values, strict=True):
            assert slot != value and slot != value + (1 << layout_a.value_bound_bits)
            assert slot != value + (1 << layout_b.value_bound_bits)
            nonzero += value != 0
    assert nonzero > len(masked)  # real gradients, not a run that computed zeros


# ---- 2. no plaintext in any payload ---------------------------------------------------------------


class PayloadIndex:
    """Every ``bytes`` field that crossed, searchable for encoded values."""

    def __init__(self, payloads: Iterable[tuple[str, bytes]]) -> None:
        self.payloads = [(label, data) for label, data in payloads if data]
        # Every 8-byte substring at every offset: a needle's first 8 bytes must be one of them.
        self._prefixes = {
            data[start : start + 8] for _, data in self.payloads for start in range(len(data) - 7)
        }

    def find(self, needle: bytes) -> set[str]:
        """Labels of the payloads that contain ``needle`` (at least 8 bytes) at any offset."""
        assert len(needle) >= 8
        if needle[:8] not in self._prefixes:
            return set()
        return {label for label, data in self.payloads if needle in data}


def _payloads(run: MemoryRun) -> list[tuple[str, bytes]]:
    found = []
    for index, crossed in enumerate(run.record):
        for name, value in _bytes_fields(crossed.message):
            found.append((f"{index}:{type(crossed.message).__name__}.{name}", value))
    return found


def _bytes_fields(message: Any, prefix: str = "") -> Iterable[tuple[str, bytes]]:
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, bytes):
            yield prefix + f.name, value
        elif dataclasses.is_dataclass(value):
            yield from _bytes_fields(value, f"{prefix}{f.name}.")


FLOAT_TYPES = ("<f8", ">f8")
VECTOR_TYPES = ("<f8", ">f8", "<f4", ">f4", "<i8", ">i8", "<i4", ">i4", "<i2", ">i2", "u1")


def scalar_needles(values: Iterable[float]) -> list[bytes]:
    """Each value as an 8-byte float, both byte orders (4-byte encodings would match by chance)."""
    unique = np.unique(np.asarray(list(values), dtype=np.float64))
    unique = unique[(unique != 0.0) & np.isfinite(unique)]
    return [np.array([v], dtype=t).tobytes() for v in unique for t in FLOAT_TYPES]


def vector_needles(vectors: Iterable[np.ndarray], window: int = 16) -> list[bytes]:
    """Windows of ``window`` consecutive values (every offset) in every encoding a sender might use.

    Integer encodings are used only for vectors of integers (labels, fixed-point values); encodings
    shorter than 8 bytes are left out (they would match random bytes by chance).
    """
    needles = []
    for vector in vectors:
        vector = np.asarray(vector)
        integral = bool(np.all(np.equal(np.mod(vector, 1), 0)))
        types = VECTOR_TYPES if integral else (*FLOAT_TYPES, "<f4", ">f4")
        for start in range(0, max(1, len(vector) - window + 1)):
            chunk = vector[start : start + window]
            if len(chunk) < window or not np.any(chunk):
                continue
            for dtype in types:
                if dtype.lstrip("<>")[0] in "iu" and np.abs(chunk).max() >= 2 ** (
                    8 * np.dtype(dtype).itemsize - 1
                ):
                    continue
                encoded = chunk.astype(dtype).tobytes()
                if len(encoded) >= 8:
                    needles.append(encoded)
    return needles


@pytest.fixture(scope="module")
def index(recorded: Recorded) -> PayloadIndex:
    return PayloadIndex(_payloads(recorded.run))


def _hits(index: PayloadIndex, needles: Iterable[bytes]) -> set[str]:
    found: set[str] = set()
    for needle in needles:
        found |= index.find(needle)
    return found


def test_search_finds_planted_values(recorded: Recorded) -> None:
    run, data = recorded.run, recorded.data
    rng = np.random.default_rng(7)
    labels = data["y"][data["train"]][:16]
    raw_value = float(run.a_table.features.iloc[3, 2])
    planted = (
        rng.bytes(101)
        + labels.astype("u1").tobytes()
        + rng.bytes(13)
        + np.array([raw_value], dtype=">f8").tobytes()
        + rng.bytes(7)
    )
    index = PayloadIndex([*_payloads(run), ("planted", planted)])
    assert _hits(index, vector_needles([data["y"][data["train"]]])) == {"planted"}
    assert _hits(index, scalar_needles([raw_value])) == {"planted"}


def test_search_finds_the_validation_partial_scores(
    recorded: Recorded, index: PayloadIndex
) -> None:
    """B's partial scores on the validation rows do cross (documented); the search sees them."""
    data, run = recorded.data, recorded.run
    weights = np.asarray(run.b_shard["weights"])
    scores = data["x_b"][data["validation"]] @ weights
    (response,) = [r.message for r in run.record if isinstance(r.message, m.PartialScoresResponse)]
    np.testing.assert_allclose(np.frombuffer(response.scores, "<f8"), scores, rtol=1e-12)
    sent = np.frombuffer(response.scores, "<f8")
    assert {label.split(":")[1] for label in _hits(index, scalar_needles(sent))} == {
        "PartialScoresResponse.scores"
    }


def test_no_labels_in_any_payload(recorded: Recorded, index: PayloadIndex) -> None:
    data = recorded.data
    sequences = [data["y"], data["y"][data["train"]], data["y"][data["validation"]]]
    sequences += [y for _, y in recorded.captured.a_terms]  # each batch's labels, batch order
    assert _hits(index, vector_needles(sequences)) == set()


def test_no_feature_values_in_any_payload(recorded: Recorded, index: PayloadIndex) -> None:
    run, data = recorded.run, recorded.data
    raw = [
        run.a_table.features.to_numpy(dtype=np.float64),
        run.b_table.features.to_numpy(dtype=np.float64),
    ]
    assert _hits(index, scalar_needles(np.concatenate([r.ravel() for r in raw]))) == set()
    # Rows of the preprocessed matrices, as floats and as the quantised integers.
    rows = [data["x_a"][i] for i in range(0, len(data["y"]), 7)]
    rows += [data["x_b"][i] for i in range(0, len(data["y"]), 7)]
    assert _hits(index, vector_needles(rows)) == set()
    # Columns (a party might send a column of a batch).
    columns = [data["x_a"][:, j] for j in range(data["x_a"].shape[1])]
    columns += [data["x_b"][:, j] for j in range(data["x_b"].shape[1])]
    assert _hits(index, vector_needles(columns, window=16)) == set()


def test_no_weights_in_any_payload(recorded: Recorded, index: PayloadIndex) -> None:
    run = recorded.run
    weights = [*run.meta["a_weights"].values(), run.meta["intercept"], *run.b_shard["weights"]]
    assert _hits(index, scalar_needles(weights)) == set()
    assert _hits(index, vector_needles([np.asarray(run.b_shard["weights"])])) == set()


def test_no_scores_residuals_or_gradients_in_any_payload(
    recorded: Recorded, index: PayloadIndex
) -> None:
    captured, data, run = recorded.captured, recorded.data, recorded.run
    frac = m.TrainParams().score_frac_bits
    assert len(captured.a_terms) == len(captured.b_scores) > 0
    per_row: list[np.ndarray] = []
    terms = zip(
        captured.a_terms, captured.a_slopes, captured.a_offsets, captured.b_scores, strict=True
    )
    for (u_a, y), slope, offset, u_b in terms:
        clipped = np.clip(u_b, -SCORE_CLIP, SCORE_CLIP)
        # with the terms B holds (fresh or reused), without the curvature correction
        residual = sigmoid(u_a) - y + offset + slope * clipped
        fresh = sigmoid(u_a) + sigmoid_slope(u_a) * clipped - y
        per_row += [u_a, u_b, residual, fresh, sigmoid(u_a), sigmoid(u_a + u_b)]
        per_row.append(np.rint(clipped * 2.0**frac))  # B's fixed-point score before the offset
        per_row.append(np.rint(residual * 2.0 ** steps.residual_frac_bits(frac)))
    assert _hits(index, vector_needles(per_row)) == set()
    assert _hits(index, scalar_needles(np.concatenate(per_row))) == set()
    # A's partial scores on the training rows (B's on the validation rows do cross, by design).
    w_a = np.array([*run.meta["a_weights"].values(), run.meta["intercept"]])
    u_a_final = np.hstack([data["x_a"], np.ones((len(data["y"]), 1))]) @ w_a
    b_train = data["x_b"][data["train"]] @ np.asarray(run.b_shard["weights"])
    assert _hits(index, scalar_needles(np.concatenate([u_a_final, b_train]))) == set()
    # The integer gradients each party recovered after unmasking.
    assert _hits(index, vector_needles([np.array(g) for g in captured.gradients], 4)) == set()
