"""docs/api.md's example runs as written, cell after cell, against real node processes."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from fedlearn.store import ModelStore
from tests.e2e.conftest import Nodes

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_api_doc_example_runs(nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(cells) == 4
    monkeypatch.chdir(nodes.demo.root)  # the folder make-vip writes: a.toml, job.toml, data/
    namespace: dict[str, object] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for cell in cells:
            exec(compile(cell, str(DOC), "exec"), namespace)  # our own documentation
    output = printed.getvalue()
    job = namespace["job"]
    assert job.state == "succeeded"  # type: ignore[attr-defined]
    model_id = job.model_id  # type: ignore[attr-defined]
    assert model_id in ModelStore(nodes.demo.root / "models-a").list_ids()
    assert "[training] epoch 1: loss" in output
    scores = namespace["scores"]
    assert isinstance(scores, pd.DataFrame) and {"score", "decile", "rank"} <= set(scores.columns)
    assert os.path.isfile(str(namespace["page"]))
    assert namespace["final"].state in ("cancelled", "succeeded")  # type: ignore[attr-defined]
    assert "cancel requested" in output
