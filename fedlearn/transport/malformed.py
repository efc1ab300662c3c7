"""One rate-limited log line for malformed requests, instead of gRPC's traceback per request.

gRPC's Python server logs every request it cannot parse ("Exception deserializing message!") with
a full traceback through the ``grpc._common`` logger, then answers INTERNAL "Exception
deserializing request!". A peer sending random bytes could so grow a node's log by ~2 KiB per
request. ``install`` puts a filter on that logger that turns such records into one line without
the traceback, at most one line per ``interval_s`` seconds, saying how many were folded into it.
"""

from __future__ import annotations

import logging
import threading
import time

#: The gRPC logger that reports a request it could not deserialize (grpcio 1.6x-1.8x).
GRPC_LOGGER = "grpc._common"
_MARKER = "Exception deserializing"


class MalformedRequestFilter(logging.Filter):
    """Folds gRPC's deserialization tracebacks into rate-limited one-line records."""

    def __init__(self, interval_s: float = 10.0, clock: object = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._suppressed = 0
        self.total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_MARKER):
            return True
        kind = type(record.exc_info[1]).__name__ if record.exc_info else "unknown error"
        with self._lock:
            self.total += 1
            now = self._clock()  # type: ignore[operator]
            if now - self._last < self.interval_s:
                self._suppressed += 1
                return False
            folded, self._suppressed, self._last = self._suppressed, 0, now
        record.msg = "malformed request refused (cannot be parsed: %s)%s"
        record.args = (kind, f"; {folded} more since the last such line" if folded else "")
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_installed: MalformedRequestFilter | None = None
_install_lock = threading.Lock()


def install(interval_s: float = 10.0) -> MalformedRequestFilter:
    """Put the filter on gRPC's logger once per process; returns it (``total`` counts requests)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = MalformedRequestFilter(interval_s)
            logging.getLogger(GRPC_LOGGER).addFilter(_installed)
        return _installed
