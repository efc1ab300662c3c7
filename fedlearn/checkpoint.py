"""Training checkpoints: each party's own plaintext state after every epoch, so a killed job resumes.

Each node writes, after every complete epoch, one file per epoch into a folder per job:
``<root>/<key>/epoch-<k>.json`` (``k`` = epochs completed, 6 digits). A checkpoint holds only that
party's plaintext state (weights, epoch-averaged weights, optimizer state with the step count that
drives the learning-rate schedule, the epochs done, at A the loss history and early-stopping
state), the job's parameters, the partner and a fingerprint of the aligned data. Never a key and
never a ciphertext: a resumed session makes fresh keys and runs PSI again (docs/threat-model.md).

Files are written atomically (``fedlearn.atomic``) and carry ``format_version`` and ``sha256`` (the
SHA-256 of the canonical JSON without the ``sha256`` key), like model shards; ``load`` refuses a
cut-off, altered or newer-format file with ``DamagedCheckpoint``, and ``epochs`` lists only files
that verify. Floats are written by ``json`` with ``repr`` precision, so weights and optimizer
moments come back bit for bit.

Retention: the last ``KEEP_EPOCHS`` epochs per job (the partner may be one epoch behind when a node
is killed at an epoch's end), folders of at most ``MAX_JOBS`` jobs (those without an epoch removed
first, then the oldest) and
none older than ``MAX_AGE_S``; ``sweep`` (at node start) applies the bounds and removes temporary
files a killed writer left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedlearn.atomic import write_atomic
from fedlearn.errors import DataError
from fedlearn.model import Optimizer

log = logging.getLogger(__name__)

#: The checkpoint layout this code writes; a file with a larger number is refused.
FORMAT_VERSION = 1
#: Epochs kept per job: the peer may hold one epoch more or less than this party at a kill.
KEEP_EPOCHS = 2
#: Job folders kept per node (oldest removed first) and their maximum age.
MAX_JOBS = 16
MAX_AGE_S = 7 * 24 * 3600.0
#: A job id as it may name a folder: what A's job ids look like, and nothing with a path part.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: The most epochs a resume request may list (each party keeps ``KEEP_EPOCHS``).
MAX_RESUME_EPOCHS = 16
_EPOCH_FILE = re.compile(r"^epoch-([0-9]{6})\.json$")


class DamagedCheckpoint(DataError):
    """A checkpoint file is cut off, altered or from a newer format (the reason names no path)."""


def check_job_id(job_id: object) -> str:
    """``job_id`` when it can name a checkpoint folder; ``DataError`` otherwise (shown cut)."""
    if isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id):
        return job_id
    shown = repr(job_id[:40]) if isinstance(job_id, str) else type(job_id).__name__
    raise DataError(
        f"job id {shown} is not valid: letters, digits, '.', '_', '-', at most 100 characters"
    )


def partner_job_key(partner: str, job_id: str) -> str:
    """B's folder name for a partner's job: a hash, so neither name ever becomes a path."""
    digest = hashlib.sha256(f"{partner}\0{check_job_id(job_id)}".encode()).hexdigest()
    return digest[:32]


def data_fingerprint(
    ids: np.ndarray, features: pd.DataFrame, labels: np.ndarray | None = None
) -> str:
    """SHA-256 of the aligned rows as this party sees them: IDs in the common order, their feature
    values (and labels at A). A resume refuses a checkpoint whose fingerprint differs: the data
    changed, so the same epochs would not give the same model."""
    digest = hashlib.sha256()
    for value in ids:
        digest.update(str(value).encode("utf-8") + b"\0")
    digest.update(b"|" + ",".join(map(str, features.columns)).encode("utf-8") + b"|")
    digest.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    if labels is not None:
        digest.update(np.asarray(labels, dtype=np.float64).tobytes())
    return digest.hexdigest()


def optimizer_state(optimizer: Optimizer) -> dict[str, Any]:
    """What an ``Optimizer`` needs to continue exactly: its step count (the learning-rate schedule)
    and its moments (Adam's first and second, momentum's first), and the epoch's running average."""
    return {
        "name": optimizer.name,
        "steps": optimizer.steps,
        "first": _floats(optimizer._first),
        "second": _floats(optimizer._second),
        "sum": _floats(optimizer._sum),
        "count": optimizer._count,
    }


def restore_optimizer(optimizer: Optimizer, state: dict[str, Any]) -> None:
    """Put ``optimizer_state``'s values back into a freshly built optimizer of the same job.

    Raises ``DamagedCheckpoint`` when the state does not fit (another optimizer or column count).
    """
    size = len(optimizer.penalty_mask)
    if state.get("name") != optimizer.name or any(
        len(state.get(key, ())) != size for key in ("first", "second", "sum")
    ):
        raise DamagedCheckpoint("the checkpoint's optimizer state does not fit this job")
    optimizer.steps = int(state["steps"])
    optimizer._first = np.asarray(state["first"], dtype=np.float64)
    optimizer._second = np.asarray(state["second"], dtype=np.float64)
    optimizer._sum = np.asarray(state["sum"], dtype=np.float64)
    optimizer._count = int(state["count"])


