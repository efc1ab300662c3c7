"""Model shards with integrity: checksums, damaged models listed with a reason, ids checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedlearn.errors import ConfigError, DamagedModel, InvalidPeerData, NotFound
from fedlearn.store import FORMAT_VERSION, SHARD_FILE, ModelStore, check_model_id
from fedlearn.transport import exit_code_for

SHARD = {"model_id": "m-1", "weights": [0.25, -1.5, float("nan")], "partner": "party-b"}


def _saved(tmp_path: Path, model_id: str = "m-1") -> tuple[ModelStore, Path]:
    store = ModelStore(tmp_path / "models")
    return store, store.save(model_id, {**SHARD, "model_id": model_id}) / SHARD_FILE


def test_a_saved_shard_carries_version_and_checksum_and_loads_back(tmp_path: Path) -> None:
    store, path = _saved(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["format_version"] == FORMAT_VERSION and len(raw["sha256"]) == 64
    loaded = store.load("m-1")
    assert "sha256" not in loaded and loaded["weights"][:2] == [0.25, -1.5]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:40]), "not complete JSON"),
        (lambda p: p.write_bytes(b""), "model.json is empty"),
        (lambda p: p.unlink(), "model.json is missing"),
        (
            lambda p: p.write_text(p.read_text().replace("0.25", "0.35")),
            "does not match its checksum",
        ),
        (
            lambda p: p.write_text(
                p.read_text().replace('"format_version": 1', '"format_version": 9')
            ),
            "newer than this fedlearn reads",
        ),
        (lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    ],
)
def test_a_damaged_shard_is_refused_and_listed_with_its_reason(
    tmp_path: Path, damage: object, reason: str
) -> None:
    store, path = _saved(tmp_path)
    _saved(tmp_path, "m-2")
    damage(path)  # type: ignore[operator]
    with pytest.raises(DamagedModel, match=reason) as caught:
        store.load("m-1")
    assert "delete the model and train again" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
    assert exit_code_for(caught.value) == 3
    entries = {entry.model_id: entry for entry in store.entries()}
    assert set(entries) == {"m-1", "m-2"}
    assert entries["m-1"].shard is None and reason in (entries["m-1"].problem or "")
    assert entries["m-2"].shard is not None and entries["m-2"].problem is None


def test_a_shard_from_before_checksums_is_still_read(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "old-1").mkdir()
    (tmp_path / "old-1" / SHARD_FILE).write_text(json.dumps(SHARD))
    assert store.load("old-1")["partner"] == "party-b"


def test_not_found_names_no_path_and_no_other_model(tmp_path: Path) -> None:
    store, _ = _saved(tmp_path, "secret-model-7")
    with pytest.raises(NotFound) as caught:
        store.load("other-1")
    message = caught.value.public or ""  # what crosses to the partner
    assert message == "no model 'other-1' here"
    assert "secret-model-7" not in message and str(tmp_path) not in message
    assert "secret-model-7" in str(caught.value)  # the node's own log keeps the detail


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "..", ".hidden", "", "x" * 101, "a b", "m\x00", "é", "m-1\n"]
)
def test_bad_model_ids_are_refused_before_any_file_access(tmp_path: Path, bad: str) -> None:
    store = ModelStore(tmp_path / "does-not-exist")
    with pytest.raises(InvalidPeerData, match="is not valid"):
        store.load(bad)
    with pytest.raises(ConfigError, match="is not valid"):
        ModelStore(tmp_path, bad_id_error=ConfigError).load(bad)
    assert not (tmp_path / "does-not-exist").exists()


def test_a_huge_model_id_is_not_echoed() -> None:
    with pytest.raises(InvalidPeerData) as caught:
        check_model_id("A" * (1 << 20))
    assert len(str(caught.value)) < 300 and "1048576 characters" in str(caught.value)


def test_sweep_removes_what_a_killed_save_or_delete_left(tmp_path: Path) -> None:
    store, _ = _saved(tmp_path)
    (store.root / ".m-2.tmp-abc").mkdir()
    (store.root / ".m-2.tmp-abc" / SHARD_FILE).write_text("{")
    (store.root / ".trash-m-3-0000").mkdir()
    assert store.sweep() == 2
    assert sorted(p.name for p in store.root.iterdir()) == ["m-1"]
    assert store.load("m-1")["partner"] == "party-b"


def test_the_latest_models_named_when_one_is_missing_are_the_newest(tmp_path: Path) -> None:
    """Not the last in alphabetical order: a dataset named "a..." made today came first before."""
    store = ModelStore(tmp_path)
    for model_id in (
        "zeta-20261201-090000-aaaa",
        "gz-20261203-112423-bbbb",
        "phones-20261203-112008-cccc",
        "alpha-20261203-120000-dddd",
    ):
        store.save(model_id, {"weights": []})
    assert store.newest_ids(3) == [
        "alpha-20261203-120000-dddd",
        "gz-20261203-112423-bbbb",
        "phones-20261203-112008-cccc",
    ]
    with pytest.raises(NotFound, match=r"latest: alpha-20261203-120000-dddd, gz-"):
        store.load("nosuch")
