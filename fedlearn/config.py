"""Reading TOML config and job files into typed, checked settings.

A config error names the file, the key and what was expected, e.g.
``a.toml: [peer] address: expected a string like "127.0.0.1:50052", got 50052``. Relative paths in a file
are taken relative to that file's folder. Unknown keys are errors too (a typo must not be ignored).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedlearn.constraints import Constraint, Interval, Options
from fedlearn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def load_toml(path: Path | str) -> tuple[dict[str, Any], Path]:
    """Parse a TOML file; returns (data, resolved path). ConfigError if missing or malformed."""
    path = Path(path).expanduser().resolve()
    return parse_toml(read_text_file(path), path), path


def read_text_file(path: Path | str) -> str:
    """A config or job file's text. ConfigError if it is missing, unreadable or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


class Section:
    """Typed access to one TOML table, with errors that name file, table and key."""

    def __init__(self, data: Mapping[str, Any], source: Path, name: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source.name}: [{name}] must be a table")
        self.data = data
        self.source = source
        self.name = name
        self._read: set[str] = set()

    def where(self, key: str) -> str:
        if not self.name:
            return f"{self.source.name}: {key}"
        return f"{self.source.name}: [{self.name}] {key}"

    def _get(self, key: str, default: Any, required: bool) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if required:
            raise ConfigError(f"{self.where(key)}: missing (required)")
        return default

    def get_str(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.where(key)}: expected a string, got {value!r}")
        return value

    def get_name_value(
        self, key: str, default: str | None = None, *, required: bool = False
    ) -> Any:
        value = self.get_str(key, default, required=required)
        if value is not None and not NAME_PATTERN.match(value):
            raise ConfigError(
                f"{self.where(key)}: {value!r} is not a valid name "
                "(letters, digits, '.', '_', '-'; at most 100 characters)"
            )
        return value

    def get_constrained(
        self, key: str, constraint: Constraint, default: Any = None, *, required: bool = False
    ) -> Any:
        """The value of ``key`` checked against ``constraint`` (a parameter table's entry).

        Returns None when the key is absent and ``default`` is None; ConfigError names the key.
        """
        value = self._get(key, default, required)
        if value is None:
            return None
        issue = constraint.problem(value)
        if issue is not None:
            raise ConfigError(f"{self.where(key)}: {issue}")
        return constraint.convert(value)

    def get_int(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = False,
    ) -> Any:
        return self.get_constrained(
            key, Interval(int, minimum, maximum), default, required=required
        )

    def get_float(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        required: bool = False,
    ) -> Any:
        interval = Interval(float, minimum, maximum)
        return self.get_constrained(key, interval, default, required=required)

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where(key)}: expected true or false, got {value!r}")
        return value

    def get_choice(self, key: str, choices: tuple[str, ...], default: str) -> Any:
        return self.get_constrained(key, Options(tuple(choices)), default)

    def get_str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self._get(key, default if default is not None else [], False)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{self.where(key)}: expected a list of strings, got {value!r}")
        return list(value)

    def get_path(
        self,
        key: str,
        default: str | None = None,
        *,
        required: bool = False,
        must_exist: bool = False,
    ) -> Path | None:
        value = self.get_str(key, default, required=required)
        if value is None:
            return None
        resolved = (self.source.parent / Path(value).expanduser()).resolve()
        if must_exist and not resolved.exists():
            raise ConfigError(f"{self.where(key)}: {value} does not exist (looked at {resolved})")
        return resolved

    def get_table(self, key: str, *, required: bool = False) -> Section:
        full = f"{self.name}.{key}" if self.name else key
        if required and key not in self.data:
            raise ConfigError(f"{self.source.name}: the [{full}] table is missing (required)")
        value = self._get(key, {}, False)
        return Section(value, self.source, full)

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "(none)"
            table = f"[{self.name}] " if self.name else ""
            raise ConfigError(
                f"{self.source.name}: {table}unknown key(s) {', '.join(unknown)}; known keys: {known}"
            )


