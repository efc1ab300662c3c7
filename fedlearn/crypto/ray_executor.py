"""The heavy kernels on a Ray cluster: one long-lived actor per worker.

``[node] executor = "ray"`` makes a node hand its coarse work (obfuscator chunks, mat-vec blocks,
decryption and packing chunks, PSI chunks) to a :class:`RayExecutor` instead of a local process
pool. Each worker is a Ray *actor*: a process that lives as long as the executor, so what a kernel
caches per process (a key's DJN window tables, ~60 MB at 2048 bits, in
``fedlearn.crypto.paillier``) is built once per actor and reused by every later task, never shipped
with a task. Tasks go to the actors in turn; each carries thousands of values, so Ray's per-task
cost stays a small share of the work (bench/ray_overhead.py measures it).

The kernels are the same module-level functions the process pool runs, on the same items in the
same order, so the results are bit for bit those of the process pool (the random ones, obfuscators
and re-randomisation, are fresh draws either way).

What the workers get: the party's private Paillier factors (for obfuscators and decryption) and its
PSI scalar. A party's Ray cluster must therefore be its own, on machines and a network only it
controls (docs/security.md); the node starts a private local Ray when no address is given.

Ray is an optional dependency: ``pip install 'fedlearn[ray]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fedlearn.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "pip install 'fedlearn[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f'executor = "ray" needs Ray, which is not installed: {INSTALL_HINT} '
            '(or set [node] executor = "process")'
        ) from exc
    return ray


def ray_installed() -> bool:
    """Whether ``import ray`` would succeed (without importing it: the import takes a second)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


class _KernelWorker:
    """The actor: runs one kernel call at a time; its process keeps the kernels' caches."""

    def ready(self) -> int:
        import os

        return os.getpid()

    def run(self, fn: Callable[[Any], Any], item: Any) -> Any:
        return fn(item)


class RayExecutor:
    """``workers`` Ray actors, each reserving ``cpus_per_worker`` CPUs of the cluster.

    Args:
        workers: actors to start (one per core the party gives to its encrypted math).
        address: a running cluster to join (``"ray://head:10001"`` through Ray Client, or
            ``"head:6379"`` from a machine of the cluster); ``None`` starts a private local Ray
            with ``num_cpus = workers`` that stops with this executor. When Ray is already
            initialised in this process (tests), that runtime is used and left running.
        cpus_per_worker: CPUs each actor reserves; below 1 lets more actors than CPUs share a
            small cluster (tests that run both parties in one process).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
        ValueError: ``workers < 1`` or ``cpus_per_worker <= 0``.
    """

    remote = True

    def __init__(
        self, workers: int, *, address: str | None = None, cpus_per_worker: float = 1.0
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be positive, got {cpus_per_worker}")
        ray = import_ray()
        self._ray = ray
        self.workers = workers
        self._owns_runtime = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    # "local": a new private instance even if another Ray runs on this machine
                    # (the other party's node, say); never join a cluster found by chance.
                    ray.init(
                        address="local",
                        num_cpus=workers,
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray"
                raise ConfigError(f"cannot start {where}: {exc}") from exc
            self._owns_runtime = True
        actor_class = ray.remote(_KernelWorker)
        self._actors = [
            actor_class.options(num_cpus=cpus_per_worker).remote() for _ in range(workers)
        ]
        # Wait for every actor: a cluster too small for them fails here, not mid-training.
        try:
            pids = ray.get([actor.ready.remote() for actor in self._actors], timeout=120)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise ConfigError(
                f"the Ray cluster did not start {workers} workers of {cpus_per_worker:g} CPU "
                f"each within 120 s (it has {ray.cluster_resources().get('CPU', 0):g} CPUs): "
                "lower [node] workers or add machines to the cluster"
            ) from None
        log.info("Ray executor: %d actors (pids %s)", workers, pids)
        self._next = 0
        self._in_flight = [0] * workers  # calls submitted and not yet returned, per actor
        self._lock = threading.Lock()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, each call on an actor, in order.

        Each call goes to the actor with the fewest calls in flight (ties: in turn), so work that
        arrives while the obfuscator pool's fill holds some actors goes to the others first, as a
        process pool's free worker would take it. Which actor runs a call never changes its
        result. ``fn`` must be a module-level function importable on the workers. An exception
        raised by ``fn`` is raised here as itself (Ray wraps it; the wrapper is removed).
        """
        if not items:
            return []
        actors = self._actors
        with self._lock:  # calls come from several threads (training, the pool's fill)
            chosen = []
            for _ in items:
                index = min(
                    range(len(actors)),
                    key=lambda i: (self._in_flight[i], (i - self._next) % len(actors)),
                )
                self._in_flight[index] += 1
                self._next = (index + 1) % len(actors)
                chosen.append(index)
            refs = [actors[i].run.remote(fn, item) for i, item in zip(chosen, items, strict=True)]
        try:
            return list(self._ray.get(refs))
        except self._ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, Exception):
                raise error.cause from None
            raise
        finally:
            with self._lock:
                for index in chosen:
                    self._in_flight[index] -= 1

    def close(self) -> None:
        """Stop the actors, and the local Ray if this executor started it."""
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # already gone (the cluster went away): nothing to stop
                log.debug("Ray actor already gone", exc_info=True)
        self._actors = []
        if self._owns_runtime and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
