"""B's held ciphertexts: the same records in memory and in a file, and nothing left on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import pytest

from fedlearn.protocol.held import HeldCiphertexts

WIDTH = 64


def _records(count: int) -> list[int]:
    return [secrets.randbits(WIDTH * 8 - 1) | 1 for _ in range(count)]


def _blob(values: list[int]) -> bytes:
    return b"".join(value.to_bytes(WIDTH, "big") for value in values)


@pytest.mark.parametrize("memory_limit", [1 << 20, 0], ids=["memory", "file"])
def test_records_come_back_in_the_order_asked(tmp_path: Path, memory_limit: int) -> None:
    held = HeldCiphertexts(1000, WIDTH, memory_limit=memory_limit, directory=str(tmp_path))
    assert held.in_file == (memory_limit == 0)
    first_rows = np.random.default_rng(1).permutation(1000)[:300]
    first = _records(300)
    held.put(first_rows, _blob(first))
    assert held.missing(first_rows) == 0
    assert held.missing(np.arange(1000)) == 700
    order = np.random.default_rng(2).permutation(300)
    assert [int(v) for v in held.take(first_rows[order])] == [first[i] for i in order]
    # a fresh record replaces the held one; the others stay
    replaced = _records(10)
    held.put(first_rows[:10], _blob(replaced))
    assert [int(v) for v in held.take(first_rows[:12])] == replaced + first[10:12]
    with pytest.raises(KeyError):
        held.take(np.array([int(np.setdiff1d(np.arange(1000), first_rows)[0])]))
    held.close()


def test_the_file_is_anonymous_and_its_space_returned_at_close(tmp_path: Path) -> None:
    """Nothing to sweep after a crash: the file has no name from the start."""
    held = HeldCiphertexts(5000, WIDTH, memory_limit=0, directory=str(tmp_path))
    rows = np.arange(5000)
    held.put(rows, _blob(_records(5000)))
    assert os.listdir(tmp_path) == []
    assert held.missing(rows) == 0
    held.close()
    assert not held.in_file


def test_a_wrong_length_is_refused() -> None:
    held = HeldCiphertexts(10, WIDTH)
    with pytest.raises(ValueError, match="bytes for 2 records"):
        held.put(np.array([1, 2]), b"\x00" * WIDTH)
