"""The import rule of docs/architecture.md: no import points up a layer.

Layers, bottom to top: ``fedlearn.crypto`` and ``fedlearn.transport`` (and the small library modules
beside them); ``fedlearn.protocol`` (messages, wire, step math, each role's step order); the
application modules (job files, node configs, report, CLI); the nodes ``party_a`` and ``party_b``.
A and B never import each other: A-side code must not load B's implementation. And no modular
arithmetic outside the crypto engines: the protocol and the nodes never import gmpy2 or phe, so
``engine = "phe"`` is a pure baseline (every operation on ciphertexts goes through ``PeerKeyOps`` /
``OwnKeyOps``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The modules above ``fedlearn.protocol`` inside ``fedlearn``.
APPLICATION = (
    "fedlearn.job",
    "fedlearn.cli",
    "fedlearn.demo",
    "fedlearn.launch",
    "fedlearn.nodecli",
    "fedlearn.report",
    "fedlearn.scaffold",
    "fedlearn.config_a",
    "fedlearn.config_b",
    "fedlearn.__main__",
)
NODES = ("party_a", "party_b")

#: (importing package, what it must not import).
FORBIDDEN: list[tuple[str, tuple[str, ...]]] = [
    ("fedlearn", NODES),
    ("fedlearn.protocol", APPLICATION),
    ("fedlearn.crypto", ("fedlearn.protocol", "fedlearn.transport", *APPLICATION)),
    ("fedlearn.transport", ("fedlearn.protocol", "fedlearn.crypto", *APPLICATION)),
    ("party_a", ("party_b",)),
    ("party_b", ("party_a",)),
    ("fedlearn.protocol", ("gmpy2", "phe")),
    ("party_a", ("gmpy2", "phe")),
    ("party_b", ("gmpy2", "phe")),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an import statement in ``path`` names, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _sources() -> list[Path]:
    paths = []
    for package in ("fedlearn", *NODES):
        paths += [p for p in (ROOT / package).rglob("*.py") if "proto" not in p.parts]
    return sorted(paths)


def violations() -> list[str]:
    """One line per import statement that breaks a rule: where, and which rule."""
    found = set()
    for path in _sources():
        module = _module_name(path)
        for importer, banned in FORBIDDEN:
            if not _within(module, importer):
                continue
            for line, target in _imports(path):
                hit = next((b for b in banned if _within(target, b)), None)
                if hit is not None:
                    found.add(f"{module}:{line}: {importer} must not import {hit}")
    return sorted(found)


def test_no_import_points_up_a_layer() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("fedlearn/protocol/bad.py", "from fedlearn.job import JobSpec\n"),
        ("fedlearn/bad.py", "import party_b.node\n"),
        ("party_a/bad.py", "from party_b.node import NodeB\n"),
        ("fedlearn/crypto/bad.py", "from fedlearn.protocol import steps\n"),
        ("fedlearn/protocol/bad.py", "import gmpy2\n"),
    ],
)
def test_the_rule_catches_an_upward_import(
    module: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker itself can fail: a planted upward import in a copy of the tree is reported."""
    for package in ("fedlearn", *NODES):
        (tmp_path / package).mkdir()
    (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / module).write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert len(violations()) == 1
