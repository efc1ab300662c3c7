"""Writing files so that a reader sees the old version or the whole new one, never a part.

One way, used by every writer (certificates, data tables, scaffolded configs, the model store, the
report): write to a temporary name in the target's own folder (a rename is atomic only within one
file system), flush and fsync the data, rename it over the target, then fsync the folder so the
rename itself survives a crash. On any failure the temporary file is removed and the target is left
as it was; what a killed writer left is removed by the next write to the same target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from fedlearn.faults import pause_point


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def sweep_temp_files(path: Path | str) -> int:
    """Remove the ``.<name>.*.tmp`` files beside ``path`` that a write killed by SIGKILL left.

    ``atomic_file`` calls it before each write, so leftovers live only until the next write to
    the same target. One writer per target at a time (A's node runs one job at a time). Returns
    how many files were removed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    removed = 0
    for leftover in directory.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed += 1
    return removed


_UMASK_LOCK = threading.Lock()


def output_mode(path: Path | str) -> int:
    """The permissions a user's output file (scores, a scored table) gets from an atomic write: the
    mode of the file it replaces, else what ``open`` would give a new file (0666 less the umask).

    ``atomic_file`` alone creates 0600 (``mkstemp``), right for keys and checkpoints but not for a
    file a pipeline hands to others: the mode of a replaced file (a ``chmod`` the pipeline made) is
    kept, and a new file follows the process's umask like any other program's output.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    with _UMASK_LOCK:  # os.umask only reads by setting: set it back at once
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: Path | str, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path``.

    The block writes the temporary file (by name: pandas, pyarrow and friends take a path). ``mode``
    sets its permissions before anything is written (mkstemp creates 0600).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    sweep_temp_files(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    temp = Path(name)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        os.close(fd)
        yield temp
        pause_point("write", path.name)  # fault-injection tests only (fedlearn.faults)
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def write_atomic(path: Path | str, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; returns ``path``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, mode=mode) as temp:
        temp.write_bytes(raw)
    return Path(path)


@contextlib.contextmanager
def staging_directory(target: Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``target`` to build in; it is removed when the block ends.

    Move what was built into place with ``publish``; whatever is left behind is deleted.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(source: Path, target: Path) -> None:
    """Move a finished file or folder (from ``staging_directory``) to ``target``, durably.

    The data (every file directly in a folder) is fsynced first, then renamed; the target's folder
    is fsynced after. A folder cannot replace a non-empty folder: ``OSError`` then.
    """
    files = [p for p in source.iterdir() if p.is_file()] if source.is_dir() else [source]
    for file in files:
        _fsync_file(file)
    if source.is_dir():
        fsync_directory(source)
    os.replace(source, target)
    fsync_directory(target.parent)
