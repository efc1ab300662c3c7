"""Jobs that outlive the CLI: a record per job on disk, a worker thread per job, watch and cancel.

A's node runs each training job in a thread of its own. The job's record (:class:`JobRecord`: state,
phases with their timings, the latest progress, the model id or the error) is written as JSON to
``<root>/<job id>.json`` on every phase change, message and state change (a temporary file renamed
into place, so a reader never sees half a record), and one line per job event is appended to
``<root>/<job id>.log`` and to the node's log. A client that goes away leaves the job running; it
can watch it again (:meth:`JobRunner.watch`), read its log, or cancel it (:meth:`JobRunner.cancel`).

Cancelling sets a flag that the job's progress callback checks: the next progress event (A's
drivers emit one per batch) raises :class:`~fedlearn.errors.JobCancelled` inside the job, which
unwinds as any failure does (the session at B is closed, so B stops too, and no model is saved).
A cancel that arrives after the last batch, while the model is being committed, is too late: the
job ends "succeeded" and its record says the cancel came too late.

States: queued -> running -> (cancelling ->) succeeded | failed | cancelled. A job found "queued",
"running" or "cancelling" on disk when the node starts was cut short by a node stop: it becomes
"interrupted".
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fedlearn.atomic import write_atomic
from fedlearn.errors import (
    DataError,
    FedlearnError,
    JobCancelled,
    NotFound,
    PeerUnavailable,
    SessionError,
)
from fedlearn.progress import ProgressCallback, ProgressEvent

log = logging.getLogger("fedlearn.jobs")

JOB_ID_PATTERN = re.compile(r"^job-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
#: The record's fields that are "" or {} until known, and ``null`` in JSON output then.
_UNSET_IS_NULL = (
    "dataset",
    "job_path",
    "started_at",
    "finished_at",
    "resumed_at",
    "progress",
    "model_id",
    "summary",
    "error",
    "error_class",
)
ACTIVE_STATES = ("queued", "running", "cancelling")
FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
#: A job in one of these states can be run again from its checkpoints (``fedlearn train --resume``).
RESUMABLE_STATES = ("failed", "interrupted")
#: How often, at most, a record is rewritten for batch progress alone (seconds).
PERSIST_EVERY_S = 2.0

#: What a job runs: given a progress callback, returns (model id, summary of the result).
Work = Callable[[ProgressCallback], tuple[str, dict[str, Any]]]


def utc_now() -> str:
    return utc_text(datetime.now(timezone.utc))


def utc_text(when: datetime) -> str:
    """``when`` as the records write times: UTC ISO 8601 to the second."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id() -> str:
    """``job-<UTC yyyymmdd-hhmmss>-<4 hex>``, e.g. ``job-20261202-121502-9f3a``."""
    return f"job-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise NotFound(
            f"{job_id!r} is not a job id (job-yyyymmdd-hhmmss-xxxx); see `fedlearn jobs`"
        )
    return job_id


@dataclass
class JobRecord:
    """One job as A's node records it. Times are UTC ISO 8601; ``seconds`` are wall-clock."""

    job_id: str
    kind: str
    state: str
    created_at: str
    dataset: str = ""
    job_path: str = ""
    started_at: str = ""
    finished_at: str = ""
    #: When a resumed job ran again (``started_at`` stays its first start); "" if never resumed.
    resumed_at: str = ""
    #: [{"phase": "alignment", "started_at": "...", "seconds": 1.2}, ...] in the order run.
    phases: list[dict[str, Any]] = field(default_factory=list)
    #: The latest progress event (fedlearn.protocol.progress.ProgressEvent fields).
    progress: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    #: The model's summary (metrics, timings, rows) once the job succeeded.
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    error_class: str = ""
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> dict[str, Any]:
        """``to_dict`` for ``--json`` output: a value not known (yet) is ``null``, not "" or {}."""
        raw = self.to_dict()
        for name in _UNSET_IS_NULL:
            if raw.get(name) in ("", {}):
                raw[name] = None
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


