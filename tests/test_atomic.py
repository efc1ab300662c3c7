"""The one atomic-write helper: a target is the old version or the whole new one, never a part."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fedlearn.atomic import atomic_file, publish, staging_directory, write_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    write_atomic(target, "old")
    assert write_atomic(target, "new ünïcode") == target
    assert target.read_text(encoding="utf-8") == "new ünïcode"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_file(target) as temp:
        temp.write_text("half")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_mode_is_set_before_the_data_lands(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "key.pem", b"secret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target = write_atomic(tmp_path / "cert.pem", b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_temporary_file_is_in_the_target_folder(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "x.bin") as temp:
        assert temp.parent == tmp_path
        temp.write_bytes(b"1")
    assert (tmp_path / "x.bin").read_bytes() == b"1"


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "models" / "m1"
    with staging_directory(final) as staging:
        (staging / "model.json").write_text("{}")
        publish(staging, final)
    assert (final / "model.json").read_text() == "{}"
    other = tmp_path / "models" / "m2"
    with pytest.raises(ValueError, match="broken"), staging_directory(other) as staging:
        (staging / "model.json").write_text("{")
        raise ValueError("broken")
    assert not other.exists()
    assert _leftovers(final.parent) == []


def test_publish_refuses_to_replace_a_non_empty_folder(tmp_path: Path) -> None:
    final = tmp_path / "m"
    final.mkdir()
    (final / "model.json").write_text("kept")
    with staging_directory(final) as staging:
        (staging / "model.json").write_text("new")
        with pytest.raises(OSError):
            publish(staging, final)
    assert (final / "model.json").read_text() == "kept"
