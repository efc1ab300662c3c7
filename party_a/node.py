"""A's node: its config, its data, its models, and the channel to B. The control servicer calls it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from fedlearn.config_a import NodeAConfig
from fedlearn.crypto.executor import Executor, make_executor
from fedlearn.errors import ConfigError, NotFound
from fedlearn.job import JobSpec
from fedlearn.progress import ProgressCallback
from fedlearn.protocol import messages as m
from fedlearn.store import ModelStore
from fedlearn.tables import TableCache
from fedlearn.transport import build_channel
from party_a.align import Alignment, close_quietly, open_and_align
from party_a.peer_client import GrpcPeer
from party_a.train import train

log = logging.getLogger(__name__)


class NodeA:
    def __init__(self, config: NodeAConfig) -> None:
        self.config = config
        self.store = ModelStore(config.model_dir)
        self.tables = TableCache(config.name)
        self.executor: Executor = make_executor(config.workers)
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
        self.job_lock = threading.Lock()

    def close(self) -> None:
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

    def align(self, dataset: str, peer_dataset: str) -> Alignment:
        spec = self.dataset(dataset)
        table = self.tables.get(spec)
        with self.job_lock:
            alignment = open_and_align(
                self.peer,
                m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset=peer_dataset or dataset),
                [str(i) for i in table.ids],
                workers=self.config.workers,
            )
            close_quietly(self.peer, alignment.session.session_id)
        return alignment

    def train(self, job: JobSpec, progress: ProgressCallback) -> dict[str, Any]:
        spec = self.dataset(job.dataset)
        label = job.label_column or spec.label_column
        if not label:
            raise ConfigError(
                f"{job.source}: [data] label_column is not set, and dataset {spec.name!r} "
                f"in {self.config.source.name} names none"
            )
        table = self.tables.get(spec, label_column=label)
        with self.job_lock:
            return train(
                self.peer,
                table=table,
                spec=spec,
                job=job,
                own_name=self.config.name,
                store=self.store,
                executor=self.executor,
                workers=self.config.workers,
                background="process",  # fill A's obfuscator pool on a core this node is not using
                progress=progress,
            )

    def score(
        self, model_id: str, input_path: Path, output_path: Path, progress: ProgressCallback
    ) -> Any:
        from party_a.score import score

        model = self.store.load(model_id)
        with self.job_lock:
            return score(
                self.peer,
                model=model,
                input_path=input_path,
                output_path=output_path,
                expected_partner=self.config.peer_name,
                workers=self.config.workers,
                progress=progress,
            )

    def report(self, model_id: str, out_dir: Path) -> Path:
        from fedlearn.report import write_report

        return write_report(self.store.load(model_id), out_dir)
