"""A's node: its config, its data, its models, and the channel to B. The control servicer calls it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedlearn.checkpoint import MAX_JOBS, CheckpointStore
from fedlearn.config_a import NodeAConfig
from fedlearn.crypto.executor import Executor, make_executor
from fedlearn.data import describe_ids
from fedlearn.errors import ConfigError, DataError, FedlearnError, JobCancelled, NotFound
from fedlearn.job import JobSpec, parse_job
from fedlearn.jobs import JobRecord, JobRunner, JobStore, Turns, new_job_id
from fedlearn.progress import ProgressCallback, ProgressEvent, no_progress
from fedlearn.protocol import messages as m
from fedlearn.store import ModelStore
from fedlearn.tables import TableCache
from fedlearn.transport import build_channel
from party_a.align import Alignment, close_quietly, open_and_align
from party_a.peer_client import GrpcPeer
from party_a.train import train

log = logging.getLogger(__name__)
#: A job's file, kept in its checkpoint folder for a resume.
JOB_FILE = "job.toml"


def _why_not_resumable(record: JobRecord) -> str:
    """Why a job whose checkpoints are gone cannot be resumed, and what to do instead."""
    afresh = f" (fedlearn train --job {record.job_path})" if record.job_path else ""
    if record.state == "succeeded":
        return f"it succeeded: its model is {record.model_id}"
    if record.state == "cancelled":
        return f"it was cancelled, and a cancelled job keeps no checkpoint; start it afresh{afresh}"
    return (
        "its job file is not kept (checkpoints are removed when a model is saved, after 7 days, "
        f"and beyond the newest {MAX_JOBS} jobs' folders); start it afresh{afresh}"
    )


class NodeA:
    def __init__(self, config: NodeAConfig) -> None:
        self.config = config
        self.store = ModelStore(config.model_dir, bad_id_error=ConfigError)
        self.store.sweep()
        self.tables = TableCache(config.name)
        self.executor: Executor = make_executor(
            config.workers, config.executor, ray_address=config.ray_address
        )
        # A's obfuscator pool: filled by the Ray actors (which keep the DJN tables) with Ray, else
        # by a helper process on a core this node is not using.
        self.background = "executor" if self.executor.remote else "process"
        self.channel = build_channel(
            config.peer_address,
            config.transport,
            server_name=None if config.transport.insecure else config.peer_name,
            source=config.source.name,
        )
        self.peer = GrpcPeer(
            self.channel,
            peer_name=config.peer_name,
            address=config.peer_address,
            deadline_s=config.transport.deadline_s,
        )
        # Jobs share the machine's cores with the crypto pool: one heavy job at a time.
        # One job, alignment or scoring at a time, in arrival order; work waiting its turn
        # reports phase "queued", and a cancel, a client that went away or the node stopping
        # ends it at once (fedlearn.jobs.Turns).
        self.turns = Turns()
        # Training jobs and their records (state, phases, timings, errors) in <model_dir>/.jobs.
        self.jobs = JobRunner(JobStore(Path(config.model_dir) / ".jobs"))
        # Each job's job file and last epochs, for `fedlearn train --resume` (fedlearn.checkpoint).
        self.checkpoints = CheckpointStore(Path(config.model_dir) / ".checkpoints")
        self.checkpoints.sweep()

    def close(self) -> None:
        """Stop running jobs at their next batch (they end "interrupted", resumable), close the
        sessions still open at B, then the channel and the pool."""
        left = self.jobs.interrupt_all()
        if left:
            log.warning("%d job(s) did not stop within 60 s; closing their sessions at B", left)
        closed = self.peer.close_open_sessions()
        if closed:
            log.info("closed %d open session(s) at %s", closed, self.config.peer_name)
        self.channel.close()
        self.executor.close()

    def dataset(self, name: str) -> Any:
        spec = self.config.datasets.get(name)
        if spec is None:
            raise NotFound(
                f"{self.config.source.name} has no dataset {name!r}; it has: "
                f"{', '.join(sorted(self.config.datasets))}"
            )
        return spec

    def align(
        self, dataset: str, peer_dataset: str, progress: ProgressCallback = no_progress
    ) -> Alignment:
        spec = self.dataset(dataset)
        table = self.tables.get(spec)
        log.info(
            "align: dataset %s with %s's %s",
            dataset,
            self.config.peer_name,
            peer_dataset or dataset,
        )
        with self.turns.turn(progress):
            progress(ProgressEvent("alignment", message="private set intersection"))
            alignment = open_and_align(
                self.peer,
                m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset=peer_dataset or dataset),
                [str(i) for i in table.ids],
                workers=self.config.workers,
                executor=self.executor,
                progress=progress,
            )
            close_quietly(self.peer, alignment.session.session_id)
        log.info(
            "align: %d here, %d at %s, %d in common (%.1f s)",
            alignment.own_size,
            alignment.peer_size,
            self.config.peer_name,
            len(alignment.own_rows),
            alignment.seconds,
        )
        if not len(alignment.own_rows):
            log.warning(
                "align: no IDs in common with %s: %s",
                self.config.peer_name,
                describe_ids(table.ids, "A's IDs"),
            )
        return alignment

    def submit_train(
        self,
        job_toml: str,
        job_path: str,
        resume_job_id: str = "",
        *,
        summarize: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    ) -> JobRecord:
        """Start a training job (or resume ``resume_job_id``, from its own job file) as a job.

        A new job's file is kept beside its checkpoints, so a resume trains the same job. Raises
        ``ConfigError`` for a bad job file, ``NotFound`` for an unknown job and ``DataError`` for
        a job that cannot be resumed (it succeeded, was cancelled, or its job file is gone).
        """
        if resume_job_id:
            record = self.jobs.get(resume_job_id)  # NotFound for an unknown job
            job_id = record.job_id
            job_toml = self.checkpoints.read_file(job_id, JOB_FILE) or ""
            if not job_toml:
                raise DataError(f"job {job_id} cannot be resumed: {_why_not_resumable(record)}")
            job_path = record.job_path
        else:
            job_id = new_job_id()
        spec = parse_job(job_toml, job_path)
        self.dataset(spec.dataset)  # an unknown dataset is refused now, not after the job queued

        def work(progress: ProgressCallback) -> tuple[str, dict[str, Any]]:
            try:
                meta = self.train(spec, progress, job_id=job_id, resume=bool(resume_job_id))
            except JobCancelled:
                self.checkpoints.remove(job_id)  # a cancelled job is never resumed
                raise
            return meta["model_id"], summarize(meta)

        if resume_job_id:
            return self.jobs.resume(job_id, work)
        self.checkpoints.write_file(job_id, JOB_FILE, job_toml)
        return self.jobs.submit(
            "train", work, dataset=spec.dataset, job_path=job_path, job_id=job_id
        )

    def train(
        self, job: JobSpec, progress: ProgressCallback, *, job_id: str = "", resume: bool = False
    ) -> dict[str, Any]:
        spec = self.dataset(job.dataset)
        label = job.label_column or spec.label_column
        if not label:
            raise ConfigError(
                f"{job.source}: [data] label_column is not set, and dataset {spec.name!r} "
                f"in {self.config.source.name} names none"
            )
        table = self.tables.get(spec, label_column=label)
        with self.turns.turn(progress):
            return train(
                self.peer,
                table=table,
                spec=spec,
                job=job,
                own_name=self.config.name,
                store=self.store,
                executor=self.executor,
                workers=self.config.workers,
                background=self.background,
                progress=progress,
                job_id=job_id,
                checkpoints=self.checkpoints if job_id else None,
                resume=resume,
            )

    def cancel_job(self, job_id: str) -> JobRecord:
        """Cancel a running or queued job (it stops at its next batch, or before it starts). An
        interrupted or failed job the operator gives up on is discarded: "cancelled", its
        checkpoints at A removed (B's go by B's own bounds, docs/operations.md). ``DataError``
        for a job that succeeded or was cancelled."""
        record = self.jobs.cancel(job_id)
        if record.finished:
            record = self.jobs.discard(job_id)
            self.checkpoints.remove(job_id)
        return record

    def score(
        self, model_id: str, input_path: Path, output_path: Path, progress: ProgressCallback
    ) -> Any:
        from party_a.score import score

        model = self.model(model_id)
        log.info("score: model %s, input %s", model_id, input_path.name)
        result = score(
            self.peer,
            model=model,
            input_path=input_path,
            output_path=output_path,
            expected_partner=self.config.peer_name,
            workers=self.config.workers,
            executor=self.executor,
            progress=progress,
            turn=self.turns.turn,
        )
        log.info(
            "score: %d users, %d known to %s, written to %s (%.1f s)",
            result.rows,
            result.matched,
            self.config.peer_name,
            output_path.name,
            result.seconds,
        )
        return result

    def delete_model(self, model_id: str, *, local_only: bool = False) -> tuple[bool, str, bool]:
        """Ask B to delete its shard, then delete A's (NotFound if A has none).

        Returns (B confirmed, why B was not asked, B held none). B first: when B cannot be
        reached or refuses, nothing is deleted (an error says so), so no shard is left at B that
        no command reaches. ``local_only`` deletes A's copy without asking B (a partner gone for
        good); B's shard then stays with B's operator.
        """
        if not self.store.path(model_id).exists():  # a damaged model can be deleted too
            raise NotFound(f"no model {model_id!r}; `fedlearn models` lists this node's models")
        peer = self.config.peer_name
        had_none = False
        if not local_only:
            try:
                self.peer.delete_model(m.DeleteModelRequest(model_id))
            except NotFound:
                log.info("model %s: %s had no shard of it", model_id, peer)
                had_none = True
            except FedlearnError as exc:
                raise type(exc)(
                    f"{exc}; nothing was deleted. Retry when {peer} is back, or "
                    f"`fedlearn models delete {model_id} --local-only` deletes A's copy only "
                    f"({peer}'s shard then stays until its operator removes it)"
                ) from None
        self.store.delete(model_id)
        if local_only:
            log.info("model %s deleted at A only; %s was not asked", model_id, peer)
            return False, f"{peer} was not asked (--local-only): its shard stays there", False
        log.info("model %s deleted at A and at %s", model_id, peer)
        return True, "", had_none

    def peer_shards(self, model_ids: list[str]) -> dict[str, str]:
        """Whether B holds an intact shard of each model: "intact", "missing" (B deleted it, or
        never committed it), "damaged: <reason>", or for all "unknown: <why>" when B cannot be
        asked. B answers for this partner's models only and names no path."""
        if not model_ids:
            return {}
        try:
            reply = self.peer.check_models(m.CheckModelsRequest(tuple(model_ids)))
        except FedlearnError as exc:
            return dict.fromkeys(model_ids, f"unknown: {exc}")
        if len(reply.states) != len(model_ids) or len(reply.reasons) != len(model_ids):
            return dict.fromkeys(model_ids, "unknown: party-b's answer does not match the request")
        states = {}
        for model_id, state, reason in zip(model_ids, reply.states, reply.reasons, strict=True):
            if state == m.ShardState.INTACT:
                states[model_id] = "intact"
            elif state == m.ShardState.DAMAGED:
                states[model_id] = f"damaged: {reason[:300]}"
            else:
                states[model_id] = "missing"
        return states

    def report(self, model_id: str, out_dir: Path) -> Path:
        from fedlearn.report import write_report

        path = write_report(self.model(model_id), out_dir)
        log.info("report: model %s written to %s", model_id, path)
        return path

    def model(self, model_id: str) -> dict[str, Any]:
        """A's verified shard of ``model_id``: ConfigError for a bad id, NotFound, DamagedModel."""
        try:
            return self.store.load(model_id)
        except NotFound as exc:
            raise NotFound(f"{exc}; `fedlearn models` lists this node's models") from None

    def _target_of(self, model_id: str) -> str | None:
        """What ``model_id`` predicts, in its job's words; None for a model this node lacks."""
        from fedlearn.report import target_description

        try:
            return target_description(self.model(model_id))
        except FedlearnError:  # another node's model, deleted or damaged: the report goes on
            return None

    def scores_report(self, scores_path: Path, out_dir: Path) -> Path:
        from fedlearn.scores_report import write_scores_report

        path = write_scores_report(scores_path, out_dir, target_of=self._target_of)
        log.info("report: scores %s written to %s", scores_path.name, path)
        return path
