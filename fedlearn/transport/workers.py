"""The thread pool that runs a node's gRPC handlers, on daemon threads.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined when the interpreter
exits, so one handler stuck in a long encrypted loop keeps a node alive after SIGTERM long past the
grace period, however the server was stopped. Here the grace period is the bound: when it is over,
gRPC has cancelled the remaining calls, ``serve_until_signal`` returns, and a handler that still
has not noticed (``context.is_active()``) is abandoned when the process exits. Handlers therefore
write files atomically (temporary file + ``os.replace``), as ``fedlearn`` does everywhere.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple["futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class HandlerPool(futures.Executor):
    """At most ``max_workers`` daemon threads, started on demand; ``busy`` counts running work."""

    def __init__(self, max_workers: int, *, name: str = "grpc-handler") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self._max_workers = max_workers
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._busy = 0
        self._shut_down = False

    @property
    def busy(self) -> int:
        """How many submitted callables are running right now."""
        with self._lock:
            return self._busy

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        future: futures.Future[T] = futures.Future()
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot run new calls: the handler pool is shut down")
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut_down = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._busy += 1
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
                finally:
                    with self._lock:
                        self._busy -= 1
            del future, fn, args, kwargs
            self._idle.release()
