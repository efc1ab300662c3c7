"""A's control servicer: the `fedlearn` CLI's API. It adapts requests to ``NodeA`` and streams progress.

Training is a job (``SubmitTrain``): it runs in A's node under a job id, outlives the client that
started it, and is watched (``WatchJob``), listed, cancelled and read (``JobLogs``) through
``NodeA.jobs`` (fedlearn.jobs). Align and Score run while their call lasts: their progress events go through a queue to the response stream, and when the client goes
away the next progress event raises ``JobCancelled`` inside the work, which unwinds the way any
failure does (session closed at B, no model registered).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from fedlearn.errors import InvalidPeerData, JobCancelled, PolicyViolation
from fedlearn.jobs import JobRecord
from fedlearn.progress import ProgressEvent
from fedlearn.proto.v1 import control_pb2 as pb
from fedlearn.proto.v1 import control_pb2_grpc
from fedlearn.transport import peer_identity
from party_a.node import NodeA
from party_a.score import model_summary

log = logging.getLogger(__name__)


def _progress(event: ProgressEvent) -> pb.Progress:
    return pb.Progress(
        phase=event.phase,
        epoch=event.epoch,
        epochs=event.epochs,
        batch=event.batch,
        batches=event.batches,
        loss=event.loss,
        elapsed_s=event.elapsed_s,
        eta_s=event.eta_s,
        message=event.message,
    )


def _run_streaming(
    job: Callable[[Callable[[ProgressEvent], None]], Any], context: grpc.ServicerContext
) -> Iterator[tuple[str, Any]]:
    """Run ``job(progress)`` in a thread; yield ("progress", event) then ("result", value).

    A client that goes away (Ctrl-C, a killed CLI) ends the job at its next progress event. gRPC
    says so through the call's callback, and the job asks the context itself at each event: once
    the client is gone gRPC stops pulling from this generator, so the loop below may never look
    again (a scoring interrupted while queued then ran, and wrote its file, after the job it
    waited for).
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    cancelled = threading.Event()
    context.add_callback(cancelled.set)  # the RPC ended: finished, cancelled or timed out

    def progress(event: ProgressEvent) -> None:
        if cancelled.is_set() or not context.is_active():
            cancelled.set()
            raise JobCancelled("the client went away; job cancelled")
        events.put(("progress", event))

    def run() -> None:
        try:
            events.put(("result", job(progress)))
        except BaseException as exc:  # handed to the RPC thread, which raises it
            events.put(("error", exc))

    worker = threading.Thread(target=run, name="control-job", daemon=True)
    worker.start()
    while True:
        try:
            kind, value = events.get(timeout=0.5)
        except queue.Empty:
            if not context.is_active():
                cancelled.set()
            continue
        if kind == "error":
            raise value
        yield kind, value
        if kind == "result":
            return


def _absolute(path: str, what: str) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute():
        raise InvalidPeerData(f"{what} must be an absolute path, got {path!r}")
    return candidate


