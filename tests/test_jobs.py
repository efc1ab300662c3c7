"""fedlearn.jobs: job records on disk, cancel at the next progress event, watch, logs, recovery."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fedlearn.errors import DataError, JobCancelled, NotFound
from fedlearn.jobs import JobRecord, JobRunner, JobStore, Turns
from fedlearn.progress import ProgressCallback, ProgressEvent


def _batches(gate: threading.Event, batches: int = 50) -> tuple[list[int], object]:
    done: list[int] = []

    def work(progress: ProgressCallback) -> tuple[str, dict]:
        progress(ProgressEvent("alignment", message="3 in common"))
        for batch in range(1, batches + 1):
            progress(ProgressEvent("training", epoch=1, epochs=1, batch=batch, batches=batches))
            done.append(batch)
            if batch == 3:
                gate.wait(5)
        return "m-1", {"metrics": {"joint": {"auc": 0.8}}}

    return done, work


def test_job_succeeds_with_phases_model_and_log(tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path))
    gate = threading.Event()
    gate.set()
    _, work = _batches(gate, batches=5)
    record = runner.submit("train", work, dataset="vip", job_path="job.toml")  # type: ignore[arg-type]
    assert record.state == "queued"
    final = list(runner.watch(record.job_id))[-1]
    assert isinstance(final, JobRecord)
    assert final.state == "succeeded" and final.model_id == "m-1"
    assert [p["phase"] for p in final.phases] == ["alignment", "training"]
    assert all(p["seconds"] >= 0 for p in final.phases)
    on_disk = json.loads((tmp_path / f"{record.job_id}.json").read_text())
    assert on_disk["state"] == "succeeded" and on_disk["summary"]["metrics"]["joint"]["auc"] == 0.8
    log = "\n".join(line for chunk in runner.logs(record.job_id, follow=False) for line in chunk)
    assert "train job opened" in log and "alignment: 3 in common" in log
    assert "succeeded: model m-1 saved" in log
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_cancel_stops_at_the_next_progress_event(tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path))
    gate = threading.Event()
    done, work = _batches(gate)
    record = runner.submit("train", work)  # type: ignore[arg-type]
    events = runner.watch(record.job_id)
    for event in events:
        if isinstance(event, ProgressEvent) and event.batch >= 3:
            break
    assert runner.cancel(record.job_id).state == "cancelling"
    gate.set()
    final = list(runner.watch(record.job_id))[-1]
    assert isinstance(final, JobRecord)
    assert final.state == "cancelled" and final.error_class == "JobCancelled"
    assert final.model_id == "" and done == [1, 2, 3]  # batch 4's progress event raised


def test_failure_keeps_error_class_and_message(tmp_path: Path) -> None:
    def work(progress: ProgressCallback) -> tuple[str, dict]:
        raise DataError("column 'x' has 3 non-numeric values")

    runner = JobRunner(JobStore(tmp_path))
    record = runner.submit("train", work)
    final = list(runner.watch(record.job_id))[-1]
    assert isinstance(final, JobRecord)
    assert (final.state, final.error_class) == ("failed", "DataError")
    assert "non-numeric" in final.error


@pytest.mark.parametrize(
    ("message", "joined"),
    [
        ("party-b is not reachable. Is the node running?", "running? Once it is back, continue"),
        ("party-b is not reachable", "reachable. Once it is back, continue"),
    ],
)
def test_a_peer_that_went_away_gets_the_resume_hint_in_one_sentence(
    tmp_path: Path, message: str, joined: str
) -> None:
    from fedlearn.errors import PeerUnavailable

    def work(progress: ProgressCallback) -> tuple[str, dict]:
        raise PeerUnavailable(message)

    runner = JobRunner(JobStore(tmp_path))
    record = runner.submit("train", work)
    final = list(runner.watch(record.job_id))[-1]
    assert isinstance(final, JobRecord)
    assert joined in final.error and "?." not in final.error
    assert final.error.endswith(f"`fedlearn train --resume {record.job_id}`")


def test_jobs_running_when_the_node_stopped_are_interrupted(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(JobRecord("job-20260101-000000-abcd", "train", "running", "2026-01-01T00:00:00Z"))
    runner = JobRunner(store)
    record = runner.get("job-20260101-000000-abcd")
    assert record.state == "interrupted" and "node stopped" in record.error
    assert record.error_class == "NodeStopping"  # a script branching on it sees why
    assert [r.job_id for r in runner.records()] == ["job-20260101-000000-abcd"]


def test_unknown_and_malformed_job_ids(tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path))
    with pytest.raises(NotFound, match="no job"):
        runner.get("job-20260101-000000-abcd")
    with pytest.raises(NotFound, match="not a job id"):
        runner.get("../../etc/passwd")


def test_a_stopping_node_interrupts_its_jobs_at_the_next_batch_and_they_can_resume(
    tmp_path: Path,
) -> None:
    runner = JobRunner(JobStore(tmp_path))
    gate = threading.Event()
    done, work = _batches(gate)
    record = runner.submit("train", work)  # type: ignore[arg-type]
    for event in runner.watch(record.job_id):
        if isinstance(event, ProgressEvent) and event.batch >= 3:
            break
    stopper = threading.Thread(target=runner.interrupt_all, kwargs={"timeout_s": 10})
    stopper.start()
    gate.set()
    stopper.join(15)
    interrupted = runner.get(record.job_id)
    assert interrupted.state == "interrupted" and len(done) == 3  # not one batch more
    assert f"fedlearn train --resume {record.job_id}" in interrupted.error
    again_gate = threading.Event()
    again_gate.set()
    _, again = _batches(again_gate, batches=4)
    resumed = runner.resume(record.job_id, again)  # type: ignore[arg-type]
    assert resumed.job_id == record.job_id
    final = list(runner.watch(record.job_id))[-1]
    assert isinstance(final, JobRecord) and final.state == "succeeded"
    assert final.started_at == interrupted.started_at != ""  # its first start, kept
    assert final.resumed_at >= final.started_at
    with pytest.raises(DataError, match="only an interrupted or failed job"):
        runner.resume(record.job_id, again)  # type: ignore[arg-type]


def test_a_job_that_cannot_resume_says_why_by_its_state() -> None:
    from party_a.node import _why_not_resumable

    def record(state: str, model_id: str = "") -> JobRecord:
        created = "2026-12-02T00:00:00Z"
        return JobRecord("job-1", "train", state, created, job_path="job.toml", model_id=model_id)

    assert _why_not_resumable(record("succeeded", model_id="m-1")) == (
        "it succeeded: its model is m-1"
    )
    cancelled = _why_not_resumable(record("cancelled"))
    assert "it was cancelled, and a cancelled job keeps no checkpoint" in cancelled
    assert cancelled.endswith("start it afresh (fedlearn train --job job.toml)")
    assert "checkpoints are removed" in _why_not_resumable(record("failed"))


def test_a_resumed_auto_batch_job_starts_at_its_checkpoint_s_batch_size(tmp_path: Path) -> None:
    from fedlearn.checkpoint import CheckpointStore
    from party_a.train import _checkpointed_batch_size

    store = CheckpointStore(tmp_path)
    assert _checkpointed_batch_size(store, "job-1") == 0  # no checkpoint: start at "auto"'s 1024
    store.save("job-1", 1, {"params": {"batch_size": 1024}})
    store.save("job-1", 2, {"params": {"batch_size": 2400}})
    assert _checkpointed_batch_size(store, "job-1") == 2400  # the latest epoch's
    store.save("job-2", 1, {"weights": []})
    assert _checkpointed_batch_size(store, "job-2") == 0  # a checkpoint that cannot tell


def test_a_job_queued_behind_another_is_cancelled_at_once(tmp_path: Path) -> None:
    """A's node runs one job at a time; one waiting for its turn says "queued" and a cancel ends it
    without waiting for the running job (``fedlearn.jobs.Turns``, the node's ``turns``)."""
    turns = Turns()
    runner = JobRunner(JobStore(tmp_path))
    release = threading.Event()

    def running(progress: ProgressCallback) -> tuple[str, dict]:
        with turns.turn(progress):
            progress(ProgressEvent("training", message="started"))
            release.wait(30)
        return "m-1", {}

    def waiting(progress: ProgressCallback) -> tuple[str, dict]:
        with turns.turn(progress):
            progress(ProgressEvent("training"))
        return "m-2", {}

    first = runner.submit("train", running)
    for event in runner.watch(first.job_id):
        if isinstance(event, ProgressEvent) and event.message == "started":
            break
    second = runner.submit("train", waiting)
    for event in runner.watch(second.job_id):
        if isinstance(event, ProgressEvent) and event.phase == "queued":
            break
    assert runner.get(second.job_id).state == "queued"  # waiting is not running
    time.sleep(1.2)  # two more turns of the wait
    record = runner.get(second.job_id)
    assert (
        record.progress["message"] == "waiting for the job running at this node"
    )  # still says why
    waits = [line for line in runner.store.read_log(second.job_id) if "waiting for" in line]
    assert len(waits) == 1  # the repeated event is logged once
    runner.cancel(second.job_id)
    final = list(runner.watch(second.job_id))[-1]
    assert isinstance(final, JobRecord) and final.state == "cancelled"
    assert runner.get(first.job_id).state == "running"  # the cancel did not wait for it
    release.set()
    done = list(runner.watch(first.job_id))[-1]
    assert isinstance(done, JobRecord) and done.state == "succeeded"


def test_a_scoring_waiting_behind_a_job_ends_when_its_client_goes_away(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Score (and Align) wait for the node's turn like a job (``NodeA.turns``): a client that
    goes away while they wait ends them, instead of their running after the job they waited for."""
    from types import SimpleNamespace

    import party_a.score
    from party_a.control import _run_streaming
    from party_a.node import NodeA

    ran = threading.Event()

    def fake_score(
        *args: object, progress: ProgressCallback, turn: object, **kwargs: object
    ) -> None:
        with turn(progress):  # type: ignore[operator]  # the node's turn, for the work with B
            ran.set()

    monkeypatch.setattr(party_a.score, "score", fake_score)
    node = SimpleNamespace(
        turns=Turns(),
        model=lambda model_id: {"model_id": model_id},
        config=SimpleNamespace(peer_name="party-b", workers=1),
        peer=None,
        executor=None,
    )
    active = [True]
    callbacks: list[Any] = []
    context = SimpleNamespace(is_active=lambda: active[0], add_callback=callbacks.append)

    def scoring(progress: ProgressCallback) -> None:
        NodeA.score(node, "m-1", tmp_path / "in.csv", tmp_path / "out.csv", progress)  # type: ignore[arg-type]

    seen: list[object] = []

    def client() -> None:
        # As gRPC does: the RPC thread pulls one event, then the client goes away (Ctrl-C); gRPC
        # runs the call's callbacks and pulls nothing more from the generator.
        stream = _run_streaming(scoring, context)
        seen.append(next(stream)[1])
        active[0] = False
        for callback in callbacks:
            callback()

    with node.turns.turn(lambda event: None):  # a training job holds the node
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        thread.join(10)
        time.sleep(0.7)  # the waiting scoring sees its client gone at its next queued event
    assert isinstance(seen[0], ProgressEvent) and seen[0].phase == "queued"
    time.sleep(1.0)  # the node is free again: the abandoned scoring must not take its turn
    assert not ran.is_set()
    assert not node.turns.busy


def test_a_record_in_json_has_null_for_what_is_not_known() -> None:
    record = JobRecord("job-20260101-000000-abcd", "train", "queued", "2026-01-01T00:00:00Z")
    document = record.to_json()
    for name in ("started_at", "finished_at", "resumed_at", "progress", "model_id", "summary"):
        assert document[name] is None, name
    assert document["phases"] == [] and document["cancel_requested"] is False
    assert record.to_dict()["started_at"] == ""  # the file on disk keeps its own format


def test_a_node_killed_mid_phase_leaves_the_phase_s_time_so_far(tmp_path: Path) -> None:
    """The record is saved with the open phase's seconds: a SIGKILL leaves them, not 0."""
    runner = JobRunner(JobStore(tmp_path))
    gate = threading.Event()
    _, work = _batches(gate, batches=5)
    record = runner.submit("train", work)  # type: ignore[arg-type]
    for event in runner.watch(record.job_id):
        if isinstance(event, ProgressEvent) and event.batch >= 3:
            break
    time.sleep(0.3)
    runner.cancel(record.job_id)  # saves the record while "training" is open
    on_disk = json.loads((tmp_path / f"{record.job_id}.json").read_text())
    assert on_disk["phases"][-1]["phase"] == "training" and on_disk["phases"][-1]["seconds"] > 0.2
    gate.set()
    list(runner.watch(record.job_id))


def test_an_interrupted_job_can_be_discarded_and_a_finished_one_cannot(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(JobRecord("job-20260101-000000-abcd", "train", "running", "2026-01-01T00:00:00Z"))
    runner = JobRunner(store)
    discarded = runner.discard("job-20260101-000000-abcd")
    assert discarded.state == "cancelled" and discarded.error_class == "JobCancelled"
    assert "can no longer be resumed" in discarded.error
    assert runner.get("job-20260101-000000-abcd").state == "cancelled"
    with pytest.raises(DataError, match="cancelled; there is nothing to cancel"):
        runner.discard("job-20260101-000000-abcd")


def test_cancelling_an_interrupted_job_removes_its_checkpoints_at_a(tmp_path: Path) -> None:
    """``fedlearn jobs cancel`` on a job the operator will not resume: it goes, with its
    checkpoints (party_a.node.NodeA.cancel_job); a succeeded job is refused (exit 3)."""
    from types import SimpleNamespace

    from fedlearn.checkpoint import CheckpointStore
    from party_a.node import NodeA

    store = JobStore(tmp_path / "jobs")
    store.save(JobRecord("job-20260101-000000-abcd", "train", "running", "2026-01-01T00:00:00Z"))
    store.save(JobRecord("job-20260101-000000-ef01", "train", "succeeded", "2026-01-01T00:00:00Z"))
    checkpoints = CheckpointStore(tmp_path / "checkpoints")
    checkpoints.save("job-20260101-000000-abcd", 1, {"weights": [0.5]})
    node = SimpleNamespace(jobs=JobRunner(store), checkpoints=checkpoints)
    record = NodeA.cancel_job(node, "job-20260101-000000-abcd")  # type: ignore[arg-type]
    assert record.state == "cancelled"
    assert checkpoints.epochs("job-20260101-000000-abcd") == []
    with pytest.raises(DataError, match="succeeded; there is nothing to cancel"):
        NodeA.cancel_job(node, "job-20260101-000000-ef01")  # type: ignore[arg-type]


def test_a_job_for_a_dataset_a_does_not_have_is_refused_when_submitted(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from party_a.node import NodeA

    node = SimpleNamespace(
        config=SimpleNamespace(source=Path("a.toml"), datasets={"growth": object()}),
        checkpoints=None,
        jobs=None,
    )
    node.dataset = lambda name: NodeA.dataset(node, name)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match=r"a\.toml has no dataset 'growthx'; it has: growth"):
        NodeA.submit_train(node, '[data]\ndataset = "growthx"\n', "job.toml")  # type: ignore[arg-type]


def test_work_waiting_for_the_node_runs_in_arrival_order() -> None:
    """Eight jobs queued behind a running one start in the order they came (a lock's waiters are
    served in no particular order: a trial saw them run mostly in reverse)."""
    turns = Turns()
    order: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def running() -> None:
        with turns.turn(lambda event: None):
            started.set()
            release.wait(30)

    def waiting(k: int) -> None:
        with turns.turn(lambda event: None):
            order.append(k)

    first = threading.Thread(target=running)
    first.start()
    assert started.wait(10)
    threads = []
    for k in range(8):
        thread = threading.Thread(target=waiting, args=(k,))
        thread.start()
        threads.append(thread)
        time.sleep(0.05)  # arrival order
    release.set()
    for thread in [first, *threads]:
        thread.join(30)
    assert order == list(range(8))
    assert not turns.busy


def test_a_waiter_that_leaves_the_queue_does_not_block_those_behind_it() -> None:
    turns = Turns()
    left, ran = threading.Event(), threading.Event()

    def impatient(event: ProgressEvent) -> None:
        left.set()
        raise JobCancelled("cancelled while queued")

    def leaving() -> None:
        with pytest.raises(JobCancelled), turns.turn(impatient):
            pass

    def patient() -> None:
        with turns.turn(lambda event: None):
            ran.set()

    with turns.turn(lambda event: None):
        one = threading.Thread(target=leaving)
        one.start()
        assert left.wait(10)
        two = threading.Thread(target=patient)
        two.start()
        time.sleep(0.3)
        assert not ran.is_set()
    two.join(10)
    one.join(10)
    assert ran.is_set()
