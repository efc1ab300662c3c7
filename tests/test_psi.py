"""ECDH-PSI primitives over X25519: matching, ordering, and what is refused."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fedlearn.crypto import psi
from fedlearn.crypto.psi import POINT_BYTES, PsiKey, intersect, session_salt
from fedlearn.errors import DataError, InvalidPeerData

SALT = session_salt(b"A" * 16, b"B" * 16)

# u-coordinates of low-order points (RFC 7748 / libsodium's blocklist), little-endian.
_P = 2**255 - 19
LOW_ORDER_U = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
    _P,
    _P + 1,
]


def _run_psi(ids_a: list[str], ids_b: list[str]) -> tuple[list[str], list[str]]:
    """Both roles in one process; returns the intersection as each party sees it, in its order."""
    key_a, key_b = PsiKey.generate(), PsiKey.generate()
    a_single = key_a.blind_ids(ids_a, SALT)
    b_single = key_b.blind_ids(ids_b, SALT)
    a_double = key_b.blind_points(a_single)  # B raises A's points, sends them back to A
    b_double = key_a.blind_points(b_single)  # A raises B's points
    a_rows, b_rows_seen_by_a = intersect(a_double, b_double)  # what A computes
    b_rows, a_rows_seen_by_b = intersect(b_double, a_double)  # what B computes
    np.testing.assert_array_equal(a_rows, a_rows_seen_by_b)
    np.testing.assert_array_equal(b_rows, b_rows_seen_by_a)
    return [ids_a[i] for i in a_rows], [ids_b[i] for i in b_rows]


def test_empty_inputs() -> None:
    key = PsiKey.generate()
    assert key.blind_ids([], SALT) == b""
    assert key.blind_points(b"") == b""
    own, peer = intersect(b"", b"")
    assert own.shape == (0,) and peer.shape == (0,)
    assert _run_psi([], ["x", "y"]) == ([], [])


def test_disjoint_sets_have_no_match() -> None:
    assert _run_psi(["a", "b", "c"], ["d", "e"]) == ([], [])


def test_identical_sets_match_fully_in_a_common_order() -> None:
    ids = [f"user{i}" for i in range(50)]
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    seen_by_a, seen_by_b = _run_psi(ids, shuffled)
    assert seen_by_a == seen_by_b
    assert sorted(seen_by_a) == sorted(ids)
    assert seen_by_a != ids  # the common order is the points' order, not A's row order


def test_unicode_case_and_white_space_are_kept() -> None:
    ids_a = ["Zoë", "用户", "a", " b", "c "]
    ids_b = ["Zoe", "用户", "A", "b", "c "]
    seen_by_a, seen_by_b = _run_psi(ids_a, ids_b)
    assert seen_by_a == seen_by_b
    assert sorted(seen_by_a) == ["c ", "用户"]


def test_blinding_commutes() -> None:
    ids = ["alpha", "beta", "Zoë"]
    key_a, key_b = PsiKey.generate(), PsiKey.generate()
    ab = key_b.blind_points(key_a.blind_ids(ids, SALT))
    ba = key_a.blind_points(key_b.blind_ids(ids, SALT))
    assert ab == ba
    assert len(ab) == 3 * POINT_BYTES


def test_fresh_keys_and_salts_give_unlinkable_points() -> None:
    ids = ["alpha"]
    key = PsiKey.generate()
    assert key.blind_ids(ids, SALT) != PsiKey.generate().blind_ids(ids, SALT)
    other_salt = session_salt(b"C" * 16, b"D" * 16)
    assert key.blind_ids(ids, SALT) != key.blind_ids(ids, other_salt)
    assert repr(key) == "PsiKey(<secret>)"


def test_ten_thousand_each_side_matches_python_sets() -> None:
    rng = random.Random(11)
    universe = [f"id-{rng.getrandbits(40):010x}" for _ in range(16_000)]
    ids_a = rng.sample(universe, 10_000)
    ids_b = rng.sample(universe, 10_000)
    seen_by_a, seen_by_b = _run_psi(ids_a, ids_b)
    assert seen_by_a == seen_by_b
    assert set(seen_by_a) == set(ids_a) & set(ids_b)
    assert len(seen_by_a) == len(set(seen_by_a))


@pytest.mark.parametrize("u", LOW_ORDER_U)
def test_low_order_points_are_refused(u: int) -> None:
    good = PsiKey.generate().blind_ids(["x", "y"], SALT)
    bad = (u % 2**256).to_bytes(32, "little")
    with pytest.raises(InvalidPeerData, match="item 2 is of low order"):
        PsiKey.generate().blind_points(good + bad)


@pytest.mark.parametrize("length", [1, 31, 33, 65])
def test_points_of_the_wrong_length_are_refused(length: int) -> None:
    with pytest.raises(InvalidPeerData, match="multiple of 32"):
        PsiKey.generate().blind_points(b"\x09" * length)
    with pytest.raises(InvalidPeerData, match="multiple of 32"):
        intersect(b"\x09" * length, b"")


def test_repeated_points_are_refused() -> None:
    point = PsiKey.generate().blind_ids(["x"], SALT)
    with pytest.raises(InvalidPeerData, match="more than once"):
        intersect(b"", point + point)


def test_ids_must_be_strings_and_encodable() -> None:
    key = PsiKey.generate()
    with pytest.raises(DataError, match="item 1 is int"):
        key.blind_ids(["a", 7], SALT)  # type: ignore[list-item]
    with pytest.raises(DataError, match="item 0 cannot be encoded"):
        key.blind_ids(["\ud800"], SALT)
    with pytest.raises(ValueError, match="32 bytes"):
        key.blind_ids(["a"], b"short")


def test_session_salt_is_symmetric_in_use_and_checks_lengths() -> None:
    salt_a, salt_b = bytes(range(16)), bytes(range(1, 17))
    assert session_salt(salt_a, salt_b) == session_salt(salt_a, salt_b)
    assert session_salt(salt_a, salt_b) != session_salt(salt_b, salt_a)
    assert len(session_salt(salt_a, salt_b)) == 32
    with pytest.raises(InvalidPeerData, match="party B's PSI salt"):
        session_salt(salt_a, b"\x01" * 15)
    with pytest.raises(InvalidPeerData, match="party A's PSI salt"):
        session_salt(b"\x01" * 2000, salt_b)
    with pytest.raises(InvalidPeerData, match="identical"):
        session_salt(salt_a, salt_a)


def test_worker_pool_gives_the_same_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psi, "MIN_CHUNK_FOR_POOL", 10)
    ids = [f"u{i:05d}" for i in range(60)]
    key = PsiKey.generate()
    single = key.blind_ids(ids, SALT)
    assert key.blind_ids(ids, SALT, workers=2) == single
    peer = PsiKey.generate()
    assert peer.blind_points(single, workers=2) == peer.blind_points(single)
    bad = single[: 40 * POINT_BYTES] + bytes(32) + single[41 * POINT_BYTES :]
    with pytest.raises(InvalidPeerData, match="item 40 "):  # index counted across chunks
        peer.blind_points(bad, workers=2)
    with pytest.raises(ValueError, match="workers"):
        key.blind_ids(ids, SALT, workers=0)