class Turns:
    """A's node's one-at-a-time rule (training jobs, alignments, scorings), first come first served.

    ``turn(progress)`` waits for every earlier caller to finish, reporting phase "queued" while it
    waits (the progress callback may raise, a cancel or a client that went away: the caller then
    leaves the queue and nothing of it runs). A plain lock would not do: which of several threads
    waiting on a lock gets it is unspecified (a trial saw eight queued jobs run mostly in reverse).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()
        self._busy = False

    @property
    def busy(self) -> bool:
        with self._changed:
            return self._busy

    @contextlib.contextmanager
    def turn(self, progress: ProgressCallback) -> Iterator[None]:
        waiting = ProgressEvent("queued", message="waiting for the job running at this node")
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
        try:
            first = True
            while True:
                with self._changed:
                    if not self._busy and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._busy = True
                        break
                    self._changed.wait(timeout=0.2 if first else 0.5)
                    ready = not self._busy and self._waiting[0] is ticket
                if not ready:
                    progress(waiting)  # outside the lock: it may take others' locks, or raise
                first = False
        except BaseException:
            with self._changed:
                self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()


class JobStore:
    """``<root>/<id>.json`` (the record, replaced atomically) and ``<root>/<id>.log`` (appended)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, record: JobRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{check_job_id(record.job_id)}.json"
        write_atomic(target, json.dumps(record.to_dict(), indent=1, allow_nan=True))

    def saved_at(self, record: JobRecord) -> str:
        """When ``record``'s file was last written (UTC ISO 8601), else now."""
        try:
            when = (self.root / f"{record.job_id}.json").stat().st_mtime
        except OSError:
            return utc_now()
        return utc_text(datetime.fromtimestamp(when, timezone.utc))

    def load(self, job_id: str) -> JobRecord:
        path = self.root / f"{check_job_id(job_id)}.json"
        if not path.is_file():
            raise NotFound(f"no job {job_id!r} on this node; `fedlearn jobs` lists them")
        return JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def records(self) -> list[JobRecord]:
        """Every readable record, newest first."""
        if not self.root.is_dir():
            return []
        records = []
        for path in self.root.glob("job-*.json"):
            try:
                records.append(JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("job record %s cannot be read: %s", path.name, exc)
        return sorted(records, key=lambda r: (r.created_at, r.job_id), reverse=True)

    def append_log(self, job_id: str, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{check_job_id(job_id)}.log", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def read_log(self, job_id: str, start: int = 0) -> list[str]:
        """The log's lines from line ``start`` on (0-based)."""
        path = self.root / f"{check_job_id(job_id)}.log"
        if not path.is_file():
            return []
        return path.read_text(encoding="utf-8").splitlines()[start:]


class NodeStopping(FedlearnError):
    """A's node is stopping: the job ends at its next batch as "interrupted" (it can be resumed)."""

    grpc_code = "UNAVAILABLE"


@dataclass
class _Live:
    record: JobRecord
    events: list[ProgressEvent] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    last_saved: float = 0.0


class JobRunner:
    """Runs jobs in threads and keeps their records; safe to call from many RPC threads."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._live: dict[str, _Live] = {}
        self._changed = threading.Condition()
        self._recover()

    def _recover(self) -> None:
        for record in self.store.records():
            if record.state in ACTIVE_STATES:
                ran = "while the job ran" if record.started_at else "before the job started"
                # Ended when its record was last written (the node died then), not now.
                record.state, record.finished_at = "interrupted", self.store.saved_at(record)
                record.error_class = NodeStopping.__name__  # as a job the node stopped cleanly
                record.error = (
                    f"the node stopped {ran}; no model was saved. Continue it from its last "
                    f"checkpoint with `fedlearn train --resume {record.job_id}`"
                )
                self.store.save(record)

    # ---- submitting and running ------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        work: Work,
        *,
        dataset: str = "",
        job_path: str = "",
        job_id: str = "",
    ) -> JobRecord:
        """Start ``work`` in a thread; return its record (state "queued") at once.

        ``job_id``: one the caller made with ``new_job_id`` (to keep files under it first).
        """
        record = JobRecord(job_id or new_job_id(), kind, "queued", utc_now(), dataset, job_path)
        live = _Live(record)
        with self._changed:
            self._live[record.job_id] = live
            self.store.save(record)
        self._event(
            live, f"{kind} job opened (dataset {dataset or '-'}, job file {job_path or '-'})"
        )
        return self._start(live, work)

    def resume(self, job_id: str, work: Work) -> JobRecord:
        """Run an interrupted or failed job again under its own id (``work`` resumes it).

        Raises ``DataError`` for a job that is running, succeeded or was cancelled.
        """
        with self._changed:
            if check_job_id(job_id) in self._live:
                raise DataError(f"job {job_id} is still running; `fedlearn jobs watch {job_id}`")
            record = self.store.load(job_id)
            if record.state not in RESUMABLE_STATES:
                raise DataError(
                    f"job {job_id} {record.state}; only an interrupted or failed job can be resumed"
                )
            record.state, record.finished_at, record.error, record.error_class = (
                "queued", "", "", ""
            )  # fmt: skip
            record.cancel_requested = False
            live = _Live(record)
            self._live[job_id] = live
            self.store.save(record)
        self._event(live, "resumed by the operator")
        return self._start(live, work)

    def _start(self, live: _Live, work: Work) -> JobRecord:
        record = live.record
        submitted = JobRecord.from_dict(record.to_dict())
        threading.Thread(
            target=self._run, args=(live, work), name=f"job-{record.job_id}", daemon=True
        ).start()
        return submitted

    def _run(self, live: _Live, work: Work) -> None:
        record = live.record
        try:
            model_id, summary = work(lambda event: self._progress(live, event))
        except JobCancelled as exc:
            self._finish(live, "cancelled", error=str(exc), error_class=type(exc).__name__)
        except NodeStopping as exc:
            self._finish(live, "interrupted", error=str(exc), error_class=type(exc).__name__)
        except FedlearnError as exc:
            error = str(exc)
            if record.kind == "train" and isinstance(exc, (PeerUnavailable, SessionError)):
                # The partner went away or ended the session: both sides kept their checkpoints.
                ended = error.endswith((".", "?", "!"))
                error += (
                    f"{'' if ended else '.'} Once {'it is back' if isinstance(exc, PeerUnavailable) else 'fixed'}, "
                    f"continue from the last epoch with `fedlearn train --resume {record.job_id}`"
                )
            self._finish(live, "failed", error=error, error_class=type(exc).__name__)
        except Exception as exc:  # the record says what happened; the traceback is in the log
            log.error("job %s failed", record.job_id, exc_info=exc)
            self._finish(live, "failed", error=f"internal error: {exc}", error_class="")
        else:
            with self._changed:
                record.model_id, record.summary = model_id, summary
            late = (
                " (the cancel came after the last batch: too late)" if live.cancel.is_set() else ""
            )
            self._finish(live, "succeeded", note=f"model {model_id} saved{late}")

    def _progress(self, live: _Live, event: ProgressEvent) -> None:
        record = live.record
        if live.cancel.is_set():
            raise JobCancelled(f"job {record.job_id} was cancelled by the operator; nothing saved")
        if live.stopping.is_set():
            if record.state == "queued":  # it never ran: nothing to continue from
                raise NodeStopping(
                    f"A's node stopped before job {record.job_id} started; start it with "
                    f"`fedlearn train --resume {record.job_id}` (it runs from the first epoch)"
                )
            raise NodeStopping(
                f"A's node stopped while job {record.job_id} ran; continue it from its last "
                f"epoch with `fedlearn train --resume {record.job_id}`"
            )
        lines = []
        now = time.monotonic()
        with self._changed:
            save = False
            if record.state == "queued" and event.phase != "queued":  # waiting for another job
                record.state, save = "running", True
                if record.started_at:  # a resumed job keeps its first start
                    record.resumed_at = utc_now()
                else:
                    record.started_at = utc_now()
            if not record.phases or record.phases[-1]["phase"] != event.phase:
                self._close_phase(record)
                record.phases.append(
                    {"phase": event.phase, "started_at": utc_now(), "seconds": 0.0}
                )
                record.phases[-1]["_t0"] = now
                lines.append(f"phase {event.phase}")
                save = True
            last = record.progress
            if event.message and (last.get("phase"), last.get("message")) != (
                event.phase,
                event.message,
            ):  # a job waiting its turn repeats its "queued" event: logged once
                lines.append(f"{event.phase}: {event.message}")
                save = True
            record.progress = dataclasses.asdict(event)
            live.events.append(event)
            if save or now - live.last_saved > PERSIST_EVERY_S:
                self._save(live, now)
            self._changed.notify_all()
        for line in lines:
            self._log(record.job_id, line)

    @staticmethod
    def _close_phase(record: JobRecord) -> None:
        if record.phases and "_t0" in record.phases[-1]:
            last = record.phases[-1]
            last["seconds"] = round(time.monotonic() - last.pop("_t0"), 3)

    def _save(self, live: _Live, now: float) -> None:
        # _t0 (monotonic) stays in memory only. The open phase is saved with its seconds so far:
        # a node killed mid-phase leaves its time up to the last save, not 0.
        saved = dataclasses.replace(
            live.record,
            phases=[
                {
                    **{k: v for k, v in p.items() if k != "_t0"},
                    **({"seconds": round(now - p["_t0"], 3)} if "_t0" in p else {}),
                }
                for p in live.record.phases
            ],
        )
        self.store.save(saved)
        live.last_saved = now

    def _finish(
        self, live: _Live, state: str, *, error: str = "", error_class: str = "", note: str = ""
    ) -> None:
        record = live.record
        with self._changed:
            self._close_phase(record)
            record.state, record.finished_at = state, utc_now()
            record.error, record.error_class = error, error_class
            self._save(live, time.monotonic())
            self._changed.notify_all()
        self._log(record.job_id, f"{state}: {note or error}" if (note or error) else state)
        with self._changed:
            self._live.pop(record.job_id, None)
            self._changed.notify_all()

    def _event(self, live: _Live, line: str) -> None:
        self._log(live.record.job_id, line)

    def _log(self, job_id: str, line: str) -> None:
        log.info("job %s: %s", job_id, line)
        self.store.append_log(job_id, f"{utc_now()} {line}")

    # ---- asking about jobs -----------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        with self._changed:
            live = self._live.get(check_job_id(job_id))
            if live is not None:
                return JobRecord.from_dict(_public(live.record))
        return self.store.load(job_id)

    def records(self) -> list[JobRecord]:
        with self._changed:
            live = {
                job_id: JobRecord.from_dict(_public(x.record)) for job_id, x in self._live.items()
            }
        records = [live.pop(r.job_id, r) for r in self.store.records()]
        return sorted(
            [*records, *live.values()], key=lambda r: (r.created_at, r.job_id), reverse=True
        )

    def interrupt_all(self, timeout_s: float = 60.0) -> int:
        """The node is stopping: every running job stops at its next progress event (one batch at
        most) as "interrupted", keeping its checkpoints. Waits up to ``timeout_s`` for them to
        unwind (closing their sessions at B); returns how many were still running."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            for live in self._live.values():
                live.stopping.set()
            while self._live and time.monotonic() < deadline:
                self._changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            return len(self._live)

    def cancel(self, job_id: str) -> JobRecord:
        """Ask a job to stop at its next batch; returns its record (state "cancelling" or final)."""
        with self._changed:
            live = self._live.get(check_job_id(job_id))
            if live is None:
                return self.store.load(job_id)  # finished already (or unknown: NotFound)
            live.cancel.set()
            live.record.cancel_requested = True
            if live.record.state in ("queued", "running"):
                live.record.state = "cancelling"
            self._save(live, time.monotonic())
            record = JobRecord.from_dict(_public(live.record))
            self._changed.notify_all()
        self._log(job_id, "cancel requested by the operator")
        return record

    def discard(self, job_id: str) -> JobRecord:
        """An interrupted or failed job the operator will not resume: its state becomes
        "cancelled" (the caller removes its checkpoints). Raises ``DataError`` for a job that is
        running, succeeded or was cancelled: there is nothing to discard."""
        with self._changed:
            if check_job_id(job_id) in self._live:
                raise DataError(
                    f"job {job_id} is running; `fedlearn jobs cancel {job_id}` stops it"
                )
            record = self.store.load(job_id)
            if record.state not in RESUMABLE_STATES:
                raise DataError(f"job {job_id} {record.state}; there is nothing to cancel")
            was = record.state
            record.state, record.finished_at = "cancelled", utc_now()
            record.error = (
                f"cancelled by the operator after it {'was ' if was == 'interrupted' else ''}{was}; "
                "its checkpoints were removed and it can no longer be resumed"
            )
            record.error_class = JobCancelled.__name__
            self.store.save(record)
        self._log(job_id, record.error)
        return record

    def watch(
        self, job_id: str, *, is_active: Callable[[], bool] = lambda: True
    ) -> Iterator[ProgressEvent | JobRecord]:
        """The job's progress events from now on, then its final record (the last item).

        Every event with a message is yielded; of the batch events in between, only the latest.
        Stops early (without a record) when ``is_active()`` turns False: the watcher went away.
        """
        seen = -1
        while is_active():
            with self._changed:
                live = self._live.get(check_job_id(job_id))
                if live is None:
                    break
                if seen < 0:
                    seen = max(0, len(live.events) - 1)
                fresh, seen = live.events[seen:], len(live.events)
                if not fresh:
                    self._changed.wait(timeout=0.5)
            for i, event in enumerate(fresh):
                if event.message or i == len(fresh) - 1:
                    yield event
        else:
            return
        yield self.store.load(job_id)

    def logs(
        self, job_id: str, *, follow: bool, is_active: Callable[[], bool] = lambda: True
    ) -> Iterator[list[str]]:
        """The job's log lines so far; with ``follow``, then new lines until the job ends."""
        self.store.load(job_id)  # NotFound for an unknown job
        sent = 0
        while True:
            with self._changed:
                running = check_job_id(job_id) in self._live
            lines = self.store.read_log(job_id, sent)
            sent += len(lines)
            if lines:
                yield lines
            if not follow or not running or not is_active():
                return
            with self._changed:
                self._changed.wait(timeout=0.5)


def _public(record: JobRecord) -> dict[str, Any]:
    raw = record.to_dict()
    raw["phases"] = [{k: v for k, v in p.items() if k != "_t0"} for p in record.phases]
    return raw
