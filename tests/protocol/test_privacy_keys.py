"""Privacy checks that know whose key each ciphertext is under, and that catch planted leaks (issue 11).

tests/protocol/test_privacy.py checks the kind and range of every field. It passed with two planted
leaks, each shown to leak: B encrypting everything with one obfuscator (A then reads u_B), and masks
that are multiples of 2^(b+1) (the low bits of a masked slot give the gradient). The checks here
hold both parties' private keys (captured in process, as a test may) and so can:

1. decrypt every ciphertext on the wire under the key its field is documented to be under (the keys
   are told apart by the session's public keys), and check the plaintext is what the field says;
2. check that every encryption is freshly randomised (no two ciphertexts share an obfuscator, and
   the quotient of two ciphertexts a party cannot decrypt never reveals a plaintext difference);
3. check that the holder of a key never gets a value of the other party back undisguised: what A
   sends under B's key, decrypted with B's key, is A's gradient plus a mask that hides it (at least
   2^40 times its range, uncorrelated with it, and its low bits do not give it away), and the same
   for B's gradient under A's key;
4. check that the masks, as they show on the wire (masked slot minus value), are uniform over their
   whole range: each of the low 8 and high 8 bits is balanced, and a chi-square over the low and
   high 4 bits is far from rejecting (p > 1e-6), over every batch of the run.

Then a mutation check: the suite patches each planted leak back in, reruns the protocol, and asserts
that the checks above FAIL on each mutant (and that the leak is real: the attack on the mutant's
wire reads the secret). Masks and obfuscators come from the OS CSPRNG by design, so the statistical
checks cannot be seeded; their false-alarm rate is below 1e-5 per run. One epoch of FATE's breast
split at 512 bits per run.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import chisquare

from fedlearn.crypto import packing
from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.model import max_batch_rows
from fedlearn.protocol import messages as m
from fedlearn.protocol import steps, train_b
from fedlearn.protocol.steps import MASK_BITS, SCORE_CLIP, gradient_layout
from party_a import train as train_a
from tests.protocol.harness import MemoryRun, fate_specs, job_text, run_memory

BATCH_SIZE = 64


@dataclasses.dataclass
class Unmasked:
    """One party recovering its gradient: what the key holder returned of each masked slot (its low
    b+1 bits, ``packing.truncate``), the party's masks, and the values it recovered."""

    returned: list[int]
    masks: list[int]
    values: list[int]
    layout: packing.PackingLayout


@dataclasses.dataclass
class Run:
    run: MemoryRun
    keys: dict[str, KeyPair]  # "A" and "B", told apart by the n in the session's messages
    unmasked: list[Unmasked]  # in protocol order: A's gradient, then B's, batch after batch


def record_run(tmp: Path, patch: pytest.MonkeyPatch) -> Run:
    """One epoch of breast in memory, capturing both key pairs and every unmasking."""
    made: list[KeyPair] = []
    unmasked: list[Unmasked] = []
    real_unmask = steps.unmask_truncated

    def keep_key(real: Callable[[int], KeyPair]) -> Callable[[int], KeyPair]:
        def generate(bits: int) -> KeyPair:
            made.append(real(bits))
            return made[-1]

        return generate

    def unmask(returned: Any, masks: Any, layout: packing.PackingLayout) -> list[int]:
        values = real_unmask(returned, masks, layout)
        unmasked.append(Unmasked(list(returned), list(masks), list(values), layout))
        return values

    patch.setattr(train_a, "generate_keypair", keep_key(train_a.generate_keypair))
    patch.setattr(train_b, "generate_keypair", keep_key(train_b.generate_keypair))
    patch.setattr(steps, "unmask_truncated", unmask)
    a_spec, b_spec = fate_specs("breast")
    run = run_memory(a_spec, b_spec, job_text(epochs=1, batch_size=BATCH_SIZE, key_bits=512), tmp)
    (opened,) = [r.message for r in run.record if isinstance(r.message, m.OpenSessionRequest)]
    n_a = int.from_bytes(opened.paillier_key.n, "big")
    by_n = {int(pair.public_key.n): pair for pair in made}
    (n_b,) = set(by_n) - {n_a}
    return Run(run, {"A": by_n[n_a], "B": by_n[n_b]}, unmasked)


