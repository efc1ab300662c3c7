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


def test_an_output_table_follows_the_umask_and_keeps_a_replaced_file_s_mode(tmp_path: Path) -> None:
    """Scores are handed on: a new file gets what ``open`` would give it (0666 less the umask),
    not mkstemp's 0600, and a file that is replaced keeps the mode the pipeline gave it."""
    import os

    import pandas as pd

    from fedlearn.data import write_table_atomic, write_table_chunks_atomic

    frame = pd.DataFrame({"id": ["a", "b"], "score": [0.1, 0.9]})
    old_umask = os.umask(0o022)
    try:
        write_table_atomic(frame, tmp_path / "scores.csv")
        write_table_chunks_atomic([frame], tmp_path / "scores.parquet")
        assert (tmp_path / "scores.csv").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "scores.parquet").stat().st_mode & 0o777 == 0o644
        (tmp_path / "scores.csv").chmod(0o640)
        write_table_atomic(frame, tmp_path / "scores.csv")
        assert (tmp_path / "scores.csv").stat().st_mode & 0o777 == 0o640
        os.umask(0o077)
        write_table_atomic(frame, tmp_path / "private.csv")
        assert (tmp_path / "private.csv").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)
