"""Ciphertexts a party holds for a session, one fixed-width record per training row, in bounded memory.

B keeps the last ``[[beta]]_A`` A sent for each training row, and both parties the curvature
correction of the row's last refresh (B ``[[gamma w]]_A``, A ``[[gamma w]]_B``), so that later
epochs reuse them (docs/protocol.md section 2). At 2048-bit keys a ciphertext is 512 bytes: 5 GB per
kind for 10 million rows, far more than the features a party trains on. Records therefore live in memory only while the whole set
is small (``MEMORY_LIMIT_BYTES``); beyond that they go to an anonymous temporary file (unlinked at
creation, so the space is returned when the session closes or the process dies, and nothing is
left to sweep), read and written with ``pread``/``pwrite`` so that they never count in the node's
resident memory: a batch reads only its own rows.

The bytes stored are the ones the peer sent, after ``keyed_ciphertexts_from_bytes`` checked them, or
ones the party computed from such; they are parsed again on reuse without the checks (the party
wrote them itself).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedlearn.crypto.wire import stored_ciphertexts

#: Hold records in memory up to this many bytes in all (128k rows at 2048-bit keys), else in a file.
MEMORY_LIMIT_BYTES = 64 << 20


class HeldCiphertexts:
    """One optional fixed-width record per row ``0 .. rows - 1``.

    Args:
        rows: how many rows may hold a record (B's aligned rows).
        width: bytes per record (``crypto.wire.ciphertext_width``).
        memory_limit: records in memory while ``rows * width`` is at most this (default
            ``MEMORY_LIMIT_BYTES``), else in a file.
        directory: where the file is created (the system's temporary folder by default).
    """

    def __init__(
        self,
        rows: int,
        width: int,
        *,
        memory_limit: int | None = None,
        directory: str | None = None,
    ) -> None:
        if rows < 0 or width <= 0:
            raise ValueError(f"need rows >= 0 and width > 0, got {rows} and {width}")
        self.rows, self.width = rows, width
        self.present = np.zeros(rows, dtype=bool)
        self._memory: np.ndarray | None = None
        self._file = None
        limit = MEMORY_LIMIT_BYTES if memory_limit is None else memory_limit
        if rows * width <= limit:
            self._memory = np.zeros((rows, width), dtype=np.uint8)
        else:
            # closed in close(): the file lives as long as the session
            self._file = tempfile.TemporaryFile(prefix="fedlearn-held-", dir=directory)  # noqa: SIM115

    @property
    def in_file(self) -> bool:
        return self._file is not None

    def missing(self, rows: np.ndarray) -> int:
        """How many of ``rows`` hold no record."""
        return int(np.count_nonzero(~self.present[rows]))

    def put(self, rows: np.ndarray, data: bytes) -> None:
        """Store ``data`` (``len(rows)`` records, in the order of ``rows``), replacing older ones."""
        width = self.width
        if len(data) != len(rows) * width:
            raise ValueError(f"{len(data)} bytes for {len(rows)} records of {width}")
        if self._memory is not None:
            self._memory[rows] = np.frombuffer(data, dtype=np.uint8).reshape(len(rows), width)
        else:
            fd = self._fileno()
            view = memoryview(data)
            for index, row in enumerate(rows.tolist()):
                os.pwrite(fd, view[index * width : (index + 1) * width], row * width)
        self.present[rows] = True

    def take(self, rows: np.ndarray) -> list[Any]:
        """The records of ``rows`` as integers (big-endian), in the order of ``rows``.

        Raises:
            KeyError: one of ``rows`` holds no record (check ``missing`` first).
        """
        if self.missing(rows):
            raise KeyError("a row holds no record")
        width = self.width
        if self._memory is not None:
            records: Sequence[bytes] = [bytes(record) for record in self._memory[rows]]
        else:
            fd = self._fileno()
            records = [os.pread(fd, width, row * width) for row in rows.tolist()]
        return stored_ciphertexts(records)

    def _fileno(self) -> int:
        assert self._file is not None
        return self._file.fileno()

    def close(self) -> None:
        """Free the records (the file's space is returned at once)."""
        self._memory = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self.present = np.zeros(0, dtype=bool)
