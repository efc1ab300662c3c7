"""Real node processes on loopback ports with mutual TLS, for end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedlearn.launch import NodeProcess
from fedlearn.scaffold import VipDemo, write_vip_demo


@dataclass
class Nodes:
    demo: VipDemo
    a: NodeProcess
    b: NodeProcess

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fedlearn.cli", *args, "--config", str(self.demo.a_config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def small_demo(root: Path, *, rows: int = 2000, seed: int = 11) -> VipDemo:
    """The demo folder, with test-sized keys (B's policy allows 512 bits) and short jobs."""
    demo = write_vip_demo(root, rows=rows, seed=seed, epochs=2, key_bits=512)
    b_text = demo.b_config.read_text().replace("min_key_bits = 2048", "min_key_bits = 512")
    b_text = b_text.replace("min_batch_size = 256", "min_batch_size = 64")
    # Batches of 256 rows and B's 34 columns after one-hot: 4 rows per column (the default is 8).
    demo.b_config.write_text(b_text.replace("min_rows_per_column = 8", "min_rows_per_column = 4"))
    job = _replace_once(demo.job.read_text(), 'batch_size = "auto"', "batch_size = 256")
    demo.job.write_text(job + "\n[privacy]\nmin_rows_per_column = 4\n")
    return demo


def _replace_once(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"the demo's file no longer has {old!r}: update the test fixture")
    return text.replace(old, new)


def leased_demo(root: Path, *, rows: int, epochs: int, lease_s: int) -> VipDemo:
    """``small_demo`` whose B drops a silent partner's session after ``lease_s`` seconds and whose
    job runs exactly ``epochs`` epochs (no early stopping): the fault-injection suites' data."""
    demo = small_demo(root, rows=rows)
    demo.b_config.write_text(
        _replace_once(
            demo.b_config.read_text(),
            "allow_partial_scores = true",
            f"allow_partial_scores = true\nsession_lease_s = {lease_s}",
        )
    )
    job = _replace_once(demo.job.read_text(), "epochs = 2", f"epochs = {epochs}")
    demo.job.write_text(_replace_once(job, 'monitor = "score_change"', 'monitor = "none"'))
    return demo


@contextmanager
def running_nodes(demo: VipDemo) -> Iterator[Nodes]:
    """B's node, then A's, over the demo's configs; both stopped on the way out."""
    b = NodeProcess("b", demo.b_config, demo.root / "logs" / "b.log")
    try:
        a = NodeProcess("a", demo.a_config, demo.root / "logs" / "a.log")
    except BaseException:
        b.stop()
        raise
    try:
        yield Nodes(demo, a, b)
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    with running_nodes(small_demo(tmp_path_factory.mktemp("nodes"))) as started:
        yield started
