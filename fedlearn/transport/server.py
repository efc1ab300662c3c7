"""Build a gRPC server for a node, report health, and shut down gracefully on a signal.

Lifecycle, as in gRPC's own examples::

    server, port = build_server("127.0.0.1:0", cfg, source="b.toml")   # bound, not started
    add_PeerServicer_to_server(servicer, server)
    serve_until_signal(server, grace_s=5.0)       # start, SERVING, block; SIGTERM -> graceful stop

Every server built here has the standard health service (``grpc.health.v1.Health``) and the error
mapping interceptor (``fedlearn.transport.errors``) in front of every handler; requests gRPC cannot
parse are logged as one rate-limited line (``fedlearn.transport.malformed``).
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedlearn.errors import ConfigError
from fedlearn.transport import malformed, tls
from fedlearn.transport.config import TransportConfig
from fedlearn.transport.errors import ErrorMappingInterceptor
from fedlearn.transport.options import server_options
from fedlearn.transport.workers import HandlerPool

log = logging.getLogger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: Service name "" is the health of the server as a whole.
OVERALL = ""


class HealthState:
    """The health service's view of this server: SERVING or NOT_SERVING per service name.

    Services start NOT_SERVING. ``set_serving()`` / ``set_not_serving()`` without names change every
    known service (the overall "" included); with names they change those and remember them.
    ``shutting_down()`` makes every service NOT_SERVING for good, as the first step of a shutdown.
    """

    def __init__(self) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._services: set[str] = {OVERALL}
        self._lock = threading.Lock()
        self.servicer.set(OVERALL, _NOT_SERVING)

    @property
    def services(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._services)

    def set_serving(self, *services: str) -> None:
        self._set(services, _SERVING)

    def set_not_serving(self, *services: str) -> None:
        self._set(services, _NOT_SERVING)

    def shutting_down(self) -> None:
        self.servicer.enter_graceful_shutdown()

    def _set(self, services: Sequence[str], status: int) -> None:
        with self._lock:
            self._services.update(services)
            targets = list(services) if services else sorted(self._services)
        for name in targets:
            self.servicer.set(name, status)


@dataclass(frozen=True)
class _ServerParts:
    health: HealthState
    pool: HandlerPool


# What build_server made alongside each server; weak so a dropped server is not kept alive.
_PARTS: weakref.WeakKeyDictionary[grpc.Server, _ServerParts] = weakref.WeakKeyDictionary()


def _parts(server: grpc.Server) -> _ServerParts:
    try:
        return _PARTS[server]
    except KeyError:
        raise ValueError("this server was not made by build_server") from None


def health_state(server: grpc.Server) -> HealthState:
    """The ``HealthState`` of a server made by ``build_server``."""
    return _parts(server).health


def build_server(
    address: str,
    cfg: TransportConfig,
    *,
    max_workers: int = 8,
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    source: str = "",
    map_errors: bool = True,
    peer_facing: bool = False,
) -> tuple[grpc.Server, int]:
    """A server bound to ``address`` (port 0 picks a free port), not started; and the bound port.

    Mutual TLS unless ``cfg.insecure`` (loopback only). The health service is added, every service
    NOT_SERVING until ``start_server``/``serve_until_signal``. ``interceptors`` run inside the error
    mapping, so what they raise is mapped too. ``max_workers`` bounds concurrent calls (each
    streaming call holds a worker for its whole duration). Raises ``ConfigError`` for a bad config
    (named after ``source``) or an address that cannot be bound. ``peer_facing``: the callers are
    the partner's node, so error messages are scrubbed (``fedlearn.transport.errors``).
    """
    cfg.validate(address, source=source)
    if max_workers < 1:
        raise ConfigError(f"max_workers must be at least 1, got {max_workers}")
    if _port_in_use(address):
        raise _bind_error(address, source)  # before gRPC, which would log a raw line about it
    mapping = ErrorMappingInterceptor(peer_facing=peer_facing)
    chain = [mapping, *interceptors] if map_errors else list(interceptors)
    malformed.install()  # one rate-limited line per malformed request, not a traceback each
    pool = HandlerPool(max_workers)
    server = grpc.server(
        pool,
        interceptors=chain,
        options=server_options(),
    )
    state = HealthState()
    health_pb2_grpc.add_HealthServicer_to_server(state.servicer, server)
    try:
        if cfg.insecure:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.server_credentials(cfg))
    except RuntimeError as exc:  # grpcio >= 1.51 raises; older versions returned 0
        raise _bind_error(address, source) from exc
    if port == 0:
        raise _bind_error(address, source)
    _PARTS[server] = _ServerParts(state, pool)
    return server, port


def _port_in_use(address: str) -> bool:
    """True when another socket already listens on ``address`` ("host:port"; port 0 never is)."""
    host_text, _, port_text = address.rpartition(":")
    host = host_text.strip("[]") or None
    if not port_text.isdigit() or int(port_text) == 0:
        return False
    try:
        infos = socket.getaddrinfo(
            host, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return False  # not resolvable: gRPC's own bind reports it
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _bind_error(address: str, source: str) -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(
        f"{where}cannot listen on {address}: the port is taken by another process or the host is "
        "not an address of this machine; choose another listen address (port 0 picks a free port)"
    )


def start_server(server: grpc.Server) -> None:
    """Start ``server`` and report every known service SERVING."""
    server.start()
    health_state(server).set_serving()


def stop_server(server: grpc.Server, *, grace_s: float) -> None:
    """Report NOT_SERVING, refuse new calls, give running calls up to ``grace_s`` s to finish.

    Calls still running after the grace period are cancelled; a handler that ignores the
    cancellation is logged and abandoned (its daemon thread ends with the process).
    """
    parts = _parts(server)
    parts.health.shutting_down()
    server.stop(grace_s).wait()
    parts.pool.shutdown(wait=False, cancel_futures=True)
    if parts.pool.busy:
        log.warning(
            "%d handler(s) still running %.1f s after shutdown began; their calls were cancelled "
            "and the handlers are abandoned (long loops should check context.is_active())",
            parts.pool.busy,
            grace_s,
        )


def serve_until_signal(
    server: grpc.Server,
    *,
    grace_s: float = 5.0,
    on_stop: Callable[[], None] | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals | None:
    """Start ``server``, block until SIGTERM or SIGINT, then stop gracefully; return the signal.

    On the signal: health goes NOT_SERVING first, new calls are refused, running calls get
    ``grace_s`` seconds to finish (see ``stop_server``), then ``on_stop`` runs. A second
    signal during the grace period cancels the running calls at once. Returns None when the server
    stopped by other means. Must run in the main thread (Python delivers signals only there); the
    previous signal handlers are restored before returning. The caller picks the exit code (0 for
    SIGTERM; the CLI may use 130 for SIGINT).
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve_until_signal must run in the main thread to receive signals")
    received: list[signal.Signals] = []
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))
        if len(received) > 1:
            log.warning("second %s: cancelling running calls", signal.Signals(signum).name)
            server.stop(None)
        wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        start_server(server)
        log.info("serving; stop with SIGTERM or SIGINT")
        stopped = threading.Thread(target=_set_when_terminated, args=(server, wake), daemon=True)
        stopped.start()
        while not wake.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
        if received:
            log.info("%s: stopping, grace period %.1f s", received[0].name, grace_s)
            stop_server(server, grace_s=grace_s)
        if on_stop is not None:
            on_stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None


def _set_when_terminated(server: grpc.Server, event: threading.Event) -> None:
    server.wait_for_termination()
    event.set()