# ---- which key each ciphertext field is under, and what it must decrypt to --------------------------

#: (message type, field) -> (the key it is under, who sends it). Ciphertexts cross to the key's
#: holder only packed and masked (and the masked epoch loss); the others cross to the party that
#: cannot decrypt them.
UNDER: dict[tuple[type, str], tuple[str, str]] = {
    (m.BatchForwardRequest, "ciphertexts"): ("A", "A"),
    (m.BatchForwardRequest, "slopes"): ("A", "A"),
    (m.BatchForwardResponse, "ciphertexts"): ("B", "B"),
    (m.BatchForwardResponse, "loss_term"): ("B", "B"),
    (m.BatchGradientRequest, "packed_ciphertexts"): ("B", "A"),
    (m.BatchGradientResponse, "packed_ciphertexts"): ("A", "B"),
    (m.EpochLossRequest, "ciphertext"): ("B", "A"),
}


def _ciphertexts(recorded: Run) -> Iterator[tuple[int, type, str, list[int]]]:
    """(message index, type, field, ciphertexts) for every ciphertext field that crossed."""
    for index, crossed in enumerate(recorded.run.record):
        message = crossed.message
        for field in dataclasses.fields(message):
            if (type(message), field.name) in UNDER:
                key = recorded.keys[UNDER[type(message), field.name][0]].public_key
                width = (int(key.nsquare).bit_length() + 7) // 8
                data = getattr(message, field.name)
                values = [
                    int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)
                ]
                yield index, type(message), field.name, values


def _decrypt(pair: KeyPair, ciphertext: int) -> int:
    return int(pair.private_key.raw_decrypt(ciphertext))


def _layout(recorded: Run, key: str) -> packing.PackingLayout:
    """The packing layout of gradients packed under ``key``."""
    train_rows = _train_rows(recorded)
    return gradient_layout(
        int(recorded.keys[key].public_key.n),
        max_rows=max_batch_rows(train_rows, BATCH_SIZE),
        feature_bits=m.PreprocessParams().feature_bits,
        score_frac_bits=m.TrainParams().score_frac_bits,
    )


