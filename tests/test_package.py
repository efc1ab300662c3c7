"""The package's habits: one version, ``python -m fedlearn``, a changelog entry for the version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import fedlearn

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_written_once() -> None:
    assert importlib.metadata.version("fedlearn") == fedlearn.__version__
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert f'version = "{fedlearn.__version__}"' not in pyproject


def test_the_changelog_names_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{fedlearn.__version__}]" in changelog


def test_python_dash_m_fedlearn_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fedlearn", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: fedlearn" in done.stdout
