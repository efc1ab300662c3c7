"""Data larger than memory: tables read in chunks, PSI's compact buffers, output written in chunks.

Each test runs a chunk size smaller than the data against one chunk (or against the plain
reference) and asserts the results are identical; and that a problem deep in a multi-chunk file is
reported with its row, leaving nothing half-written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fedlearn.crypto import psi
from fedlearn.crypto.psi import PsiKey, common_order, hash_ids, intersect
from fedlearn.data import load_party_table, write_table_chunks_atomic
from fedlearn.errors import DataError, InvalidPeerData


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "uid": [f" U{i:05d}" for i in rng.permutation(rows)],  # white space is stripped
            "label": rng.integers(0, 2, rows),
            "income": np.round(rng.normal(50, 10, rows), 3).astype(object),
            "region": rng.choice(["north", "south", ""], rows),
            "visits": rng.integers(0, 9, rows).astype(object),
        }
    ).assign(income=lambda f: f["income"].where(rng.random(rows) > 0.1, "NA"))


def _load(path: Path, chunk_rows: int):
    return load_party_table(
        path,
        id_column="uid",
        label_column="label",
        categorical=["region"],
        require_label=True,
        chunk_rows=chunk_rows,
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_a_table_read_in_chunks_equals_the_table_read_at_once(tmp_path: Path, suffix: str) -> None:
    frame = _frame(203)
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        frame.astype(str).to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    whole, chunked = _load(path, 10_000), _load(path, 17)  # 12 chunks, the last one short
    assert whole.ids.tolist() == chunked.ids.tolist()
    assert whole.ids[0] == frame["uid"][0].strip()
    pd.testing.assert_frame_equal(whole.features, chunked.features)
    assert chunked.features.index.equals(pd.RangeIndex(203))
    assert whole.labels is not None and chunked.labels is not None
    assert whole.labels.tolist() == chunked.labels.tolist() == frame["label"].tolist()
    assert whole.numeric_columns == chunked.numeric_columns == ["income", "visits"]
    assert whole.categorical_columns == chunked.categorical_columns == ["region"]
    assert np.isnan(chunked.features["income"]).sum() == (frame["income"] == "NA").sum() > 0


def test_a_bad_value_deep_in_a_long_file_names_its_row(tmp_path: Path) -> None:
    frame = _frame(500)
    frame.loc[436, "visits"] = "many"  # data row 437, in the 9th chunk of 50
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"'visits' has 1 non-numeric value, first at row 437") as e:
        _load(path, 50)
    assert "counted in rows 1-450" in str(e.value)
    # One chunk: the count covers the whole file and the message does not qualify it.
    with pytest.raises(DataError, match=r"first at row 437 \('many'\); [^\[]*config$"):
        _load(path, 1000)


def test_a_duplicate_id_across_chunks_names_both_rows(tmp_path: Path) -> None:
    frame = _frame(120)
    frame.loc[101, "uid"] = frame.loc[3, "uid"]
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"1 duplicate ID; the first is 'U\d+' at rows 4 and 102"):
        _load(path, 25)


def test_a_header_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("uid,label,x\n")
    with pytest.raises(DataError, match="header but no data rows"):
        _load(path, 5)


# ---- PSI: compact buffers and the common order ----------------------------------------------------


def test_common_order_is_the_order_of_the_sorted_digests() -> None:
    # 30,000 IDs: about 120 digests end in a NUL byte, which numpy's fixed-width strings must not
    # treat as padding.
    ids = [f"id-{i}" for i in range(30_000)]
    for seed in (0, 7):
        prefix = seed.to_bytes(8, "big") + b"\x00"
        digests = [hashlib.sha256(prefix + i.encode()).digest() for i in ids]
        assert sum(d.endswith(b"\x00") for d in digests) > 50
        reference = sorted(range(len(ids)), key=digests.__getitem__)
        assert common_order(ids, seed).tolist() == reference
    assert common_order([], 3).tolist() == []


def test_blinding_into_one_buffer_matches_point_by_point() -> None:
    import pysodium

    key, salt = PsiKey.generate(), bytes(range(32))
    ids = [f"user {i}" for i in range(300)]
    hashed = hash_ids(ids, salt)
    expected = b"".join(
        pysodium.crypto_scalarmult_ristretto255(key._raw(), hashed[i : i + 32])
        for i in range(0, len(hashed), 32)
    )
    assert key.blind_ids(ids, salt) == expected
    assert key.blind_ids(np.array(ids, dtype=object), salt) == expected
    other = PsiKey.generate()
    double = other.blind_points(expected)
    assert double == b"".join(
        pysodium.crypto_scalarmult_ristretto255(other._raw(), expected[i : i + 32])
        for i in range(0, len(expected), 32)
    )


def test_a_bad_point_deep_in_the_peers_list_is_named_by_position() -> None:
    key = PsiKey.generate()
    points = bytearray(key.blind_ids([f"u{i}" for i in range(50)], bytes(32)))
    # A canonical encoding that is not a group element: check_points passes it, libsodium refuses.
    for candidate in range(2, 200, 2):
        encoding = candidate.to_bytes(32, "little")
        try:
            PsiKey.generate().blind_points(encoding)
        except InvalidPeerData:
            break
    points[41 * 32 : 42 * 32] = encoding
    with pytest.raises(InvalidPeerData, match="item 41 is not a canonical"):
        key.blind_points(bytes(points))


def test_the_pool_splits_ids_and_points_at_the_same_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_run_chunked`` slices a list and a byte buffer into the same items, in order."""
    seen: list[tuple[int, int]] = []

    def record(_raw: bytes, items: object, _salt: bytes, offset: int) -> bytes:
        n = len(items) // (32 if isinstance(items, bytes) else 1)  # type: ignore[arg-type]
        seen.append((offset, n))
        return bytes(n)

    class InlinePool:
        def __init__(self, *_: object) -> None: ...
        def __enter__(self) -> InlinePool:
            return self

        def __exit__(self, *_: object) -> None: ...
        def map(self, fn, *columns):
            return list(map(fn, *columns))

    monkeypatch.setattr(psi, "MIN_CHUNK_FOR_POOL", 10)
    monkeypatch.setattr(psi, "local_process_pool", InlinePool)
    out = psi._run_chunked(record, b"k", list(range(95)), 95, 1, b"", 3)
    assert seen == [(0, 32), (32, 32), (64, 31)] and len(out) == 95
    seen.clear()
    psi._run_chunked(record, b"k", bytes(95 * 32), 95, 32, b"", 3)
    assert seen == [(0, 32), (32, 32), (64, 31)]


