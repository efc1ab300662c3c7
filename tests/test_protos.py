"""The committed generated code must equal a fresh generation from protos/ (no drift)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    fresh = {p.name: p.read_text() for p in generate.generate(tmp_path)}
    committed_dir = ROOT / "fedlearn" / "proto" / "v1"
    assert fresh, "protoc produced nothing"
    for name, text in fresh.items():
        committed = committed_dir / name
        assert committed.exists(), f"{name} is not committed; run `make protos`"
        assert committed.read_text() == text, f"{name} differs from protos/; run `make protos`"


def test_every_peer_message_has_a_dataclass() -> None:
    from fedlearn.proto.v1 import peer_pb2
    from fedlearn.protocol import messages

    for name in peer_pb2.DESCRIPTOR.message_types_by_name:
        assert hasattr(messages, name), f"peer.proto message {name} has no dataclass in messages.py"
