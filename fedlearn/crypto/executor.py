"""Where the heavy crypto loops run: in this process, in a local process pool, or on Ray.

The engine hands an executor *coarse* work: a block of mat-vec columns or a slab of its rows, a
chunk of obfuscators, of decryptions, of packed ciphertexts, of PSI IDs. Shipping one 512-byte
ciphertext to another process costs more than one modular multiplication, so work items must each
carry thousands of multiplications or they are not worth sending.

``Executor`` is the interface: ``map(fn, items)`` with ``fn`` a picklable module-level function,
results in the order of ``items``. Three implementations: :class:`SerialExecutor`,
:class:`ProcessExecutor` and ``ray_executor.RayExecutor`` (``[node] executor = "ray"``). How work
is cut into items depends only on ``workers``, never on the implementation, so every executor with
the same ``workers`` computes the same results, bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from fedlearn.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


#: ``[node] executor`` values.
EXECUTORS = ("process", "ray")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and returns the results in order.

    ``workers`` is how many items run at once. ``remote`` is True when every item runs in a
    worker process even if there is only one (Ray's actors): an obfuscator pool is then filled
    there (``OwnKeyEngine(background="executor")``) rather than in a helper process of its own.
    """

    workers: int
    remote: bool

    def map(self, fn: Callable[[Any], R], items: Sequence[Any]) -> list[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Runs everything in the calling thread. The default, and the right choice on one core."""

    workers = 1
    remote = False

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A local pool of ``workers`` processes (started with ``spawn``; they exit with this process).

    Size it to the share of the machine this party may use: two nodes on one 2-core machine should
    each use one worker, i.e. a :class:`SerialExecutor`.
    """

    remote = False

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        # "spawn", not "fork": a node runs gRPC threads, and forking such a process can deadlock
        # the child. The pool lives as long as the node, so the start-up cost is paid once.
        self._pool = local_process_pool(workers, "spawn")

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_process_pool(workers: int, start_method: str) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies (even by SIGKILL).

    A worker blocked on its task queue never sees the parent go (it holds a copy of the queue's
    pipe), so each worker watches its parent's pid instead and leaves when it changes.
    """
    context = multiprocessing.get_context(start_method)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: a daemon thread ends the worker once ``parent_pid`` is gone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def make_executor(
    workers: int, kind: str = "process", *, ray_address: str | None = None
) -> Executor:
    """The executor a node's ``[node] executor``, ``workers`` and ``ray_address`` ask for.

    ``"process"``: a :class:`SerialExecutor` for ``workers <= 1``, otherwise a
    :class:`ProcessExecutor`. ``"ray"``: ``workers`` Ray actors, on the cluster at ``ray_address``
    or on a private local Ray with ``num_cpus = workers`` (``ray_executor.RayExecutor``).

    Raises:
        ConfigError: an unknown kind, or ``"ray"`` without Ray installed or reachable.
    """
    if kind == "ray":
        from fedlearn.crypto.ray_executor import RayExecutor

        return RayExecutor(workers, address=ray_address)
    if kind != "process":
        raise ConfigError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if workers <= 1:
        return SerialExecutor()
    return ProcessExecutor(workers)


def split_evenly(count: int, parts: int) -> list[range]:
    """``range(count)`` cut into at most ``parts`` contiguous, non-empty, near-equal ranges."""
    parts = max(1, min(parts, count))
    base, extra = divmod(count, parts)
    ranges = []
    start = 0
    for index in range(parts):
        stop = start + base + (1 if index < extra else 0)
        if stop > start:
            ranges.append(range(start, stop))
        start = stop
    return ranges
