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
    """A local pool of ``workers`` processes (``fork`` where available, so start-up is cheap).

    Size it to the share of the machine this party may use: two nodes on one 2-core machine should
    each use one worker, i.e. a :class:`SerialExecutor`.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)

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