def floats(values: np.ndarray) -> list[float]:
    """A float64 vector as JSON numbers (``repr`` precision: read back bit for bit)."""
    return _floats(values)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64)]


def _canonical_sha256(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CheckpointStore:
    """One party's checkpoints under ``root``: a folder per job key, a file per epoch."""

    def __init__(self, root: Path, *, keep: int = KEEP_EPOCHS, max_jobs: int = MAX_JOBS) -> None:
        self.root = Path(root)
        self.keep = keep
        self.max_jobs = max_jobs

    def folder(self, key: str) -> Path:
        return self.root / check_job_id(key)

    def save(self, key: str, epoch: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint after ``epoch`` completed epochs; keep the last ``keep`` epochs."""
        folder = self.folder(key)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            self._bound_jobs(exclude=key)
        content = {k: v for k, v in state.items() if k != "sha256"}
        content.update(format_version=FORMAT_VERSION, epoch=int(epoch), saved_at=time.time())
        content["sha256"] = _canonical_sha256(content)
        path = write_atomic(folder / f"epoch-{epoch:06d}.json", json.dumps(content, allow_nan=True))
        self.prune(key, self.keep)
        return path

    def epochs(self, key: str) -> list[int]:
        """The epochs of ``key`` whose checkpoint verifies, ascending (damaged ones are skipped)."""
        held = []
        for epoch, _ in self._epoch_files(key):
            try:
                self.load(key, epoch)
            except DamagedCheckpoint as exc:
                log.warning("checkpoint %s epoch %d skipped: %s", key, epoch, exc)
                continue
            held.append(epoch)
        return held

    def load(self, key: str, epoch: int) -> dict[str, Any]:
        """The verified checkpoint (without ``sha256``); ``DamagedCheckpoint`` with the reason."""
        path = self.folder(key) / f"epoch-{int(epoch):06d}.json"
        try:
            raw = path.read_bytes()
        except OSError:
            raise DamagedCheckpoint(f"no checkpoint of epoch {epoch}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DamagedCheckpoint(f"the checkpoint of epoch {epoch} is cut off") from None
        if not isinstance(data, dict):
            raise DamagedCheckpoint(f"the checkpoint of epoch {epoch} is not a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise DamagedCheckpoint(
                f"the checkpoint of epoch {epoch} has format {str(version)[:20]!r}; this fedlearn "
                f"reads format {FORMAT_VERSION}"
            )
        recorded = data.pop("sha256", None)
        if recorded != _canonical_sha256(data) or data.get("epoch") != epoch:
            raise DamagedCheckpoint(f"the checkpoint of epoch {epoch} does not match its checksum")
        return data

    def write_file(self, key: str, name: str, text: str) -> Path:
        """A side file of the job (A's job file), written atomically."""
        folder = self.folder(key)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            self._bound_jobs(exclude=key)
        return write_atomic(folder / name, text)

    def read_file(self, key: str, name: str) -> str | None:
        try:
            return (self.folder(key) / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def prune(self, key: str, keep: int) -> None:
        """Keep only the last ``keep`` epochs of ``key`` (0: none; side files stay)."""
        files = self._epoch_files(key)
        for old in files[: max(0, len(files) - keep)]:
            old[1].unlink(missing_ok=True)

    def remove(self, key: str) -> None:
        shutil.rmtree(self.folder(key), ignore_errors=True)

    def sweep(self) -> int:
        """At node start: remove temporary files of killed writers, folders older than
        ``MAX_AGE_S`` and all but the newest ``max_jobs`` folders. Returns the files removed."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for leftover in self.root.glob("*/.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        cutoff = time.time() - MAX_AGE_S
        for folder in self._folders():
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        removed += self._bound_jobs(exclude="")
        if removed:
            log.info(
                "checkpoints: removed %d leftover or expired entries in %s", removed, self.root
            )
        return removed

    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and JOB_ID_PATTERN.fullmatch(p.name)]

    def _bound_jobs(self, *, exclude: str) -> int:
        # Folders with no epoch file go first (a job that failed before its first epoch: at A,
        # only its job file), then the oldest: a string of jobs refused at the start (bad data,
        # the partner down) never pushes out an interrupted job's epochs.
        folders = sorted(
            (p for p in self._folders() if p.name != exclude),
            key=lambda p: (any(_EPOCH_FILE.match(f.name) for f in p.iterdir()), p.stat().st_mtime),
        )
        excess = folders[: max(0, len(folders) - (self.max_jobs - (1 if exclude else 0)))]
        for folder in excess:
            shutil.rmtree(folder, ignore_errors=True)
        return len(excess)

    def _epoch_files(self, key: str) -> list[tuple[int, Path]]:
        folder = self.folder(key)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _EPOCH_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)


def latest_common_epoch(own: list[int] | tuple[int, ...], peer: list[int] | tuple[int, ...]) -> int:
    """The latest epoch both parties hold a checkpoint of (0: none, start from the beginning)."""
    return max(set(own) & set(peer), default=0)