def test_intersect_keeps_its_order_with_compact_arrays() -> None:
    key = PsiKey.generate()
    own = key.blind_ids([f"a{i}" for i in range(400)], bytes(32))
    peer = key.blind_ids([f"a{i}" for i in range(200, 700, 2)], bytes(32))
    own_index, peer_index = intersect(own, peer)
    assert sorted(own_index.tolist()) == list(range(200, 400, 2))
    assert [own[32 * i : 32 * i + 32] for i in own_index] == [
        peer[32 * j : 32 * j + 32] for j in peer_index
    ]


# ---- output written in chunks ---------------------------------------------------------------------


def _chunks(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.parquet"])
def test_output_written_in_chunks_equals_one_write(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(101)],
            "score": np.linspace(0, 1, 101),
            "model": np.array(["joint", "a_only"], dtype=object)[np.arange(101) % 2],
        }
    )
    path = tmp_path / name
    assert write_table_chunks_atomic(_chunks(frame, 10), path) == 101
    back = pq.read_table(path).to_pandas() if name.endswith("parquet") else pd.read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
    if name == "out.csv":
        assert path.read_text() == frame.to_csv(index=False)


def test_a_failure_in_a_later_chunk_leaves_nothing_half_written(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": range(50), "score": np.ones(50)})
    existing = tmp_path / "out.csv"
    existing.write_text("keep\n")

    def failing():
        yield from _chunks(frame, 10)
        raise DataError("row 51: broken")

    for path in (existing, tmp_path / "fresh.csv"):
        with pytest.raises(DataError, match="row 51"):
            write_table_chunks_atomic(failing(), path)
    assert existing.read_text() == "keep\n"
    assert not (tmp_path / "fresh.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


# ---- the lease while B blinds a large set ---------------------------------------------------------


def test_a_session_is_not_expired_while_b_blinds_its_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's lease counts A's silence: blinding 1M IDs can outlast it, and must not end the session."""
    import time

    from fedlearn.protocol import messages as m
    from party_b.node import NodeB
    from tests.protocol.harness import TEST_POLICY, fate_specs

    original = PsiKey.blind_ids

    def slow(self: PsiKey, *args: object, **kw: object) -> bytes:
        time.sleep(2.5)  # longer than the lease
        return original(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(PsiKey, "blind_ids", slow)
    role = NodeB(
        name="party-b",
        datasets={"d": fate_specs("breast")[1]},
        policy=TEST_POLICY,
        model_dir=tmp_path / "b",
        allowed_partners={"party-a"},
        session_ttl_s=1.0,
    )
    try:
        opened = role.open_session(
            m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="d", psi_salt=b"s" * 32),
            "party-a",
        )
        session = role._sessions[opened.session_id]
        time.sleep(1.6)
        assert session.working_in_background() and opened.session_id in role._sessions
        assert session.blinded_own is not None
        session.blinded_own.result()
        assert opened.session_id in role._sessions  # the lease starts again when B is done
        deadline = time.monotonic() + 10
        while opened.session_id in role._sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.session_id not in role._sessions  # and then A's silence ends it
    finally:
        role.close()


# ---- training's features ---------------------------------------------------------------------------


@pytest.mark.parametrize("binning", ["none", "quantile"])
def test_training_features_made_in_chunks_equal_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binning: str
) -> None:
    from fedlearn.preprocess import PreprocessParams
    from fedlearn.protocol import steps

    path = tmp_path / "t.csv"
    _frame(300, seed=4).to_csv(path, index=False)
    table = _load(path, 10_000)
    aligned = np.random.default_rng(1).permutation(300)[:250]
    train = np.arange(200)
    params = PreprocessParams(binning=binning)
    monkeypatch.setattr(steps, "FEATURE_CHUNK_ROWS", 1 << 30)
    _, whole = steps.fit_party_features(table, aligned, train, params, intercept=True)
    monkeypatch.setattr(steps, "FEATURE_CHUNK_ROWS", 16)
    _, chunked = steps.fit_party_features(table, aligned, train, params, intercept=True)
    assert chunked.x_q.dtype == np.int32 and chunked.x_q.shape == whole.x_q.shape
    assert np.array_equal(chunked.x_q, whole.x_q) and np.array_equal(chunked.scales, whole.scales)
    assert np.all(chunked.x_q[:, -1] == 1) and chunked.scales[-1] == 1.0  # the intercept
    rows = np.array([5, 0, 249])
    assert np.array_equal(chunked.x_rows(rows), chunked.x[rows])
