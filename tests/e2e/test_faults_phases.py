"""Fault injection at every phase with real node processes, and resume after a kill (issue 12).

Each case stops one node at a pause point (``fedlearn.faults``: the node logs "pause point X
reached" and waits) in alignment, commit, scoring or output writing, kills it there (SIGKILL, or
SIGTERM), restarts it, and asserts what survives: no half-written model or output, no temporary
file or staging folder after the restart (or, for an output, after the next write), B's session
reclaimed within its lease, and the next job works. A training job killed at either node resumes
with ``fedlearn train --resume`` and ends with the weights of an uninterrupted run, to the
fixed-point precision (2^-score_frac_bits).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from fedlearn.launch import NodeProcess
from fedlearn.scaffold import VipDemo
from fedlearn.store import ModelStore
from tests.e2e.conftest import leased_demo
from tests.e2e.test_faults import _children

pytestmark = pytest.mark.e2e
#: The cases beyond the representative ones: `make faults` runs them all, `make test` skips them.
heavy = pytest.mark.heavy

LEASE_S = 5
EPOCHS = 3
PRECISION = 2.0**-12  # the job's score_frac_bits (default 12)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> VipDemo:
    return leased_demo(tmp_path_factory.mktemp("phases"), rows=1500, epochs=EPOCHS, lease_s=LEASE_S)


def _cli(demo: VipDemo, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedlearn.cli", *args, "--config", str(demo.a_config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _cli_background(demo: VipDemo, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedlearn.cli", *args, "--config", str(demo.a_config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def _node(demo: VipDemo, role: str, name: str, pause: str = "") -> NodeProcess:
    config = demo.a_config if role == "a" else demo.b_config
    env = {"FEDLEARN_PAUSE_AT": pause, "FEDLEARN_PAUSE_S": "120"} if pause else {}
    return NodeProcess(role, config, demo.root / "logs" / f"{name}-{role}.log", env=env)


@contextmanager
def _nodes(demo: VipDemo, name: str, *, pause_a: str = "", pause_b: str = "") -> Iterator[dict[str, NodeProcess]]:  # fmt: skip
    """Both nodes, in a dict so a test can replace one it killed; all stopped on the way out."""
    nodes = {"b": _node(demo, "b", name, pause_b)}
    try:
        nodes["a"] = _node(demo, "a", name, pause_a)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def _kill(node: NodeProcess, how: str) -> None:
    if how == "SIGKILL":
        node.kill()
    else:
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(60)


def _paused(node: NodeProcess, point: str) -> Callable[[], bool]:
    return lambda: f"pause point {point} reached" in node.log_path.read_text()


def _leftovers(demo: VipDemo, *folders: Path) -> list[str]:
    """Temporary files and staging folders anywhere under the model folders (and ``folders``)."""
    found = []
    for root in (demo.root / "models-a", demo.root / "models-b", *folders):
        for path in root.rglob(".*"):
            if path.name.endswith(".tmp") or ".tmp-" in path.name or ".trash-" in path.name:
                found.append(str(path))
    return found


def _sound_models(folder: Path) -> list[str]:
    entries = ModelStore(folder).entries()
    assert all(e.shard is not None for e in entries), [e.problem for e in entries]
    return [e.model_id for e in entries]


def _weights(demo: VipDemo, model_id: str) -> np.ndarray:
    a = ModelStore(demo.root / "models-a").load(model_id)
    b = ModelStore(demo.root / "models-b").load(model_id)
    return np.array([*a["a_weights"].values(), a["intercept"], *b["weights"]])


def _model_id(out: str) -> str:
    return out.split("model: ", 1)[1].split()[0]


def _job_state(demo: VipDemo, job_id: str) -> str:
    shown = _cli(demo, "jobs", "show", job_id, "--json")
    return str(json.loads(shown.stdout)["state"]) if shown.returncode == 0 else "?"


def _detached_train(demo: VipDemo) -> str:
    started = _cli(demo, "train", "--job", str(demo.job), "--detach")
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def _session_reclaimed(b: NodeProcess, session: str) -> Callable[[], bool]:
    text = re.escape(session)
    return lambda: re.search(f"session {text} (closed|of party-a expired)", b.log_path.read_text()) is not None  # fmt: skip


def _last_session(b: NodeProcess) -> str:
    return re.findall(r"session (\w+) opened by", b.log_path.read_text())[-1]


@pytest.fixture(scope="module")
def reference(demo: VipDemo) -> tuple[str, np.ndarray]:
    """An uninterrupted run of the job: its model id and both parties' weights."""
    with _nodes(demo, "reference"):
        trained = _cli(demo, "train", "--job", str(demo.job))
        assert trained.returncode == 0, trained.stderr
    model_id = _model_id(trained.stdout)
    return model_id, _weights(demo, model_id)


