"""``fedlearn.Client``: A's control API from Python (a notebook, a scheduler, the ``fedlearn`` CLI).

    from fedlearn import Client

    with Client("a.toml") as client:
        job = client.train("job.toml", progress=print)      # returns when the job has ended
        scores = client.score(job.model_id, "new_users.csv")  # a pandas DataFrame

The client talks to A's node at its ``[control] listen`` address with A's own certificate (from A's
node config: the ``config`` argument, else ``$FEDLEARN_CONFIG``, else ``./a.toml``). Results are
typed dataclasses; a training job's record is :class:`fedlearn.jobs.JobRecord`. Every failure is a
``FedlearnError`` subclass (the classes and exit codes in docs/transport.md); an error A's node
raised reaches the caller unchanged, naming the node at fault once. See docs/api.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlearn import errors
from fedlearn.errors import ConfigError, FedlearnError
from fedlearn.jobs import JobRecord
from fedlearn.progress import ProgressEvent

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CONFIG = "a.toml"
#: Streaming calls (a training job being watched) may last this long (seconds).
STREAM_DEADLINE_S = 7 * 24 * 3600.0

ProgressHandler = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class AlignResult:
    """Set sizes from one private set intersection; ``seconds`` is wall-clock at A."""

    own_size: int
    peer_size: int
    intersection_size: int
    seconds: float


@dataclass(frozen=True)
class ModelInfo:
    """A model in A's store: its id, creation time (UTC ISO 8601) and A's summary of it.

    ``summary`` holds ``metrics`` ({"joint": {...}, "a_only": {...}}), ``rows``, ``timings``,
    ``job`` (the training parameters), ``loss_history`` and ``epochs_completed`` when recorded.
    """

    model_id: str
    created_at: str
    summary: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, model: str = "joint") -> float | None:
        """A validation metric (``"auc"``, ``"recall@40"``, ...) of ``model`` ("joint", "a_only")."""
        value = self.summary.get("metrics", {}).get(model, {}).get(name)
        return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class ScoreResult:
    """One scoring run: ``rows`` users scored, ``matched`` of them known to B."""

    rows: int
    matched: int
    output_path: Path
    seconds: float
    warnings: tuple[str, ...] = ()
    #: Which model scored how many users (joint, A-only fallback), as A's node summarises it.
    summary: str = ""


@dataclass(frozen=True)
class DeleteResult:
    """A model deleted at A; ``peer_deleted`` when B confirmed its shard is gone too
    (``peer_had_none``: B held none), ``peer_error`` why B was not asked (``local_only``)."""

    model_id: str
    peer_deleted: bool
    peer_error: str = ""
    peer_had_none: bool = False


def resolve_config(config: str | Path | None) -> Path:
    """A's node config: ``config``, else $FEDLEARN_CONFIG, else ./a.toml; ConfigError if missing."""
    path = Path(config or os.environ.get("FEDLEARN_CONFIG") or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(
            f"{path}: A's node config not found; pass --config or set FEDLEARN_CONFIG"
        )
    return path


def job_error(record: JobRecord) -> FedlearnError:
    """The exception a failed or cancelled job raised at A's node (same class, same message)."""
    cls = getattr(errors, record.error_class, None)
    if not (isinstance(cls, type) and issubclass(cls, FedlearnError)):
        cls = FedlearnError
    return cls(record.error or f"job {record.job_id} ended {record.state}")


class Client:
    """A connection to A's node's control API. Cheap to make; close it (or use ``with``)."""

    def __init__(self, config: str | Path | None = None) -> None:
        from fedlearn.config_a import load_config
        from fedlearn.proto.v1 import control_pb2_grpc
        from fedlearn.transport import build_channel

        self.config_path = resolve_config(config)
        self.config = load_config(self.config_path)
        self.address = self.config.control_listen
        self.label = f"{self.config.name}'s node at {self.address}"
        self._channel = build_channel(
            self.address,
            self.config.transport,
            server_name=None if self.config.transport.insecure else self.config.name,
            source=self.config.source.name,
        )
        self._stub = control_pb2_grpc.ControlServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------------
    def _unary(self, method: str, request: Any) -> Any:
        from fedlearn.transport import call_unary

        return call_unary(
            getattr(self._stub, method),
            request,
            deadline_s=self.config.transport.deadline_s,
            peer=self.label,
            own_node=True,
        )

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        from fedlearn.transport import stream_responses

        return stream_responses(
            getattr(self._stub, method),
            request,
            deadline_s=STREAM_DEADLINE_S,
            peer=self.label,
            own_node=True,
        )

    # ---- alignment -------------------------------------------------------------------------------
    def align(
        self, dataset: str, peer_dataset: str = "", *, progress: ProgressHandler | None = None
    ) -> AlignResult:
        """Private set intersection of A's ``dataset`` with B's ``peer_dataset`` (default: same)."""
        from fedlearn.proto.v1 import control_pb2 as pb

        request = pb.AlignRequest(dataset=dataset, peer_dataset=peer_dataset)
        for event in self._stream("Align", request):
            if event.HasField("progress"):
                _emit(progress, event.progress)
            else:
                r = event.result
                return AlignResult(r.own_size, r.peer_size, r.intersection_size, r.seconds)
        raise FedlearnError(f"{self.label} ended the alignment without a result")

    # ---- training jobs ---------------------------------------------------------------------------
    def submit_train(self, job_file: str | Path | None = None, *, job_toml: str = "") -> JobRecord:
        """Start a training job at A's node and return its record at once (state "queued").

        Give the job file's path, or its text as ``job_toml``. The file is checked here first, so
        a bad job file raises ConfigError before the node is asked.
        """
        from fedlearn.job import parse_job
        from fedlearn.proto.v1 import control_pb2 as pb

        if job_file is not None:
            from fedlearn.config import read_text_file

            path = Path(job_file)
            if not path.is_file():
                raise ConfigError(f"{path}: no such job file")
            job_toml, source = read_text_file(path), str(path)  # ConfigError if not UTF-8
        elif job_toml:
            source = "job.toml"
        else:
            raise ConfigError("give a job file or the job's TOML text")
        parse_job(job_toml, source)
        reply = self._unary(
            "SubmitTrain", pb.SubmitTrainRequest(job_toml=job_toml, job_path=source)
        )
        return _record(reply.job)

    def resume_train(self, job_id: str) -> JobRecord:
        """Resume an interrupted or failed training job from the last epoch both nodes hold.

        The job runs again under its own id with its own job file (kept by A's node); keys and
        the alignment are made afresh. Raises NotFound for an unknown job, DataError for one that
        cannot be resumed (succeeded, cancelled, or its checkpoints are gone).
        """
        from fedlearn.proto.v1 import control_pb2 as pb

        reply = self._unary("SubmitTrain", pb.SubmitTrainRequest(resume_job_id=job_id))
        return _record(reply.job)

    def train(
        self,
        job_file: str | Path | None = None,
        *,
        job_toml: str = "",
        progress: ProgressHandler | None = None,
    ) -> JobRecord:
        """Run a training job to its end: the final record (``model_id``, ``summary``).

        ``progress`` is called with each :class:`ProgressEvent`. Raises the job's own error (the
        same FedlearnError subclass A's node raised) when it failed or was cancelled.
        """
        job = self.submit_train(job_file, job_toml=job_toml)
        return self.wait(job.job_id, progress=progress)

    def wait(self, job_id: str, *, progress: ProgressHandler | None = None) -> JobRecord:
        """Follow a job until it ends; its final record, or its error raised (see :meth:`train`)."""
        record = self.watch(job_id, progress=progress)
        if record.state != "succeeded":
            raise job_error(record)
        return record

    def watch(self, job_id: str, *, progress: ProgressHandler | None = None) -> JobRecord:
        """Follow a job until it ends and return its final record, whatever the outcome."""
        from fedlearn.proto.v1 import control_pb2 as pb

        for event in self._stream("WatchJob", pb.WatchJobRequest(job_id=job_id)):
            if event.HasField("progress"):
                _emit(progress, event.progress)
            else:
                return _record(event.finished)
        raise FedlearnError(f"{self.label} stopped watching job {job_id} before it ended")

    def jobs(self) -> list[JobRecord]:
        """Every job A's node knows of, newest first."""
        from fedlearn.proto.v1 import control_pb2 as pb

        return [_record(job) for job in self._unary("ListJobs", pb.ListJobsRequest()).jobs]

    def job(self, job_id: str) -> JobRecord:
        from fedlearn.proto.v1 import control_pb2 as pb

        return _record(self._unary("GetJob", pb.GetJobRequest(job_id=job_id)).job)

    def cancel(self, job_id: str) -> JobRecord:
        """Ask a job to stop at its next batch (nothing is saved); its record ("cancelling")."""
        from fedlearn.proto.v1 import control_pb2 as pb

        return _record(self._unary("CancelJob", pb.CancelJobRequest(job_id=job_id)).job)

    def logs(self, job_id: str, *, follow: bool = False) -> Iterator[str]:
        """The job's log lines; with ``follow``, new lines as they come until the job ends."""
        from fedlearn.proto.v1 import control_pb2 as pb

        for reply in self._stream("JobLogs", pb.JobLogsRequest(job_id=job_id, follow=follow)):
            yield from reply.lines

    # ---- models ----------------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        from fedlearn.proto.v1 import control_pb2 as pb

        return [_model(m) for m in self._unary("ListModels", pb.ListModelsRequest()).models]

    def model(self, model_id: str) -> ModelInfo:
        from fedlearn.proto.v1 import control_pb2 as pb

        return _model(self._unary("GetModel", pb.GetModelRequest(model_id=model_id)).model)

    def delete_model(self, model_id: str, *, local_only: bool = False) -> DeleteResult:
        """Delete B's shard of a model, then A's. When B cannot be reached nothing is deleted
        (``PeerUnavailable``); ``local_only`` deletes A's copy without asking B."""
        from fedlearn.proto.v1 import control_pb2 as pb

        reply = self._unary(
            "RemoveModel", pb.RemoveModelRequest(model_id=model_id, local_only=local_only)
        )
        return DeleteResult(model_id, reply.peer_deleted, reply.peer_error, reply.peer_had_none)

    # ---- scoring and reports ---------------------------------------------------------------------
    def score(
        self,
        model_id: str,
        input_path: str | Path,
        output_path: str | Path | None = None,
        *,
        progress: ProgressHandler | None = None,
    ) -> pd.DataFrame | ScoreResult:
        """Score the users in ``input_path`` (CSV or Parquet) with a model.

        With ``output_path`` the scores are written there (atomically, format by extension) and a
        :class:`ScoreResult` is returned; without, they come back as a pandas DataFrame (id column,
        score, decile, rank, partner_matched, ...). A's node reads and writes the files itself, so
        the paths must be on A's node's machine.
        """
        if output_path is not None:
            return self._score(model_id, Path(input_path), Path(output_path), progress)
        import pandas as pd

        with tempfile.TemporaryDirectory(prefix="fedlearn-scores-") as tmp:
            self._score(model_id, Path(input_path), Path(tmp) / "scores.parquet", progress)
            return pd.read_parquet(Path(tmp) / "scores.parquet")

    def _score(
        self, model_id: str, input_path: Path, output_path: Path, progress: ProgressHandler | None
    ) -> ScoreResult:
        from fedlearn.proto.v1 import control_pb2 as pb

        if not input_path.is_file():
            raise ConfigError(f"{input_path}: no such input file")
        request = pb.ScoreRequest(
            model_id=model_id,
            input_path=str(input_path.resolve()),
            output_path=str(output_path.resolve()),
        )
        warnings: list[str] = []
        summary: list[str] = []
        for event in self._stream("Score", request):
            if event.HasField("progress"):
                if event.progress.phase == "summary":
                    summary.append(event.progress.message)
                    continue
                if event.progress.phase == "warning":
                    warnings.append(event.progress.message)
                _emit(progress, event.progress)
            else:
                r = event.result
                return ScoreResult(
                    r.rows,
                    r.matched,
                    Path(r.output_path),
                    r.seconds,
                    tuple(warnings),
                    "; ".join(summary),
                )
        raise FedlearnError(f"{self.label} ended the scoring run without a result")

    def report(self, model_id: str, out_dir: str | Path) -> Path:
        """Write the model's HTML report into ``out_dir``; the path of report.html."""
        from fedlearn.proto.v1 import control_pb2 as pb

        request = pb.ReportRequest(model_id=model_id, out_dir=str(Path(out_dir).resolve()))
        return Path(self._unary("Report", request).path)

    def scores_report(self, scores_path: str | Path, out_dir: str | Path) -> Path:
        """Write the HTML report of a scoring run's output file into ``out_dir``."""
        from fedlearn.proto.v1 import control_pb2 as pb

        request = pb.ScoresReportRequest(
            scores_path=str(Path(scores_path).resolve()), out_dir=str(Path(out_dir).resolve())
        )
        return Path(self._unary("ScoresReport", request).path)


def _emit(handler: ProgressHandler | None, progress: Any) -> None:
    if handler is not None:
        handler(
            ProgressEvent(
                phase=progress.phase,
                epoch=progress.epoch,
                epochs=progress.epochs,
                batch=progress.batch,
                batches=progress.batches,
                loss=progress.loss,
                elapsed_s=progress.elapsed_s,
                eta_s=progress.eta_s,
                message=progress.message,
            )
        )


def _record(job: Any) -> JobRecord:
    return JobRecord.from_dict(json.loads(job.record_json))


def _model(summary: Any) -> ModelInfo:
    return ModelInfo(summary.model_id, summary.created_at, json.loads(summary.summary_json or "{}"))