def root_section(data: Mapping[str, Any], source: Path) -> Section:
    return Section(data, source, "")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset a party exposes: its file and which columns mean what."""

    name: str
    path: Path
    id_column: str
    label_column: str | None
    features: list[str] | None  # None: every column except the id and the label
    categorical: list[str]


def read_datasets(root: Section, *, label_allowed: bool) -> dict[str, DatasetSpec]:
    """The ``[[datasets]]`` array of a node config."""
    raw = root._get("datasets", [], False)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"{root.source.name}: expected at least one [[datasets]] table "
            "(name, path, id_column, features, categorical)"
        )
    specs: dict[str, DatasetSpec] = {}
    for index, entry in enumerate(raw):
        section = Section(entry, root.source, f"datasets.{index}")
        name = section.get_name_value("name", required=True)
        if name in specs:
            raise ConfigError(f"{section.where('name')}: dataset {name!r} is named twice")
        label = section.get_str("label_column") if label_allowed else None
        features_value = section._get("features", "all", False)
        if features_value == "all":
            features = None
        elif isinstance(features_value, list) and all(isinstance(f, str) for f in features_value):
            features = list(features_value)
        else:
            raise ConfigError(
                f'{section.where("features")}: expected "all" or a list of column names, '
                f"got {features_value!r}"
            )
        spec = DatasetSpec(
            name=name,
            # A missing file is a warning at start-up (``dataset_problems``), not a stop: one stale
            # entry must not take every other dataset offline; a session on it fails clearly.
            path=section.get_path("path", required=True),  # type: ignore[arg-type]
            id_column=section.get_str("id_column", "id"),
            label_column=label,
            features=features,
            categorical=section.get_str_list("categorical"),
        )
        if spec.label_column is not None and spec.label_column == spec.id_column:
            raise ConfigError(f"{section.where('label_column')}: the label cannot be the id column")
        if features is not None and spec.id_column in features:
            raise ConfigError(
                f"{section.where('features')}: lists the id column {spec.id_column!r}"
            )
        section.finish()
        specs[name] = spec
    return specs


def read_tls(root: Section) -> Any:
    """The ``[tls]`` table: ca, cert, key (PEM files), insecure, deadline_s, and the ``[tls.pins]``
    table (partner certificate name = "sha256:<fingerprint of the CA that issues it>")
    -> TransportConfig."""
    from fedlearn.transport.config import TransportConfig
    from fedlearn.transport.tls import parse_fingerprint

    section = root.get_table("tls")
    pins_section = section.get_table("pins")
    pins = []
    for partner in sorted(pins_section.data):
        if not NAME_PATTERN.match(partner):
            raise ConfigError(f"{pins_section.where(partner)}: {partner!r} is not a valid name")
        value = pins_section.get_str(partner, required=True)
        pins.append((partner, parse_fingerprint(value, what=pins_section.where(partner))))
    pins_section.finish()
    config = TransportConfig(
        ca=section.get_path("ca"),
        cert=section.get_path("cert"),
        key=section.get_path("key"),
        insecure=section.get_bool("insecure", False),
        deadline_s=section.get_float("deadline_s", 120.0, minimum=0.001),
        pins=tuple(pins),
    )
    section.finish()
    return config


def check_pins(transport: Any, partners: Sequence[str], source: Path) -> None:
    """With ``[tls.pins]``, every partner must have a pin (or it could never connect)."""
    if not transport.pins:
        return
    missing = [name for name in partners if transport.pin_for(name) is None]
    if missing:
        raise ConfigError(
            f"{source.name}: [tls.pins] names no CA for {', '.join(map(repr, missing))}: add "
            f'{missing[0]} = "sha256:<fingerprint of the CA that issues its certificate>" '
            "(`fedlearn certs` prints the development CA's)"
        )


def check_own_name(name: str, transport: Any, source: Path) -> None:
    """The node's configured name must be the name in its own certificate (its identity to peers)."""
    if transport.insecure or transport.cert is None:
        return
    from fedlearn.transport.tls import certificate_name

    in_cert = certificate_name(transport.cert)
    if in_cert != name:
        raise ConfigError(
            f"{source.name}: [node] name is {name!r} but the certificate {transport.cert} is for "
            f"{in_cert!r}: set name = {in_cert!r} or use that party's certificate"
        )


def read_executor(node: Section) -> tuple[str, str | None]:
    """``[node] executor`` and ``ray_address``: where the node's heavy crypto runs.

    ``executor = "process"`` (default): ``workers`` local processes. ``executor = "ray"``:
    ``workers`` Ray actors, on the party's own cluster at ``ray_address`` or, without one, on a
    private local Ray the node starts with ``num_cpus = workers``. Returns (executor,
    ray_address). Raises ``ConfigError`` for an unknown executor, a ``ray_address`` without
    ``executor = "ray"``, an empty address, or ``"ray"`` when Ray is not installed.
    """
    from fedlearn.crypto.executor import EXECUTORS
    from fedlearn.crypto.ray_executor import INSTALL_HINT, ray_installed

    kind = node.get_choice("executor", EXECUTORS, "process")
    address = node.get_str("ray_address")
    if address is not None:
        if kind != "ray":
            raise ConfigError(
                f'{node.where("ray_address")}: only used with executor = "ray" '
                f'(executor is {kind!r}); remove it or set executor = "ray"'
            )
        if not address.strip() or any(c.isspace() for c in address):
            raise ConfigError(
                f"{node.where('ray_address')}: {address!r} is not an address; use the party's "
                'own cluster, e.g. "ray://head.internal:10001", or remove it to start a local Ray'
            )
    if kind == "ray" and not ray_installed():
        raise ConfigError(
            f'{node.where("executor")}: "ray" needs Ray, which is not installed: {INSTALL_HINT} '
            '(or use executor = "process")'
        )
    return kind, address
