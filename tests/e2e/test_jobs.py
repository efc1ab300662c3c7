"""Jobs that outlive the CLI, --json, models show/delete and reports, through real node processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.client import Client
from fedlearn.store import ModelStore
from tests.e2e.conftest import Nodes, running_nodes, small_demo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def long_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """Nodes whose job runs long enough (many epochs, no early stop) to be cancelled mid-way."""
    with running_nodes(small_demo(tmp_path_factory.mktemp("jobs"), rows=3000)) as started:
        yield started


def _long_job(nodes: Nodes, tmp_path: Path) -> Path:
    job = tmp_path / "long.toml"
    job.write_text(
        nodes.demo.job.read_text()
        .replace("epochs = 2", "epochs = 40")
        .replace('monitor = "score_change"', 'monitor = "none"')
    )
    return job


def _batches_done(progress: dict) -> int:
    return (max(progress.get("epoch", 1), 1) - 1) * progress.get("batches", 0) + progress.get(
        "batch", 0
    )


def test_detached_job_is_listed_and_cancelled_within_a_batch(
    long_nodes: Nodes, tmp_path: Path
) -> None:
    started = long_nodes.cli(
        "train", "--job", str(_long_job(long_nodes, tmp_path)), "--detach", "--json"
    )
    assert started.returncode == 0, started.stderr
    job = json.loads(started.stdout)  # one JSON document on stdout
    job_id = job["job_id"]
    assert job["state"] in ("queued", "running")

    with Client(long_nodes.demo.a_config) as client:
        deadline = time.monotonic() + 120
        record = client.job(job_id)
        # Past the first epoch, so both nodes hold a checkpoint the cancel must drop.
        while record.progress.get("phase") != "training" or record.progress.get("epoch", 0) < 2:
            assert time.monotonic() < deadline and not record.finished, record
            time.sleep(0.2)
            record = client.job(job_id)
        listing = long_nodes.cli("jobs", "--json")
        assert listing.returncode == 0, listing.stderr
        assert job_id in [r["job_id"] for r in json.loads(listing.stdout)]

        at_cancel = _batches_done(client.cancel(job_id).progress)
        final = client.watch(job_id)
    assert final.state == "cancelled", final
    assert final.cancel_requested and "cancelled" in final.error
    # It stopped within one batch of the cancel (the record trails by at most one batch event).
    assert _batches_done(final.progress) <= at_cancel + 2
    assert [p["phase"] for p in final.phases][:3] == ["keys", "alignment", "training"]
    # Nothing saved on either side; B dropped the session, and neither keeps a checkpoint of a
    # job that is never resumed (B's plaintext state of it included).
    assert ModelStore(long_nodes.demo.root / "models-a").list_ids() == []
    assert ModelStore(long_nodes.demo.root / "models-b").list_ids() == []
    for side in ("models-a", "models-b"):
        assert not list((long_nodes.demo.root / side / ".checkpoints").glob("*/epoch-*.json"))
    # The record on disk says the same, and the job's log has its events.
    on_disk = json.loads(
        (long_nodes.demo.root / "models-a" / ".jobs" / f"{job_id}.json").read_text()
    )
    assert on_disk["state"] == "cancelled"
    logs = long_nodes.cli("jobs", "logs", job_id)
    assert "cancel requested" in logs.stdout and "cancelled" in logs.stdout, logs.stdout
    a_log = long_nodes.a.log_path.read_text()
    assert f"job {job_id}: phase training" in a_log


def _follow_then_interrupt(nodes: Nodes, tmp_path: Path, *flags: str) -> tuple[str, str, int]:
    """Start `fedlearn train` (following), send Ctrl-C once batches run; (job id, stderr, exit)."""
    import signal

    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedlearn.cli",
            "train",
            "--job",
            str(_long_job(nodes, tmp_path)),
            "--config",
            str(nodes.demo.a_config),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a test suite started in the background (`make test &` from a
        # script) has SIGINT ignored, and a child inherits that, so the CLI would never see it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert cli.stderr is not None
    job_id = ""
    deadline = time.monotonic() + 120
    for line in cli.stderr:
        if line.startswith("job "):
            job_id = line.split()[1]
        if "[training]" in line or time.monotonic() > deadline:
            break
    assert job_id.startswith("job-")
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=60)
    return job_id, err, cli.returncode


def test_interrupted_follower_detaches_and_job_runs_on(long_nodes: Nodes, tmp_path: Path) -> None:
    job_id, err, code = _follow_then_interrupt(long_nodes, tmp_path)
    assert code == 130, err
    assert f"fedlearn jobs watch {job_id}" in err and f"fedlearn jobs cancel {job_id}" in err
    assert "Traceback" not in err
    with Client(long_nodes.demo.a_config) as client:
        assert client.job(job_id).state in ("running", "queued")
        client.cancel(job_id)
        assert client.watch(job_id).state == "cancelled"


def test_interrupt_with_cancel_on_interrupt_cancels(long_nodes: Nodes, tmp_path: Path) -> None:
    job_id, err, code = _follow_then_interrupt(long_nodes, tmp_path, "--cancel-on-interrupt")
    assert code == 130, err
    assert f"job {job_id} cancelled" in err and "Traceback" not in err
    with Client(long_nodes.demo.a_config) as client:
        assert client.job(job_id).state == "cancelled"
    assert ModelStore(long_nodes.demo.root / "models-a").list_ids() == []
    assert ModelStore(long_nodes.demo.root / "models-b").list_ids() == []


def test_json_models_show_delete_and_reports(nodes: Nodes, tmp_path: Path) -> None:
    trained = nodes.cli("train", "--job", str(nodes.demo.job), "--json")
    assert trained.returncode == 0, trained.stderr
    record = json.loads(trained.stdout)
    model_id = record["model_id"]
    assert record["state"] == "succeeded" and record["summary"]["metrics"]["joint"]["auc"] > 0.5
    # Each epoch's loss is printed once, on stderr.
    assert trained.stderr.count("epoch 1: loss") == 1

    shown = json.loads(nodes.cli("models", "show", model_id, "--json").stdout)
    assert shown["model_id"] == model_id and shown["summary"]["job"]["epochs"] == 2
    listed = json.loads(nodes.cli("models", "--json").stdout)
    assert model_id in [m["model_id"] for m in listed]

    report = nodes.cli("report", "--model", model_id, "--out", str(tmp_path / "r"), "--json")
    assert report.returncode == 0, report.stderr
    page = Path(json.loads(report.stdout)["path"]).read_text()
    assert "Whom to target" in page and "data:image/png;base64," in page

    scores = tmp_path / "scores.csv"
    scored = nodes.cli(
        "score",
        "--model",
        model_id,
        "--input",
        str(nodes.demo.data.a_new_users_csv),
        "--output",
        str(scores),
        "--json",
    )
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["rows"] > 0
    scores_report = nodes.cli("report", "--scores", str(scores), "--out", str(tmp_path / "s"))
    assert scores_report.returncode == 0, scores_report.stderr
    page = (tmp_path / "s" / "report.html").read_text()
    assert "Known to the partner" in page and "<td>10</td>" in page

    deleted = nodes.cli("models", "delete", model_id, "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {
        "model_id": model_id,
        "peer_deleted": True,
        "peer_error": "",
        "peer_had_none": False,
    }
    assert model_id not in ModelStore(nodes.demo.root / "models-a").list_ids()
    assert model_id not in ModelStore(nodes.demo.root / "models-b").list_ids()
    missing = nodes.cli("models", "show", model_id)
    assert missing.returncode == 2 and "no model" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_unknown_job_and_version(nodes: Nodes) -> None:
    result = nodes.cli("jobs", "show", "job-20000101-000000-0000")
    assert result.returncode == 2 and "no job" in result.stderr
    version = subprocess.run(
        [sys.executable, "-m", "fedlearn.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("fedlearn ")