@pytest.mark.parametrize("victim", ["a", pytest.param("b", marks=heavy)])
def test_a_job_killed_mid_training_resumes_to_the_uninterrupted_model(
    demo: VipDemo, reference: tuple[str, np.ndarray], victim: str
) -> None:
    _, want = reference
    with _nodes(demo, f"resume-{victim}") as nodes:
        job_id = _detached_train(demo)
        done = demo.root / "models-a" / ".checkpoints" / job_id / "epoch-000001.json"
        _wait_for(done.is_file, 120, "the first epoch's checkpoint")
        nodes[victim].kill()  # mid-epoch 2
        nodes[victim] = _node(demo, victim, f"resume-{victim}-2")
        _wait_for(
            lambda: _job_state(demo, job_id) in ("interrupted", "failed"), 60, "the job to end"
        )
        resumed = _cli(demo, "train", "--resume", job_id)
        assert resumed.returncode == 0, resumed.stderr
        assert f"job {job_id} resumed" in resumed.stderr
        assert re.search(r"resumes its job after epoch [12]\b", nodes["b"].log_path.read_text())
    np.testing.assert_allclose(
        _weights(demo, _model_id(resumed.stdout)), want, rtol=0, atol=PRECISION
    )
    assert not (demo.root / "models-a" / ".checkpoints" / job_id).exists()  # removed once saved
    assert _leftovers(demo) == []


def test_a_killed_mid_alignment_leaves_nothing_and_b_reclaims_the_session(demo: VipDemo) -> None:
    with _nodes(demo, "align-a", pause_a="align") as nodes:
        baseline = _children(nodes["b"].process.pid)
        before = _sound_models(demo.root / "models-b")
        job_id = _detached_train(demo)
        _wait_for(_paused(nodes["a"], "align"), 60, "A to pause in alignment")
        session = _last_session(nodes["b"])
        nodes["a"].kill()
        _wait_for(_session_reclaimed(nodes["b"], session), LEASE_S * 2 + 10, "B's lease")
        _wait_for(lambda: _children(nodes["b"].process.pid) <= baseline, 15, "B's helper to stop")
        nodes["a"] = _node(demo, "a", "align-a-2")
        assert _job_state(demo, job_id) == "interrupted"
        assert _sound_models(demo.root / "models-b") == before
        assert _leftovers(demo) == []
        assert _cli(demo, "align", "--dataset", "vip").returncode == 0  # the next job works


@heavy
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_b_stopped_mid_alignment_fails_the_job_cleanly(demo: VipDemo, how: str) -> None:
    with _nodes(demo, f"align-b-{how}", pause_b="align") as nodes:
        job_id = _detached_train(demo)
        _wait_for(_paused(nodes["b"], "align"), 60, "B to pause in alignment")
        _kill(nodes["b"], how)
        _wait_for(lambda: _job_state(demo, job_id) == "failed", 60, "A's job to fail")
        shown = json.loads(_cli(demo, "jobs", "show", job_id, "--json").stdout)
        assert "not reachable" in shown["error"] or "UNAVAILABLE" in shown["error"], shown
        nodes["b"] = _node(demo, "b", f"align-b-{how}-2")
        assert _leftovers(demo) == []
        assert _cli(demo, "align", "--dataset", "vip").returncode == 0


