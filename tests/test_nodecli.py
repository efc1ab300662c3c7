"""Node commands: --version, a bad --log-level, --log-file with --log-format json, a port in use."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fedlearn.nodecli import setup_logging


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "party_b.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_and_bad_log_level() -> None:
    version = _run("--version")
    assert version.returncode == 0 and "fedlearn" in version.stdout
    bad = _run("serve", "--config", "b.toml", "--log-level", "loud")
    assert bad.returncode == 2
    assert "'loud' is not one of DEBUG, INFO, WARNING, ERROR" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_json_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("party-a", "INFO", log_file, "json")
        logging.getLogger("party_a.jobs").info("job %s: phase training", "job-1")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    record = json.loads(log_file.read_text().splitlines()[0])
    assert record["message"] == "job job-1: phase training"
    assert record["node"] == "party-a" and record["level"] == "INFO"
    assert record["time"].endswith("Z")


@pytest.mark.e2e
def test_port_in_use_is_one_clean_message(tmp_path: Path) -> None:
    from fedlearn.scaffold import write_vip_demo

    demo = write_vip_demo(tmp_path / "d", rows=200, seed=1, epochs=1, key_bits=512)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = demo.b_config.read_text()
        listen = next(line for line in text.splitlines() if line.startswith("listen"))
        demo.b_config.write_text(text.replace(listen, f'listen = "127.0.0.1:{port}"'))
        result = _run("serve", "--config", str(demo.b_config))
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "chttp2" not in result.stderr
    assert "E0000" not in result.stderr


def test_a_node_warns_of_each_dataset_problem_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from fedlearn.config import DatasetSpec
    from fedlearn.nodecli import check_datasets

    (tmp_path / "b.csv").write_text("id,x,segment\n1,2,A\n")
    datasets = {
        "ok": DatasetSpec("ok", tmp_path / "b.csv", "id", None, None, ["segment"]),
        "typo": DatasetSpec("typo", tmp_path / "b.csv", "id", None, None, ["segmnt"]),
    }
    with caplog.at_level("WARNING"):
        assert check_datasets(datasets, logging.getLogger("party_b")) == 1
    assert "dataset 'typo': categorical 'segmnt' is not in b.csv's header" in caplog.text
    assert "'ok'" not in caplog.text
