"""A party's model directory: one folder per model id, written atomically, checked, listed and loaded.

A model is saved by writing every file into a hidden temporary folder next to its final place and
renaming the folder into place (atomic on POSIX), so a crash never leaves a half-written model that
``list`` or ``load`` would see. Each party keeps only its own shard: A's weights, intercept,
preprocessing and metrics; B's weights and preprocessing.

Each shard (``model.json``) carries ``format_version`` and ``sha256``, the SHA-256 of the shard's
canonical JSON (sorted keys, no spaces) without the ``sha256`` key. ``load`` refuses a shard that is
missing, cut off, altered or from a newer format with ``DamagedModel``, naming the reason;
``entries`` lists damaged models with their reason instead of hiding them. Shards written before
checksums existed (no ``format_version``) are read unverified.

Model ids are checked (``MODEL_ID_PATTERN``: no path parts, at most 100 characters) before any file
is touched; a refused id is never echoed in full. ``NotFound``'s ``public`` message (what crosses to
the partner) names the id only: no folder, no other model ids; the full one goes to the node's log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fedlearn.atomic import publish, staging_directory
from fedlearn.errors import AlreadyExists, DamagedModel, FedlearnError, InvalidPeerData, NotFound
from fedlearn.faults import pause_point

log = logging.getLogger(__name__)

MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHARD_FILE = "model.json"
#: The shard layout this code writes; a shard with a larger number is refused, not guessed at.
FORMAT_VERSION = 1
#: Staging (``.<id>.tmp-*``, from ``atomic.staging_directory``) and trash (``.trash-*``) folders
#: left by a process killed mid-save or mid-delete (swept at start).
_LEFTOVER = re.compile(r"^\.(trash-|[A-Za-z0-9][A-Za-z0-9._-]*\.tmp-)")


#: The creation time in an id ``new_model_id`` made.
_ID_STAMP = re.compile(r"-(\d{8}-\d{6})-[0-9a-f]{4}$")


def new_model_id(dataset: str) -> str:
    """``<dataset>-<UTC yyyymmdd-hhmmss>-<4 hex>``, e.g. ``vip-20261129-181502-9f3a``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", dataset)[:60] or "model"
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def check_model_id(model_id: object, error: type[FedlearnError] = InvalidPeerData) -> str:
    """``model_id`` if it is a valid id; else ``error`` (InvalidPeerData for a peer's request,
    ConfigError for an operator's). The message shows at most 40 characters of a bad id."""
    if isinstance(model_id, str) and MODEL_ID_PATTERN.fullmatch(model_id):
        return model_id
    if isinstance(model_id, str):
        shown = repr(model_id[:40]) + (
            f" ({len(model_id)} characters)" if len(model_id) > 40 else ""
        )
    else:
        shown = f"of type {type(model_id).__name__}"
    raise error(
        f"model id {shown} is not valid: use letters, digits, '.', '_', '-' "
        "(starting with a letter or digit), at most 100 characters"
    )


