"""Fuzz every RPC of B's PeerService over real gRPC: no INTERNAL, no crash, the node keeps serving.

Hypothesis builds requests from the protobuf descriptors (every field, nested messages, unknown enum
values, NaN and infinities, session ids that are real or not) and raw bytes that may not parse at
all. ``make test`` runs a few examples per RPC; ``make fuzz`` (FEDLEARN_FUZZ_EXAMPLES=500) many more.
Seeded (``derandomize``), so a failure reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlearn.proto.v1 import peer_pb2
from fedlearn.protocol.rpcs import RPCS, Rpc
from fedlearn.transport import TransportConfig, build_channel, build_server, start_server
from party_b.node import NodeB
from party_b.servicer import PeerServicer, add_to_server
from tests.protocol.harness import TEST_POLICY, fate_specs

EXAMPLES = int(os.environ.get("FEDLEARN_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
SERVICE = "/fedlearn.v1.PeerService/"
#: What B may answer a fuzzed request with: success or one of our own refusals. Never INTERNAL or
#: UNKNOWN (an unhandled exception), never a crash.
OURS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class Served:
    """A node's service on a loopback port and a channel to it (``channel``, ``server``, ``node``,
    set by the subclass): whether it still serves, and how it stops."""

    channel: grpc.Channel
    server: grpc.Server
    node: Any

    def serving(self) -> bool:
        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None)
        self.node.close()


class Peer(Served):
    def __init__(self, tmp: Path) -> None:
        _, b_spec = fate_specs("breast")
        self.node = NodeB(
            name="party-b",
            datasets={"d": b_spec},
            policy=TEST_POLICY,
            model_dir=tmp / "b",
            allowed_partners={"party-a"},
        )
        config = TransportConfig(insecure=True)
        self.server, port = build_server("127.0.0.1:0", config)
        add_to_server(PeerServicer(self.node, insecure_identity="party-a"), self.server)
        start_server(self.server)
        self.channel = build_channel(f"127.0.0.1:{port}", config, server_name=None)
        opened = self.call(
            RPCS["open_session"],
            peer_pb2.OpenSessionRequest(
                purpose=peer_pb2.PURPOSE_ALIGN, dataset="d", psi_salt=b"s" * 32
            ),
        )
        self.session_id = opened[1].session_id

    def call(self, rpc: Rpc, request: Any) -> tuple[grpc.StatusCode, Any, str]:
        """Send ``request`` (a message, or raw bytes) to ``rpc``; (code, last response, details)."""
        serialize = (lambda raw: raw) if isinstance(request, bytes) else None
        response_type = getattr(peer_pb2, f"{rpc.name}Response")
        kwargs = {
            "request_serializer": serialize or (lambda message: message.SerializeToString()),
            "response_deserializer": response_type.FromString,
        }
        path = SERVICE + rpc.name
        shape = ("stream" if rpc.request_streamed else "unary") + "_"
        shape += "stream" if rpc.response_streamed else "unary"
        callable_ = getattr(self.channel, shape)(path, **kwargs)
        argument = iter([request]) if rpc.request_streamed else request
        try:
            result = callable_(argument, timeout=30)
            last = None
            if rpc.response_streamed:
                for last in result:  # noqa: B007 - drain the stream
                    pass
            else:
                last = result
            return grpc.StatusCode.OK, last, ""
        except grpc.RpcError as exc:
            return exc.code(), None, exc.details() or ""


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    running = Peer(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.close()


_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _edgy_int(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, -1, 2, 255, 256, 4096, 2**31 - 1, low, high) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _field(field: FieldDescriptor, session_id: str, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if field.name == "session_id":
        return st.one_of(st.just(session_id), st.text(max_size=40))
    if kind in _INTS:
        return _edgy_int(*_INTS[kind])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if kind == FieldDescriptor.TYPE_FLOAT:
            return st.floats(allow_nan=True, allow_infinity=True, width=32)
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(["d", "party-a", "", "../x"]), st.text(max_size=60))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=600)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-1, len(field.enum_type.values) + 1)
    if kind == FieldDescriptor.TYPE_MESSAGE and depth < 3:
        return message_of(field.message_type, session_id, depth + 1)
    return st.nothing()


def _message(descriptor: Any, values: dict[str, Any]) -> Any:
    cls = _class_of(descriptor)
    message = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_repeated(field):
                for item in value:
                    getattr(message, name).add().CopyFrom(item)
            else:
                getattr(message, name).CopyFrom(value)
        elif _is_repeated(field):
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _class_of(descriptor: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def message_of(descriptor: Any, session_id: str, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of ``descriptor``'s type with any subset of fields set to fuzzed values."""
    fields = {}
    for field in descriptor.fields:
        value = _field(field, session_id, depth)
        if _is_repeated(field):
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    optional = {name: strategy for name, strategy in fields.items()}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _message(descriptor, values)
    )


@pytest.mark.parametrize("rpc", list(RPCS.values()), ids=lambda rpc: rpc.name)
def test_fuzzed_requests_get_our_refusals_never_internal(peer: Peer, rpc: Rpc) -> None:
    descriptor = getattr(peer_pb2, f"{rpc.name}Request").DESCRIPTOR

    @FUZZ
    @given(message_of(descriptor, peer.session_id))
    def check(request: Any) -> None:
        code, _, details = peer.call(rpc, request)
        assert code in OURS, f"{rpc.name} answered {code.name}: {details}"

    check()
    assert peer.serving()


@pytest.mark.parametrize("rpc", list(RPCS.values()), ids=lambda rpc: rpc.name)
def test_raw_bytes_are_refused_and_the_node_keeps_serving(peer: Peer, rpc: Rpc) -> None:
    @FUZZ
    @given(st.binary(max_size=2048))
    def check(raw: bytes) -> None:
        code, _, details = peer.call(rpc, raw)
        # Bytes that do not parse are refused by gRPC itself (INTERNAL, before any handler runs);
        # bytes that happen to parse are a request like any other.
        unparsable = code is grpc.StatusCode.INTERNAL and "deserializing" in details
        assert code in OURS or unparsable, f"{rpc.name} answered {code.name}: {details}"

    check()
    assert peer.serving()