@heavy
@pytest.mark.parametrize("victim", ["a", "b"])
def test_a_node_killed_while_committing_leaves_no_half_model_and_the_job_resumes(
    demo: VipDemo, reference: tuple[str, np.ndarray], victim: str
) -> None:
    _, want = reference
    pauses = {"pause_a": "commit"} if victim == "a" else {"pause_b": "commit"}
    with _nodes(demo, f"commit-{victim}", **pauses) as nodes:
        models_a = _sound_models(demo.root / "models-a")
        models_b = _sound_models(demo.root / "models-b")
        job_id = _detached_train(demo)
        _wait_for(_paused(nodes[victim], "commit"), 180, "the commit")
        assert _leftovers(demo)  # the shard's staging folder, about to be renamed
        nodes[victim].kill()
        nodes[victim] = _node(demo, victim, f"commit-{victim}-2")  # without the pause
        _wait_for(
            lambda: _job_state(demo, job_id) in ("interrupted", "failed"), 60, "the job to end"
        )
        assert _leftovers(demo) == []  # swept at start
        assert _sound_models(demo.root / "models-a") == models_a  # A saved nothing
        resumed = _cli(demo, "train", "--resume", job_id)
        assert resumed.returncode == 0, resumed.stderr
        model_id = _model_id(resumed.stdout)
    # B's shard of the first commit (when B finished it) was deleted: one new model at each side.
    assert _sound_models(demo.root / "models-a") == sorted([*models_a, model_id])
    assert _sound_models(demo.root / "models-b") == sorted([*models_b, model_id])
    np.testing.assert_allclose(_weights(demo, model_id), want, rtol=0, atol=PRECISION)


@heavy
@pytest.mark.parametrize("victim", ["a", "b"])
def test_a_node_killed_mid_scoring_writes_no_output(
    demo: VipDemo, reference: tuple[str, np.ndarray], victim: str, tmp_path: Path
) -> None:
    model_id, _ = reference
    output = tmp_path / "scores.csv"
    score = ("score", "--model", model_id, "--input", str(demo.data.a_new_users_csv),
             "--output", str(output))  # fmt: skip
    with _nodes(demo, f"score-{victim}", pause_b="score") as nodes:
        baseline = _children(nodes["b"].process.pid)
        cli = _cli_background(demo, *score)
        _wait_for(_paused(nodes["b"], "score"), 60, "B to pause in scoring")
        session = _last_session(nodes["b"])
        nodes[victim].kill()
        cli.wait(60)
        assert cli.returncode != 0
        assert not output.exists() and _leftovers(demo, tmp_path) == []
        if victim == "a":
            _wait_for(_session_reclaimed(nodes["b"], session), LEASE_S * 2 + 10, "B's lease")
            assert _children(nodes["b"].process.pid) <= baseline
        nodes[victim] = _node(demo, victim, f"score-{victim}-2")
    with _nodes(demo, f"score-{victim}-3"):
        assert _cli(demo, *score).returncode == 0  # the next job works
    assert output.is_file() and _leftovers(demo, tmp_path) == []


def test_a_killed_while_writing_scores_leaves_the_old_output_and_no_temporary_file(
    demo: VipDemo, reference: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    model_id, _ = reference
    output = tmp_path / "scores.csv"
    output.write_text("the previous run's scores\n")
    score = ("score", "--model", model_id, "--input", str(demo.data.a_new_users_csv),
             "--output", str(output))  # fmt: skip
    with _nodes(demo, "write", pause_a="write:scores.csv") as nodes:
        cli = _cli_background(demo, *score)
        _wait_for(_paused(nodes["a"], "write:scores.csv"), 60, "A to pause before the rename")
        assert _leftovers(demo, tmp_path)  # the whole new output, under a temporary name
        nodes["a"].kill()
        cli.wait(60)
        assert cli.returncode != 0
        assert output.read_text() == "the previous run's scores\n"  # never half written
        nodes["a"] = _node(demo, "a", "write-2")
        assert _cli(demo, *score).returncode == 0
    assert output.read_text().startswith(("user_id", "id")) or "score" in output.read_text()[:200]
    assert _leftovers(demo, tmp_path) == []  # the next write to the same output swept it


def test_no_checkpoint_dir_grows_without_bound(demo: VipDemo) -> None:
    """Every job folder of either node is bounded (the sweep at start keeps 16 jobs, 2 epochs)."""
    for root in (demo.root / "models-a" / ".checkpoints", demo.root / "models-b" / ".checkpoints"):
        if root.is_dir():
            assert len(list(root.iterdir())) <= 16
            for folder in root.iterdir():
                assert len(list(folder.glob("epoch-*.json"))) <= 2
    assert os.environ.get("FEDLEARN_PAUSE_AT") is None  # the tests set it per node only
