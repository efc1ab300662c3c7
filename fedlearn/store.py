"""A party's model directory: one folder per model id, written atomically, listed and loaded.

A model is saved by writing every file into a hidden temporary folder next to its final place and
renaming the folder into place (atomic on POSIX), so a crash never leaves a half-written model that
``list`` or ``load`` would see. Each party keeps only its own shard: A's weights, intercept,
preprocessing and metrics; B's weights and preprocessing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fedlearn.atomic import publish, staging_directory
from fedlearn.errors import AlreadyExists, InvalidPeerData, NotFound

MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHARD_FILE = "model.json"


def new_model_id(dataset: str) -> str:
    """``<dataset>-<UTC yyyymmdd-hhmmss>-<4 hex>``, e.g. ``vip-20261129-181502-9f3a``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", dataset)[:60] or "model"
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.match(model_id):
        raise InvalidPeerData(
            f"model id {model_id!r} is not valid (letters, digits, '.', '_', '-'; at most 100)"
        )
    return model_id


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, model_id: str) -> Path:
        return self.root / check_model_id(model_id)

    def exists(self, model_id: str) -> bool:
        return (self.path(model_id) / SHARD_FILE).is_file()

    def save(self, model_id: str, shard: dict[str, Any]) -> Path:
        """Write ``shard`` as model.json under ``model_id``; AlreadyExists if the id is taken."""
        final = self.path(model_id)
        if final.exists():
            raise AlreadyExists(
                f"model {model_id} already exists in {self.root}",
                public=f"model id {model_id} is taken; choose another",
            )
        with staging_directory(final) as staging:
            text = json.dumps(shard, indent=1, sort_keys=True, allow_nan=True)
            (staging / SHARD_FILE).write_text(text, encoding="utf-8")
            publish(staging, final)
        return final

    def load(self, model_id: str) -> dict[str, Any]:
        target = self.path(model_id) / SHARD_FILE
        if not target.is_file():
            known = ", ".join(self.list_ids()[-5:]) or "none yet"
            # The partner sees neither the folder nor the other models (they may be other partners').
            raise NotFound(
                f"no model {model_id!r} in {self.root} (latest: {known})",
                public=f"no model {model_id!r} here",
            )
        with open(target, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return data

    def delete(self, model_id: str) -> bool:
        final = self.path(model_id)
        if not final.exists():
            return False
        trash = self.root / f".trash-{model_id}-{secrets.token_hex(4)}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if not entry.name.startswith(".") and (entry / SHARD_FILE).is_file()
        )
