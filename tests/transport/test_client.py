"""Client calls over real gRPC: deadlines, what is retried and what is not, streams, readiness."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from fedlearn.errors import InvalidPeerData, PeerUnavailable, PolicyViolation
from fedlearn.protocol.chunking import slices
from fedlearn.transport import (
    CHUNK_BYTES,
    MAX_MESSAGE_BYTES,
    TransportConfig,
    build_channel,
    call_stream,
    call_unary,
    stream_responses,
    wait_ready,
)

from .support import method

INSECURE = TransportConfig(insecure=True)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Flaky:
    """Handlers that fail with a chosen code the first ``failures`` times, counting calls."""

    def __init__(self, code: grpc.StatusCode, failures: int) -> None:
        self.code, self.failures, self.calls = code, failures, 0
        self.lock = threading.Lock()

    def _fail_now(self) -> bool:
        with self.lock:
            self.calls += 1
            return self.calls <= self.failures

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self._fail_now():
            context.abort(self.code, f"failure {self.calls}")
        return b"ok:" + request

    def stream_unary(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        first = next(requests)  # the client has sent data by now
        if self._fail_now():
            context.abort(self.code, f"failure {self.calls}")
        return first + b"".join(requests)

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "StreamUnary": grpc.stream_unary_rpc_method_handler(self.stream_unary),
        }


def test_call_to_a_closed_port_fails_fast() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    channel = build_channel(address, INSECURE, server_name=None)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable) as info:
        call_unary(method(channel, "Unary"), b"x", deadline_s=30, peer=f"party-b at {address}")
    assert time.monotonic() - started < 3
    assert str(info.value).startswith(f"party-b at {address} is not reachable: ")
    assert "Is the node running, and is the address in the config right?" in str(info.value)


def test_unavailable_is_retried_with_backoff(serve) -> None:
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=2)
    channel = serve(INSECURE, flaky.handlers()).channel(INSECURE, server_name=None)
    started = time.monotonic()
    answer = call_unary(method(channel, "Unary"), b"x", deadline_s=5, peer="p", backoff_s=0.1)
    assert answer == b"ok:x" and flaky.calls == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # two pauses: backoff_s, then 2 * backoff_s


def test_retries_are_bounded(serve) -> None:
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=100)
    channel = serve(INSECURE, flaky.handlers()).channel(INSECURE, server_name=None)
    with pytest.raises(PeerUnavailable, match="failure 3"):
        call_unary(method(channel, "Unary"), b"", deadline_s=5, peer="p", retries=2, backoff_s=0.01)
    assert flaky.calls == 3


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, PolicyViolation),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidPeerData),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, PeerUnavailable),
    ],
)
def test_other_codes_are_not_retried(serve, code: grpc.StatusCode, error: type) -> None:
    flaky = Flaky(code, failures=1)
    channel = serve(INSECURE, flaky.handlers()).channel(INSECURE, server_name=None)
    with pytest.raises(error, match="failure 1"):
        call_unary(method(channel, "Unary"), b"", deadline_s=5, peer="p", backoff_s=0.01)
    assert flaky.calls == 1


def test_retries_stop_at_the_overall_deadline(serve) -> None:
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=100)
    channel = serve(INSECURE, flaky.handlers()).channel(INSECURE, server_name=None)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable):
        call_unary(method(channel, "Unary"), b"", deadline_s=0.5, peer="p", retries=10)
    assert time.monotonic() - started < 0.5
    assert flaky.calls == 2  # 0.2 s pause, then 0.4 s would pass the deadline


def test_slow_peer_hits_the_deadline(serve) -> None:
    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(2)
        return b""

    handlers = {"Slow": grpc.unary_unary_rpc_method_handler(slow)}
    channel = serve(INSECURE, handlers).channel(INSECURE, server_name=None)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match=r"party-b did not answer within 0\.3 s"):
        call_unary(method(channel, "Slow"), b"", deadline_s=0.3, peer="party-b")
    assert time.monotonic() - started < 1.5


def test_stream_is_not_retried_once_data_was_sent(serve) -> None:
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=1)
    channel = serve(INSECURE, flaky.handlers()).channel(INSECURE, server_name=None)
    stub = method(channel, "StreamUnary", "stream_unary")
    with pytest.raises(PeerUnavailable, match="failure 1"):
        call_stream(stub, lambda: iter([b"a", b"b"]), deadline_s=5, peer="p", backoff_s=0.01)
    assert flaky.calls == 1
    assert call_stream(stub, lambda: iter([b"a", b"b"]), deadline_s=5, peer="p") == b"ab"


def test_call_stream_collects_stream_stream_responses(serve) -> None:
    def echo(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield request.upper()

    handlers = {"Echo": grpc.stream_stream_rpc_method_handler(echo)}
    channel = serve(INSECURE, handlers).channel(INSECURE, server_name=None)
    stub = method(channel, "Echo", "stream_stream")
    assert call_stream(stub, lambda: iter([b"a", b"b"]), deadline_s=5, peer="p") == [b"A", b"B"]


def test_stream_responses_maps_an_error_mid_stream(serve) -> None:
    def progress(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"epoch 1"
        yield b"epoch 2"
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "max epochs is 2")

    handlers = {"Progress": grpc.unary_stream_rpc_method_handler(progress)}
    channel = serve(INSECURE, handlers).channel(INSECURE, server_name=None)
    received = []
    with pytest.raises(PolicyViolation, match="party-b refused the request: max epochs is 2"):
        for item in stream_responses(
            method(channel, "Progress", "unary_stream"), b"", deadline_s=5, peer="party-b"
        ):
            received.append(item)
    assert received == [b"epoch 1", b"epoch 2"]


def test_payload_over_the_message_limit_is_refused_and_chunks_pass(serve) -> None:
    def total(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        payload = b"".join(requests)
        return len(payload).to_bytes(8, "big")

    handlers = {
        "Total": grpc.stream_unary_rpc_method_handler(total),
        "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: b""),
    }
    channel = serve(INSECURE, handlers).channel(INSECURE, server_name=None)
    payload = bytes(range(256)) * (3 * MAX_MESSAGE_BYTES // 256)  # 3x the message limit
    with pytest.raises(InvalidPeerData, match="MAX_MESSAGE_BYTES"):
        call_unary(method(channel, "Echo"), payload, deadline_s=10, peer="p")
    answer = call_stream(
        method(channel, "Total", "stream_unary"),
        lambda: slices(payload, CHUNK_BYTES),
        deadline_s=10,
        peer="p",
    )
    assert int.from_bytes(answer, "big") == len(payload)


def test_wait_ready_returns_when_serving_and_times_out_on_a_closed_port(serve) -> None:
    running = serve(INSECURE, {})
    wait_ready(running.channel(INSECURE, server_name=None), timeout_s=5, peer="p")
    channel = build_channel(f"127.0.0.1:{_closed_port()}", INSECURE, server_name=None)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match=r"not ready after 0\.5 s .*Connection refused"):
        wait_ready(channel, timeout_s=0.5, peer="p")
    assert time.monotonic() - started < 1.5