def _train_rows(recorded: Run) -> int:
    forwards = [
        r.message for r in recorded.run.record if isinstance(r.message, m.BatchForwardRequest)
    ]
    key = recorded.keys["A"].public_key
    width = (int(key.nsquare).bit_length() + 7) // 8
    return sum(len(f.ciphertexts) // width for f in forwards)


def check_ciphertexts_are_under_their_documented_key(recorded: Run) -> None:
    """Each ciphertext decrypts, under the key of its field, to a value of the documented range."""
    frac = m.TrainParams().score_frac_bits
    v_bound = 2 * SCORE_CLIP * 2**frac
    for index, kind, name, values in _ciphertexts(recorded):
        key, _ = UNDER[kind, name]
        pair = recorded.keys[key]
        n = int(pair.public_key.n)
        plain = [_decrypt(pair, c) for c in values]
        where = f"message {index} {kind.__name__}.{name} (under {key}'s key)"
        if kind is m.BatchForwardResponse and name == "ciphertexts":
            assert all(0 <= p <= v_bound for p in plain), f"{where}: not B's offset score"
        elif kind is m.BatchForwardRequest and name == "slopes":
            assert all(0 <= p <= 2**14 for p in plain), f"{where}: not A's slope"
        elif "packed" in name:
            layout = _layout(recorded, key)
            assert all(p < n for p in plain)
            assert all(p >> (layout.slots * layout.slot_bits) == 0 for p in plain), where


# ---- 2. every encryption freshly randomised ----------------------------------------------------------


def check_fresh_obfuscators(recorded: Run) -> None:
    """No two ciphertexts under one key share an obfuscator s = c (1 - m n) mod n^2; and the
    quotient of two ciphertexts that cross to the party without the key is never 1 + k n (which
    would hand that party the difference k of the two plaintexts)."""
    seen: dict[str, dict[int, str]] = {"A": {}, "B": {}}
    for index, kind, name, values in _ciphertexts(recorded):
        key, sender = UNDER[kind, name]
        pair = recorded.keys[key]
        n, n2 = int(pair.public_key.n), int(pair.public_key.nsquare)
        where = f"message {index} {kind.__name__}.{name}"
        for position, c in enumerate(values):
            s = c * (1 - _decrypt(pair, c) * n) % n2
            first = seen[key].setdefault(s, f"{where}[{position}]")
            assert first == f"{where}[{position}]", (
                f"{where}[{position}] reuses {first}'s obfuscator"
            )
        if sender == key:  # crossing to the party that cannot decrypt: try what it would try
            for left, right in itertools.pairwise(values):
                quotient = left * pow(right, -1, n2) % n2
                assert (quotient - 1) % n, f"{where}: two ciphertexts differ by a plaintext"


# ---- 3. the key holder never gets the other party's value back undisguised ----------------------------


def _returned(recorded: Run) -> list[tuple[str, list[int], Unmasked]]:
    """For each packed gradient sent to the key holder: (holder, decrypted slots, the sender's
    own unmasking of the same slots)."""
    packed = [
        (UNDER[kind, name][0], values)
        for _, kind, name, values in _ciphertexts(recorded)
        if name == "packed_ciphertexts"
    ]
    assert len(packed) == len(recorded.unmasked) > 0
    out = []
    for (holder, values), unmasked in zip(packed, recorded.unmasked, strict=True):
        pair = recorded.keys[holder]
        slots = packing.unpack(
            [_decrypt(pair, c) for c in values], unmasked.layout, len(unmasked.returned)
        )
        keep = (1 << unmasked.layout.returned_bits) - 1
        assert [slot & keep for slot in slots] == unmasked.returned, (
            "the holder sends back the low bits of the slots it decrypts"
        )
        out.append((holder, slots, unmasked))
    return out


def check_holder_gets_nothing_back_undisguised(recorded: Run) -> None:
    """What each party decrypts of the other's gradient: every slot is value + 2^b + R with R at
    least 2^(b+40) and below 2^(b+80); the slots do not correlate with the values; and the low
    b+1 bits of a slot (what the holder could read if masks were structured) are not the value."""
    slots_all: list[float] = []
    values_all: list[float] = []
    hits = total = 0
    for _, slots, unmasked in _returned(recorded):
        b = unmasked.layout.value_bound_bits
        for slot, value in zip(slots, unmasked.values, strict=True):
            remainder = slot - (1 << b) - value
            assert 1 << (b + 40) <= remainder < 1 << (b + MASK_BITS), "a slot is not masked"
            slots_all.append(slot / 2.0 ** (b + MASK_BITS))
            values_all.append(value / 2.0**b)
            hits += (slot % (1 << (b + 1))) - (1 << b) == value
            total += 1
    assert hits <= 2, f"the low bits of {hits} of {total} masked slots are the value"
    nonzero = np.std(values_all) > 0
    if nonzero:
        r = float(np.corrcoef(slots_all, values_all)[0, 1])
        assert abs(r) < 5 / math.sqrt(len(slots_all)), f"slots correlate with values (r = {r:.3f})"


# ---- 4. masks uniform over their whole range ---------------------------------------------------------


def check_masks_uniform(recorded: Run) -> None:
    """Masks as the wire shows them (slot - 2^b - value), over every batch and both parties: the low
    8 and the high 8 of their b + 80 bits each balanced within 5 sigma, and chi-square over the low
    4 and the high 4 bits with p > 1e-6."""
    masks: list[int] = []
    for _, slots, unmasked in _returned(recorded):
        b = unmasked.layout.value_bound_bits
        for slot, value, kept in zip(slots, unmasked.values, unmasked.masks, strict=True):
            assert slot - (1 << b) - value == kept
            masks.append(kept)
    count = len(masks)
    assert count >= 200, f"too few masks ({count}) for the statistics"
    # Masks of A's and B's gradients have different widths: use bit positions from each top.
    tops = [_width_of(recorded, i) for i in range(len(recorded.unmasked))]
    per_mask_top = [top for top, u in zip(tops, recorded.unmasked, strict=True) for _ in u.masks]
    for name, bit_of in {
        **{f"bit {k}": (lambda mask, top, k=k: (mask >> k) & 1) for k in range(8)},
        **{f"bit top-{k}": (lambda mask, top, k=k: (mask >> (top - k)) & 1) for k in range(1, 9)},
    }.items():
        ones = sum(bit_of(mask, top) for mask, top in zip(masks, per_mask_top, strict=True))
        assert abs(ones - count / 2) <= 5 * math.sqrt(count) / 2, f"{name}: {ones} of {count}"
    low = np.bincount([mask & 15 for mask in masks], minlength=16)
    high = np.bincount(
        [(mask >> (top - 4)) & 15 for mask, top in zip(masks, per_mask_top, strict=True)],
        minlength=16,
    )
    for name, counts in (("low 4 bits", low), ("high 4 bits", high)):
        p = float(chisquare(counts).pvalue)
        assert p > 1e-6, f"masks' {name} are not uniform (chi-square p = {p:.2g})"


def _width_of(recorded: Run, index: int) -> int:
    return recorded.unmasked[index].layout.value_bound_bits + MASK_BITS


CHECKS: dict[str, Callable[[Run], None]] = {
    "ciphertexts under their documented key": check_ciphertexts_are_under_their_documented_key,
    "fresh obfuscators": check_fresh_obfuscators,
    "holder gets nothing back undisguised": check_holder_gets_nothing_back_undisguised,
    "masks uniform": check_masks_uniform,
}


def failing_checks(recorded: Run) -> dict[str, str]:
    failed = {}
    for name, check in CHECKS.items():
        try:
            check(recorded)
        except AssertionError as exc:
            failed[name] = str(exc).splitlines()[0]
    return failed


# ---- the planted leaks -------------------------------------------------------------------------------


@contextmanager
def one_obfuscator(patch: pytest.MonkeyPatch) -> Iterator[None]:
    """Mutant (a): each party's engine draws one obfuscator and uses it for every encryption."""
    real = OwnKeyEngine._take_obfuscators
    chosen: dict[int, Any] = {}

    def take(self: OwnKeyEngine, count: int) -> Any:
        if id(self) not in chosen:
            chosen[id(self)] = real(self, 1)[0]
        return [chosen[id(self)]] * count

    patch.setattr(OwnKeyEngine, "_take_obfuscators", take)
    yield


@contextmanager
def structured_masks(patch: pytest.MonkeyPatch) -> Iterator[None]:
    """Mutant (b): masks are multiples of 2^(b+1), still below 2^(b+80)."""

    def draw(count: int, layout: packing.PackingLayout) -> list[int]:
        b = layout.value_bound_bits
        return [secrets.randbits(MASK_BITS - 1) << (b + 1) for _ in range(count)]

    from fedlearn.crypto import peer, phe_engine

    for module in (packing, peer, phe_engine):
        patch.setattr(module, "draw_masks", draw)
    yield


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Run:
    with pytest.MonkeyPatch.context() as patch:
        return record_run(tmp_path_factory.mktemp("honest"), patch)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_honest_run_passes(honest: Run, name: str) -> None:
    CHECKS[name](honest)


def test_mutant_one_obfuscator_is_caught_and_leaks(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch, one_obfuscator(patch):
        mutant = record_run(tmp_path, patch)
    assert "fresh obfuscators" in failing_checks(mutant)
    # The leak is real: A, without B's key, reads every difference v_i - v_1 of B's offset scores
    # from the quotient of two ciphertexts, hence u_B up to one constant.
    pair = mutant.keys["B"]
    n, n2 = int(pair.public_key.n), int(pair.public_key.nsquare)
    (_, _, _, first), *_ = [c for c in _ciphertexts(mutant) if c[1] is m.BatchForwardResponse]
    v = [_decrypt(pair, c) for c in first]  # the truth, with B's key (the test's view)
    read_by_a = [(c * pow(first[0], -1, n2) % n2 - 1) // n for c in first]
    assert read_by_a == [(vi - v[0]) % n for vi in v]


def test_mutant_structured_masks_is_caught_and_leaks(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch, structured_masks(patch):
        mutant = record_run(tmp_path, patch)
    failed = failing_checks(mutant)
    assert {"masks uniform", "holder gets nothing back undisguised"} <= set(failed), failed
    # The leak is real: the key holder reads the other's gradient from a slot's low b+1 bits.
    for _, slots, unmasked in _returned(mutant):
        b = unmasked.layout.value_bound_bits
        read = [(slot % (1 << (b + 1))) - (1 << b) for slot in slots]
        assert read == unmasked.values
