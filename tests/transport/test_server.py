"""Server lifecycle: health states, and graceful shutdown on SIGTERM in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedlearn.transport import (
    TransportConfig,
    build_channel,
    build_server,
    call_unary,
    health_state,
    start_server,
    stop_server,
    wait_ready,
)

from .support import method

INSECURE = TransportConfig(insecure=True)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REPO = Path(__file__).resolve().parents[2]


def _status(server: grpc.Server, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(health_state(server).servicer.Check(request, None).status)


def test_health_follows_the_lifecycle() -> None:
    server, port = build_server("127.0.0.1:0", INSECURE)
    health_state(server).set_not_serving("fedlearn.v1.Peer")
    assert _status(server) == NOT_SERVING
    start_server(server)
    assert _status(server) == SERVING and _status(server, "fedlearn.v1.Peer") == SERVING
    channel = build_channel(f"127.0.0.1:{port}", INSECURE, server_name=None)
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == SERVING
    stop_server(server, grace_s=0.5)
    assert _status(server) == NOT_SERVING and _status(server, "fedlearn.v1.Peer") == NOT_SERVING
    health_state(server).set_serving()  # ignored once shutting down
    assert _status(server) == NOT_SERVING


NODE = textwrap.dedent(
    """
    import sys, time, grpc
    from fedlearn.transport import TransportConfig, build_server, serve_until_signal

    def slow(request, context):
        time.sleep(float(request.decode()))
        return b"done"

    server, port = build_server("127.0.0.1:0", TransportConfig(insecure=True))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "fedlearn.test.Test", {"Slow": grpc.unary_unary_rpc_method_handler(slow)}),))
    print(port, flush=True)
    stopped_by = serve_until_signal(
        server, grace_s=float(sys.argv[1]), on_stop=lambda: print("on_stop", flush=True))
    print("stopped by", stopped_by.name if stopped_by else None, flush=True)
    """
)


def _start_node(grace_s: float) -> tuple[subprocess.Popen[str], grpc.Channel]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    node = subprocess.Popen(
        [sys.executable, "-c", NODE, str(grace_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert node.stdout is not None
    port = int(node.stdout.readline())
    channel = build_channel(f"127.0.0.1:{port}", INSECURE, server_name=None)
    wait_ready(channel, timeout_s=10, peer="node")
    return node, channel


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_letting_a_running_call_finish(sig: signal.Signals) -> None:
    node, channel = _start_node(grace_s=5.0)
    try:
        results: list[bytes] = []
        slow = threading.Thread(
            target=lambda: results.append(
                call_unary(method(channel, "Slow"), b"1.0", deadline_s=10, peer="node")
            )
        )
        slow.start()
        time.sleep(0.3)  # the call is running on the node
        started = time.monotonic()
        node.send_signal(sig)
        out, _ = node.communicate(timeout=10)
        slow.join(timeout=10)
        assert node.returncode == 0
        assert time.monotonic() - started < 5.0  # well within the grace period: the call ended
        assert results == [b"done"]
        assert out.splitlines() == ["on_stop", f"stopped by {sig.name}"]
    finally:
        node.kill()
        node.wait()


def _slow_call(channel: grpc.Channel, seconds: float) -> tuple[threading.Thread, list[Exception]]:
    """Start a call that takes ``seconds`` on the node; the list collects its error, if any."""
    errors: list[Exception] = []

    def call() -> None:
        try:
            stub = method(channel, "Slow")
            call_unary(stub, str(seconds).encode(), deadline_s=60, peer="node", retries=0)
        except Exception as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)  # the call is running on the node
    return caller, errors


def test_grace_period_bounds_the_shutdown() -> None:
    node, channel = _start_node(grace_s=0.5)
    try:
        caller, errors = _slow_call(channel, 30)
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        node.communicate(timeout=10)
        caller.join(timeout=10)
        assert node.returncode == 0
        assert time.monotonic() - started < 3.0  # did not wait for the 30 s call
        assert len(errors) == 1  # the cut-off call failed rather than hung
    finally:
        node.kill()
        node.wait()


def test_second_signal_cuts_the_grace_period_short() -> None:
    node, channel = _start_node(grace_s=30.0)
    try:
        caller, errors = _slow_call(channel, 30)
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        node.send_signal(signal.SIGINT)
        out, _ = node.communicate(timeout=10)
        caller.join(timeout=10)
        assert node.returncode == 0
        assert time.monotonic() - started < 3.0
        assert len(errors) == 1
        assert out.splitlines()[-1] == "stopped by SIGTERM"
    finally:
        node.kill()
        node.wait()