def canonical_sha256(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``content`` as canonical JSON: sorted keys, no spaces, NaN allowed."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_shard(raw: bytes) -> dict[str, Any]:
    """Parse and check one ``model.json``; returns the shard without ``sha256``.

    Raises ``DamagedModel`` (the reason, no path) for an empty or cut-off file, a file that is not
    a JSON object, a checksum mismatch, or a format newer than ``FORMAT_VERSION``.
    """
    if not raw.strip():
        raise DamagedModel("model.json is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DamagedModel("model.json is not complete JSON (cut off or overwritten)") from None
    if not isinstance(data, dict):
        raise DamagedModel("model.json does not hold a model (not a JSON object)")
    version = data.get("format_version")
    if version is None:
        return data  # written before shards had checksums: nothing to verify against
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DamagedModel(f"model.json has an invalid format_version {str(version)[:20]!r}")
    if version > FORMAT_VERSION:
        raise DamagedModel(
            f"model.json has format {version}, newer than this fedlearn reads ({FORMAT_VERSION}); "
            "upgrade fedlearn"
        )
    recorded = data.pop("sha256", None)
    if not isinstance(recorded, str):
        raise DamagedModel("model.json has no checksum (sha256)")
    if canonical_sha256(data) != recorded:
        raise DamagedModel("model.json does not match its checksum (changed or corrupted)")
    return data


def _damaged(model_id: str, reason: str) -> DamagedModel:
    """The error for a damaged shard; its reason names no path, so it may cross to the partner."""
    message = f"model {model_id} is damaged: {reason}; delete the model and train again"
    return DamagedModel(message, public=message)


@dataclass(frozen=True)
class ModelEntry:
    """One folder of the store: its shard when it is sound, else why it is damaged."""

    model_id: str
    shard: dict[str, Any] | None
    problem: str | None


class ModelStore:
    """The models of one party, under ``root``.

    ``bad_id_error`` is raised for an invalid model id: ``InvalidPeerData`` (the default) where
    the id comes from the partner, ``ConfigError`` where it comes from this party's operator.
    """

    def __init__(self, root: Path, *, bad_id_error: type[FedlearnError] = InvalidPeerData) -> None:
        self.root = Path(root)
        self.bad_id_error = bad_id_error

    def path(self, model_id: str) -> Path:
        return self.root / check_model_id(model_id, self.bad_id_error)

    def exists(self, model_id: str) -> bool:
        return (self.path(model_id) / SHARD_FILE).is_file()

    def save(self, model_id: str, shard: dict[str, Any]) -> Path:
        """Write ``shard`` (with format version and checksum) as model.json under ``model_id``.

        Raises AlreadyExists if the id is taken.
        """
        final = self.path(model_id)
        if final.exists():
            raise AlreadyExists(
                f"model {model_id} already exists in {self.root}",
                public=f"model id {model_id} is taken; choose another",
            )
        content = {key: value for key, value in shard.items() if key != "sha256"}
        content["format_version"] = FORMAT_VERSION
        content["sha256"] = canonical_sha256(content)
        with staging_directory(final) as staging:
            text = json.dumps(content, indent=1, sort_keys=True, allow_nan=True)
            (staging / SHARD_FILE).write_text(text, encoding="utf-8")
            pause_point("commit")  # fault-injection tests only (fedlearn.faults)
            publish(staging, final)
        return final

    def load(self, model_id: str) -> dict[str, Any]:
        """The verified shard. NotFound if there is no such model; DamagedModel with the reason."""
        folder = self.path(model_id)
        target = folder / SHARD_FILE
        if not folder.is_dir():
            known = ", ".join(self.newest_ids(5)) or "none yet"
            # The partner sees neither the folder nor the other models (they may be other partners').
            raise NotFound(
                f"no model {model_id!r} in {self.root} (latest: {known})",
                public=f"no model {model_id!r} here",
            )
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            raise _damaged(model_id, "model.json is missing (partly deleted?)") from None
        except OSError as exc:
            raise _damaged(model_id, f"model.json cannot be read ({exc.strerror})") from None
        try:
            return verify_shard(raw)
        except DamagedModel as exc:
            raise _damaged(model_id, str(exc)) from None

    def delete(self, model_id: str) -> bool:
        final = self.path(model_id)
        if not final.exists():
            return False
        trash = self.root / f".trash-{model_id}-{secrets.token_hex(4)}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def list_ids(self) -> list[str]:
        """Ids of every model folder, sound or damaged, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and MODEL_ID_PATTERN.fullmatch(entry.name)
        )

    def newest_ids(self, count: int) -> list[str]:
        """The ``count`` most recently created models' ids, newest first: by the time in the id
        (``new_model_id``), else the folder's modification time."""

        def created(model_id: str) -> str:
            stamp = _ID_STAMP.search(model_id)
            if stamp is not None:
                return stamp.group(1)
            try:
                when = (self.root / model_id).stat().st_mtime
            except OSError:
                return ""
            return datetime.fromtimestamp(when, timezone.utc).strftime("%Y%m%d-%H%M%S")

        return sorted(self.list_ids(), key=created, reverse=True)[:count]

    def entries(self) -> list[ModelEntry]:
        """Every model folder with its shard, or with the reason it cannot be used."""
        found = []
        for model_id in self.list_ids():
            try:
                found.append(ModelEntry(model_id, self.load(model_id), None))
            except (DamagedModel, NotFound) as exc:
                found.append(ModelEntry(model_id, None, str(exc)))
        return found

    def sweep(self) -> int:
        """Remove staging and trash folders left by a killed process; returns how many.

        Call at node start, before any save (a running save's staging folder would be removed).
        """
        if not self.root.is_dir():
            return 0
        removed = 0
        for entry in self.root.iterdir():
            if _LEFTOVER.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d unfinished model folder(s) from %s", removed, self.root)
        return removed
