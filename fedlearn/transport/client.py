"""Client side: channels to the peer node, and calls with deadlines, retries and mapped errors.

Every call made through ``call_unary``, ``call_stream`` or ``stream_responses`` has a deadline, and
every failure comes out as a ``FedlearnError`` (see ``fedlearn.transport.errors.error_from_rpc``).
Only UNAVAILABLE is retried, with exponential backoff, and never after a failed TLS handshake (a
certificate problem does not fix itself) nor once request data has been streamed. Retrying a unary
call means the peer may see it twice, so retried RPCs must be idempotent (or carry a request id).
``peer`` in every signature is a label for messages: "party-b at 127.0.0.1:50052".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedlearn.errors import PeerUnavailable
from fedlearn.transport import tls
from fedlearn.transport.config import TransportConfig
from fedlearn.transport.errors import error_from_rpc, is_tls_failure, status_code_of
from fedlearn.transport.options import channel_options

Metadata = Sequence[tuple[str, str | bytes]]
T = TypeVar("T")

# How long one health probe in wait_ready may take; the overall timeout bounds the loop.
_PROBE_DEADLINE_S = 2.0
_PROBE_PAUSE_S = 0.1


def peer_label(name: str, address: str) -> str:
    """The ``peer`` label used in messages: ``"party-b at 127.0.0.1:50052"``."""
    return f"{name} at {address}"


def build_channel(
    address: str, cfg: TransportConfig, *, server_name: str | None, source: str = ""
) -> grpc.Channel:
    """A channel to the peer at ``address``: mutual TLS, or plaintext when ``cfg.insecure``.

    ``server_name`` is the name the peer's certificate must carry (e.g. ``"party-b"``); None checks
    the host part of ``address`` instead. Raises ``ConfigError`` for a bad config (named after
    ``source``). The channel connects lazily; use ``wait_ready`` to fail fast at start-up.
    """
    cfg.validate(address, source=source)
    if cfg.insecure:
        return grpc.insecure_channel(address, options=channel_options(server_name=None))
    return grpc.secure_channel(
        address,
        tls.channel_credentials(cfg, server_name),
        options=channel_options(server_name=server_name),
    )


def wait_ready(channel: grpc.Channel, *, timeout_s: float, peer: str, service: str = "") -> None:
    """Return once the peer's health service reports ``service`` SERVING; else raise.

    Probes the standard health service with short fail-fast calls until ``timeout_s`` seconds have
    passed, so a peer that is still starting is waited for, while a TLS failure is raised at once.
    A peer without a health service counts as ready once it answers at all. Raises
    ``PeerUnavailable`` naming the last reason.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    end = time.monotonic() + timeout_s
    reason = "no answer yet"
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise PeerUnavailable(
                f"{peer} is not ready after {timeout_s:g} s ({reason}). Is the node running? "
                "Check [peer] address"
            )
        try:
            response = stub.Check(request, timeout=min(_PROBE_DEADLINE_S, remaining))
        except grpc.RpcError as exc:
            code = status_code_of(exc)
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return
            if is_tls_failure(exc) or code not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise error_from_rpc(exc, peer=peer) from exc
            reason = str(error_from_rpc(exc, peer=peer))
        else:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            reason = f"health status {status}"
        time.sleep(min(_PROBE_PAUSE_S, max(0.0, end - time.monotonic())))


def call_unary(
    method: grpc.UnaryUnaryMultiCallable,
    request: Any,
    *,
    deadline_s: float,
    peer: str,
    retries: int = 3,
    backoff_s: float = 0.2,
    metadata: Metadata | None = None,
    own_node: bool = False,
) -> Any:
    """Call a unary-unary ``method`` (a stub attribute) and return its response.

    ``deadline_s`` bounds the whole call, retries included. UNAVAILABLE is retried up to ``retries``
    times after ``backoff_s``, ``2 * backoff_s``, ... seconds, unless the TLS handshake failed or
    the deadline would pass. Raises the ``FedlearnError`` from ``error_from_rpc`` (``own_node``:
    see there).
    """
    return _with_retries(
        lambda timeout: method(request, timeout=timeout, metadata=metadata),
        deadline_s=deadline_s,
        peer=peer,
        retries=retries,
        backoff_s=backoff_s,
        own_node=own_node,
    )


def call_stream(
    method: grpc.StreamUnaryMultiCallable | grpc.StreamStreamMultiCallable,
    request_iterator_factory: Callable[[], Iterable[Any]],
    *,
    deadline_s: float,
    peer: str,
    retries: int = 3,
    backoff_s: float = 0.2,
    metadata: Metadata | None = None,
) -> Any:
    """Call a client-streaming ``method``: the response (stream-unary) or all responses as a list
    (stream-stream).

    ``request_iterator_factory`` makes a fresh request iterator per attempt. A failed attempt is
    retried (UNAVAILABLE only, as in ``call_unary``) only while no request message has been taken
    from the iterator and no response received: once data was sent, the peer may have acted on it.
    """
    sent = [0]

    def counted(requests: Iterable[Any]) -> Iterator[Any]:
        for request in requests:
            sent[0] += 1
            yield request

    def attempt(timeout: float) -> Any:
        sent[0] = 0
        result = method(counted(request_iterator_factory()), timeout=timeout, metadata=metadata)
        if isinstance(result, grpc.Call) and isinstance(result, Iterator):
            responses = []
            for response in result:  # stream-stream
                responses.append(response)
                sent[0] += 1  # a response received also makes the call not retryable
            return responses
        return result

    return _with_retries(
        attempt,
        deadline_s=deadline_s,
        peer=peer,
        retries=retries,
        backoff_s=backoff_s,
        retryable=lambda: sent[0] == 0,
    )


def stream_responses(
    method: grpc.UnaryStreamMultiCallable | grpc.StreamStreamMultiCallable,
    request: Any,
    *,
    deadline_s: float,
    peer: str,
    metadata: Metadata | None = None,
    own_node: bool = False,
) -> Iterator[Any]:
    """Iterate the responses of a server-streaming ``method`` (e.g. training progress) as they come.

    ``request`` is the request (unary-stream) or a request iterator (stream-stream). Not retried.
    Errors, also those that arrive mid-stream, are raised as ``FedlearnError``; closing the
    iterator early cancels the call.
    """
    call = method(request, timeout=deadline_s, metadata=metadata)
    try:
        yield from call
    except grpc.RpcError as exc:
        raise error_from_rpc(exc, peer=peer, deadline_s=deadline_s, own_node=own_node) from exc
    finally:
        if isinstance(call, grpc.Future):
            call.cancel()  # a no-op once the call has finished


def _with_retries(
    attempt: Callable[[float], T],
    *,
    deadline_s: float,
    peer: str,
    retries: int,
    backoff_s: float,
    retryable: Callable[[], bool] = lambda: True,
    own_node: bool = False,
) -> T:
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be positive, got {deadline_s!r}")
    end = time.monotonic() + deadline_s
    for attempt_no in range(retries + 1):
        try:
            return attempt(max(end - time.monotonic(), 0.001))
        except grpc.RpcError as exc:
            pause = backoff_s * (2**attempt_no)
            code = status_code_of(exc)
            if (
                code is not grpc.StatusCode.UNAVAILABLE
                or is_tls_failure(exc)
                or attempt_no == retries
                or not retryable()
                or time.monotonic() + pause >= end
            ):
                raise error_from_rpc(
                    exc, peer=peer, deadline_s=deadline_s, own_node=own_node
                ) from exc
            time.sleep(pause)
    raise AssertionError("unreachable")  # the loop returns or raises
