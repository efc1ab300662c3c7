"""Fuzz every RPC of A's ControlService over real gRPC with mTLS: no INTERNAL, the node keeps serving.

A's node runs in this process with its peer down (a closed port), so requests that would reach B
end as "peer unavailable" quickly. Same strategies and counts as ``test_fuzz_peer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlearn.config_a import load_config
from fedlearn.proto.v1 import control_pb2
from fedlearn.scaffold import free_port
from fedlearn.transport import build_channel, build_server, start_server
from party_a.control import ControlServicer, add_to_server
from party_a.node import NodeA
from tests.e2e.conftest import small_demo
from tests.reliability.test_fuzz_peer import FUZZ, OURS, Served, _class_of, message_of

SERVICE = "/fedlearn.v1.ControlService/"
#: A's own answers, plus "B is unavailable" (B is down in this test).
ALLOWED = OURS | {grpc.StatusCode.UNAVAILABLE}
#: Every RPC of the service, read from its descriptor (a new RPC is fuzzed without a change here).
METHODS = {
    method.name: method
    for method in control_pb2.DESCRIPTOR.services_by_name["ControlService"].methods
}


class Control(Served):
    def __init__(self, tmp: Path) -> None:
        demo = small_demo(tmp, rows=200)
        text = demo.a_config.read_text().replace(f":{demo.peer_port}", f":{free_port()}")
        demo.a_config.write_text(text)
        config = load_config(demo.a_config)
        self.node = NodeA(config)
        self.node.peer.connect_wait_s = 0.5  # B is down: do not wait the default 10 s
        self.server, port = build_server("127.0.0.1:0", config.transport)
        add_to_server(ControlServicer(self.node), self.server)
        start_server(self.server)
        self.channel = build_channel(f"127.0.0.1:{port}", config.transport, server_name=config.name)

    def call(self, name: str, request: Any) -> tuple[grpc.StatusCode, str]:
        serialize = (lambda raw: raw) if isinstance(request, bytes) else None
        spec = METHODS[name]
        response_type = _class_of(spec.output_type)
        shape = "unary_stream" if spec.server_streaming else "unary_unary"
        method = getattr(self.channel, shape)(
            SERVICE + name,
            request_serializer=serialize or (lambda message: message.SerializeToString()),
            response_deserializer=response_type.FromString,
        )
        try:
            result = method(request, timeout=60)
            if spec.server_streaming:
                for _ in result:
                    pass
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Control]:
    running = Control(tmp_path_factory.mktemp("control"))
    yield running
    running.close()


@pytest.mark.parametrize("name", list(METHODS))
def test_fuzzed_control_requests_never_get_internal(control: Control, name: str) -> None:
    descriptor = METHODS[name].input_type

    @FUZZ
    @given(message_of(descriptor, session_id=""))
    def check(request: Any) -> None:
        code, details = control.call(name, request)
        assert code in ALLOWED, f"{name} answered {code.name}: {details}"

    check()
    assert control.serving()


@pytest.mark.parametrize("name", list(METHODS))
def test_raw_bytes_to_the_control_api_are_refused(control: Control, name: str) -> None:
    @FUZZ
    @given(st.binary(max_size=1024))
    def check(raw: bytes) -> None:
        code, details = control.call(name, raw)
        unparsable = code is grpc.StatusCode.INTERNAL and "deserializing" in details
        assert code in ALLOWED or unparsable, f"{name} answered {code.name}: {details}"

    check()
    assert control.serving()
