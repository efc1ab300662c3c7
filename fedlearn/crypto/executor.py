"""Where the heavy crypto loops run: in this process, or in a local process pool.

The engine hands an executor *coarse* work: a block of mat-vec columns, a chunk of obfuscators.
Shipping one 512-byte ciphertext to another process costs more than one modular multiplication, so
work items must each carry thousands of multiplications or they are not worth sending.

``Executor`` is the interface a cluster engine will implement later: ``map(fn, items)`` with ``fn``
a picklable module-level function, results in the order of ``items``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and returns the results in order."""

    workers: int

    def map(self, fn: Callable[[Any], R], items: Sequence[Any]) -> list[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Runs everything in the calling thread. The default, and the right choice on one core."""

    workers = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A local pool of ``workers`` processes (started with ``spawn``; they exit with this process).

    Size it to the share of the machine this party may use: two nodes on one 2-core machine should
    each use one worker, i.e. a :class:`SerialExecutor`.
    """

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


def make_executor(workers: int) -> Executor:
    """A :class:`SerialExecutor` for ``workers <= 1``, otherwise a :class:`ProcessExecutor`."""
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