class ControlServicer(control_pb2_grpc.ControlServiceServicer):
    """Only A's own operators may call: a client certificate with A's own name (the CLI uses A's)."""

    def __init__(self, node: NodeA) -> None:
        self.node = node

    def _authorize(self, context: grpc.ServicerContext) -> None:
        if self.node.config.transport.insecure:
            return
        # With [tls.pins], only the CA that issued A's own certificate can vouch for A's name.
        caller = peer_identity(context, self.node.config.transport)
        if caller != self.node.config.name:
            raise PolicyViolation(
                f"the control API of {self.node.config.name} accepts only its own certificate; "
                f"the caller presented {caller!r}"
            )

    def Align(
        self, request: pb.AlignRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AlignResponse]:
        self._authorize(context)

        def job(progress: Callable[[ProgressEvent], None]) -> Any:
            return self.node.align(request.dataset, request.peer_dataset, progress)

        for kind, value in _run_streaming(job, context):
            if kind == "progress":
                yield pb.AlignResponse(progress=_progress(value))
            else:
                yield pb.AlignResponse(
                    result=pb.AlignResult(
                        own_size=value.own_size,
                        peer_size=value.peer_size,
                        intersection_size=len(value.own_rows),
                        seconds=value.seconds,
                    )
                )

    def Score(
        self, request: pb.ScoreRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScoreResponse]:
        self._authorize(context)
        input_path = _absolute(request.input_path, "input_path")
        output_path = _absolute(request.output_path, "output_path")
        job = lambda progress: self.node.score(request.model_id, input_path, output_path, progress)  # noqa: E731
        for kind, value in _run_streaming(job, context):
            if kind == "progress":
                yield pb.ScoreResponse(progress=_progress(value))
            else:
                message = "; ".join(value.warnings)
                if message:
                    yield pb.ScoreResponse(
                        progress=pb.Progress(
                            phase="warning", message=message, loss=math.nan, eta_s=math.nan
                        )
                    )
                yield pb.ScoreResponse(
                    progress=pb.Progress(
                        phase="summary",
                        message=model_summary(value),
                        loss=math.nan,
                        eta_s=math.nan,
                    )
                )
                yield pb.ScoreResponse(
                    result=pb.ScoreResult(
                        rows=value.rows,
                        matched=value.matched,
                        output_path=str(value.output_path),
                        seconds=value.seconds,
                    )
                )

    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        self._authorize(context)
        models = []
        entries = self.node.store.entries()
        at_peer = self.node.peer_shards([e.model_id for e in entries if e.shard is not None])
        for entry in entries:
            if entry.shard is None:
                # Listed, not hidden: the operator sees the model and why it cannot be used.
                log.warning("%s", entry.problem)
                summary = {"model_id": entry.model_id, "damaged": entry.problem}
                models.append(
                    pb.ModelSummary(model_id=entry.model_id, summary_json=json.dumps(summary))
                )
                continue
            summary = {**_summary(entry.shard), "peer_shard": at_peer.get(entry.model_id, "")}
            models.append(
                pb.ModelSummary(
                    model_id=entry.model_id,
                    created_at=str(entry.shard.get("created_at", "")),
                    summary_json=json.dumps(summary),
                )
            )
        return pb.ListModelsResponse(models=models)

    def Report(self, request: pb.ReportRequest, context: grpc.ServicerContext) -> pb.ReportResponse:
        self._authorize(context)
        path = self.node.report(request.model_id, _absolute(request.out_dir, "out_dir"))
        return pb.ReportResponse(path=str(path))

    def ScoresReport(
        self, request: pb.ScoresReportRequest, context: grpc.ServicerContext
    ) -> pb.ScoresReportResponse:
        self._authorize(context)
        path = self.node.scores_report(
            _absolute(request.scores_path, "scores_path"), _absolute(request.out_dir, "out_dir")
        )
        return pb.ScoresReportResponse(path=str(path))

    # ---- models ----------------------------------------------------------------------------------
    def GetModel(
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.GetModelResponse:
        self._authorize(context)
        meta = self.node.model(request.model_id)
        return pb.GetModelResponse(
            model=pb.ModelSummary(
                model_id=request.model_id,
                created_at=meta.get("created_at", ""),
                summary_json=json.dumps(_summary(meta)),
            )
        )

    def RemoveModel(
        self, request: pb.RemoveModelRequest, context: grpc.ServicerContext
    ) -> pb.RemoveModelResponse:
        self._authorize(context)
        peer_deleted, peer_error, had_none = self.node.delete_model(
            request.model_id, local_only=request.local_only
        )
        return pb.RemoveModelResponse(
            peer_deleted=peer_deleted, peer_error=peer_error, peer_had_none=had_none
        )

    # ---- jobs ------------------------------------------------------------------------------------
    def SubmitTrain(
        self, request: pb.SubmitTrainRequest, context: grpc.ServicerContext
    ) -> pb.SubmitTrainResponse:
        self._authorize(context)
        job_path = request.job_path or "job.toml"
        # A bad job file fails the call itself; a resume reads the job's own file.
        record = self.node.submit_train(
            request.job_toml, job_path, request.resume_job_id, summarize=_summary
        )
        return pb.SubmitTrainResponse(job=_job(record))

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        self._authorize(context)
        return pb.ListJobsResponse(jobs=[_job(r) for r in self.node.jobs.records()])

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.GetJobResponse:
        self._authorize(context)
        return pb.GetJobResponse(job=_job(self.node.jobs.get(request.job_id)))

    def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelJobResponse:
        self._authorize(context)
        return pb.CancelJobResponse(job=_job(self.node.cancel_job(request.job_id)))

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchJobResponse]:
        self._authorize(context)
        for item in self.node.jobs.watch(request.job_id, is_active=context.is_active):
            if isinstance(item, JobRecord):
                yield pb.WatchJobResponse(finished=_job(item))
            else:
                yield pb.WatchJobResponse(progress=_progress(item))

    def JobLogs(
        self, request: pb.JobLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobLogsResponse]:
        self._authorize(context)
        for lines in self.node.jobs.logs(
            request.job_id, follow=request.follow, is_active=context.is_active
        ):
            yield pb.JobLogsResponse(lines=lines)


def _job(record: JobRecord) -> pb.Job:
    return pb.Job(record_json=json.dumps(record.to_dict(), allow_nan=True))


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of A's model metadata the CLI prints (no curves)."""
    keys = (
        "model_id",
        "created_at",
        "dataset",
        "partner",
        "metrics",
        "loss_history",
        "timings",
        "rows",
        "epochs_completed",
        "stopped",
        "notes",
        "calibration",
        "job",
    )
    return {key: meta[key] for key in keys if key in meta}


def add_to_server(servicer: ControlServicer, server: grpc.Server) -> None:
    control_pb2_grpc.add_ControlServiceServicer_to_server(servicer, server)
