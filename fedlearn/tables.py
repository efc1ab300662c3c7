"""A node's cache of its own parsed data files, keyed by path, modification time and size."""

from __future__ import annotations

import logging
import threading

from fedlearn.config import DatasetSpec
from fedlearn.data import PartyTable, load_party_table, unicode_form_note
from fedlearn.errors import DataError

log = logging.getLogger(__name__)


class TableCache:
    """Parse each dataset file once; a changed file (new mtime or size) is parsed again.

    Keeps only the most recent table, so memory stays bounded by one data set.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, int, int, bool], PartyTable] = {}

    def get(self, spec: DatasetSpec, *, label_column: str | None = None) -> PartyTable:
        try:
            stat = spec.path.stat()
        except OSError as exc:
            raise DataError(
                f"{self.owner} dataset {spec.name}: cannot read {spec.path}: "
                f"{exc.strerror or exc} (check the path in the config)"
            ) from exc
        label = label_column or spec.label_column
        key = (f"{spec.path}:{label}", stat.st_mtime_ns, stat.st_size, label is not None)
        with self._lock:
            cached = self._tables.get(key)
        if cached is not None:
            return cached
        table = load_party_table(
            spec.path,
            id_column=spec.id_column,
            label_column=label,
            features=spec.features,
            categorical=spec.categorical,
            source=f"{self.owner} dataset {spec.name} ({spec.path})",
            require_label=label is not None,
        )
        note = unicode_form_note(table.ids, f"{self.owner} dataset {spec.name}")
        if note is not None:  # once per load of the file
            log.warning("%s", note)
        with self._lock:
            self._tables = {key: table}
        return table
