"""Exceptions to status codes (server), status codes to exceptions (client), and exit codes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from fedlearn import errors as fe
from fedlearn.transport import TransportConfig, error_from_rpc, exit_code_for
from fedlearn.transport.errors import (
    ABOUT_THE_REQUEST,
    is_tls_failure,
    message_for_peer,
    scrub_paths,
)

from .support import method

INSECURE = TransportConfig(insecure=True)
ERROR_CLASSES = [
    cls
    for cls in vars(fe).values()
    if isinstance(cls, type) and issubclass(cls, fe.FedlearnError) and cls is not fe.FedlearnError
]
SECRET = "db password hunter2"


def _raise(name: str) -> None:
    if name == "bug":
        raise RuntimeError(SECRET)
    if name == "abort":
        raise AssertionError("handled by the handler itself")
    if name == "wide":
        raise fe.PolicyViolation("party-b has 300 columns", min_batch_size=2400)
    raise getattr(fe, name)(f"{name} happened")


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"abort":
        context.abort(grpc.StatusCode.NOT_FOUND, "aborted by the handler")
    _raise(request.decode())
    return b"unreachable"


def _unary_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"first"
    _raise(request.decode())


def _stream_unary(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    _raise(next(requests).decode())
    return b"unreachable"


def _stream_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield b"echo"
        _raise(request.decode())


HANDLERS = {
    "UnaryUnary": grpc.unary_unary_rpc_method_handler(_unary),
    "UnaryStream": grpc.unary_stream_rpc_method_handler(_unary_stream),
    "StreamUnary": grpc.stream_unary_rpc_method_handler(_stream_unary),
    "StreamStream": grpc.stream_stream_rpc_method_handler(_stream_stream),
}


def _call(channel: grpc.Channel, shape: str, payload: bytes) -> tuple[list[bytes], grpc.RpcError]:
    """Make the call; return what arrived before the error, and the error."""
    name = "".join(part.title() for part in shape.split("_"))
    stub = method(channel, name, shape)
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as info:
        request = payload if shape.startswith("unary") else iter([payload])
        answer = stub(request, timeout=5)
        if shape.endswith("stream"):
            for item in answer:
                received.append(item)
    return received, info.value


SHAPES = ["unary_unary", "unary_stream", "stream_unary", "stream_stream"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_fedlearn_errors_map_to_their_code(serve, shape: str, cls: type[fe.FedlearnError]) -> None:
    channel = serve(INSECURE, HANDLERS).channel(INSECURE, server_name=None)
    received, exc = _call(channel, shape, cls.__name__.encode())
    assert isinstance(exc, grpc.Call)
    assert exc.code() is getattr(grpc.StatusCode, cls.grpc_code)
    assert exc.details() == f"{cls.__name__} happened"
    # Streaming handlers fail after their first response, which still reaches the client.
    expected = {"unary_unary": [], "unary_stream": [b"first"], "stream_unary": []}
    assert received == expected.get(shape, [b"echo"])
    if cls.grpc_code not in ("UNAVAILABLE", "INTERNAL"):
        mapped = error_from_rpc(exc, peer="party-b at here")
        assert type(mapped) is cls  # the class survives the wire (trailing metadata)
        assert f"{cls.__name__} happened" in str(mapped)


@pytest.mark.parametrize("shape", SHAPES)
def test_unknown_exception_is_internal_without_traceback(
    serve, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    channel = serve(INSECURE, HANDLERS).channel(INSECURE, server_name=None)
    with caplog.at_level(logging.ERROR, logger="fedlearn.transport.errors"):
        _, exc = _call(channel, shape, b"bug")
    assert isinstance(exc, grpc.Call)
    name = "".join(part.title() for part in shape.split("_"))
    assert exc.code() is grpc.StatusCode.INTERNAL
    assert re.fullmatch(
        rf"internal error in /fedlearn.test.Test/{name}; see the node log \(reference [0-9a-f]{{8}}\)",
        exc.details(),
    )
    assert SECRET not in str(exc.trailing_metadata())
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and SECRET in str(logged[0].exc_info)  # the traceback stays in the node log
    assert exc.details()[-9:-1] in logged[0].getMessage()  # the reference finds it there


def test_handler_that_aborts_itself_keeps_its_code(serve) -> None:
    channel = serve(INSECURE, HANDLERS).channel(INSECURE, server_name=None)
    _, exc = _call(channel, "unary_unary", b"abort")
    assert isinstance(exc, grpc.Call)
    assert exc.code() is grpc.StatusCode.NOT_FOUND
    assert exc.details() == "aborted by the handler"


@dataclass
class FakeRpcError(grpc.RpcError):
    status: grpc.StatusCode
    text: str = "details"
    trailers: tuple[tuple[str, str], ...] = field(default=())

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.text

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailers


PEER = "party-b at 127.0.0.1:50052"


@pytest.mark.parametrize(
    ("code", "cls", "message"),
    [
        ("UNAVAILABLE", fe.PeerUnavailable, "is not reachable: details. Is the node running,"),
        ("DEADLINE_EXCEEDED", fe.PeerUnavailable, "did not answer within 2.5 s"),
        ("CANCELLED", fe.PeerUnavailable, "was cancelled"),
        ("PERMISSION_DENIED", fe.PolicyViolation, "refused the request: details"),
        ("UNAUTHENTICATED", fe.PolicyViolation, "refused the request: details"),
        ("INVALID_ARGUMENT", fe.InvalidPeerData, ": details"),
        ("FAILED_PRECONDITION", fe.SessionError, ": details"),
        ("NOT_FOUND", fe.NotFound, ": details"),
        ("ALREADY_EXISTS", fe.AlreadyExists, ": details"),
        ("RESOURCE_EXHAUSTED", fe.PeerUnavailable, "is overloaded: details"),
        ("UNIMPLEMENTED", fe.InvalidPeerData, "same fedlearn version"),
        ("INTERNAL", fe.FedlearnError, "failed with INTERNAL: details"),
    ],
)
def test_error_from_rpc_by_code(code: str, cls: type[fe.FedlearnError], message: str) -> None:
    mapped = error_from_rpc(FakeRpcError(grpc.StatusCode[code]), peer=PEER, deadline_s=2.5)
    assert type(mapped) is cls
    assert PEER in str(mapped) and message in str(mapped)


def test_oversized_message_is_a_protocol_error() -> None:
    exc = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max (25165824 vs. 8388608)"
    )
    mapped = error_from_rpc(exc, peer=PEER)
    assert type(mapped) is fe.InvalidPeerData and "stream large payloads in chunks" in str(mapped)


def test_a_refusal_s_batch_size_hint_crosses_the_wire(serve) -> None:
    channel = serve(INSECURE, HANDLERS).channel(INSECURE, server_name=None)
    _, exc = _call(channel, "unary_unary", b"wide")
    mapped = error_from_rpc(exc, peer="party-b at here")
    assert type(mapped) is fe.PolicyViolation and mapped.min_batch_size == 2400
    _, exc = _call(channel, "unary_unary", b"PolicyViolation")
    assert error_from_rpc(exc, peer="party-b at here").min_batch_size == 0  # none sent


@pytest.mark.parametrize("sent", ["-5", "0", "2400.5", "x", str((1 << 24) + 1), ""])
def test_a_batch_size_hint_out_of_range_is_dropped(sent: str) -> None:
    trailers = (("fedlearn-error-class", "PolicyViolation"), ("fedlearn-min-batch-size", sent))
    exc = FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "too wide", trailers)
    mapped = error_from_rpc(exc, peer=PEER)
    assert type(mapped) is fe.PolicyViolation and mapped.min_batch_size == 0


def test_class_sent_by_a_fedlearn_peer_wins_when_it_matches_the_code() -> None:
    sent = (("fedlearn-error-class", "DataError"),)
    exc = FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "bad column", sent)
    assert type(error_from_rpc(exc, peer=PEER)) is fe.DataError
    # A class name that does not match the code, or is not ours, is ignored.
    for name in ("PolicyViolation", "RuntimeError", "FedlearnError"):
        exc = FakeRpcError(
            grpc.StatusCode.FAILED_PRECONDITION, "x", (("fedlearn-error-class", name),)
        )
        assert type(error_from_rpc(exc, peer=PEER)) is fe.SessionError


def test_tls_failures_are_told_apart_from_a_peer_that_is_down() -> None:
    down = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused",
    )
    dropped = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    refused = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:1.2.3.4:1: Socket closed",
    )
    assert not is_tls_failure(down) and not is_tls_failure(dropped)
    assert is_tls_failure(refused)
    assert "TLS handshake with" in str(error_from_rpc(refused, peer=PEER))


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (fe.ConfigError("x"), 2),
        (fe.NotFound("x"), 2),
        (fe.AlreadyExists("x"), 2),
        (fe.DataError("x"), 3),
        (fe.PeerUnavailable("x"), 4),
        (fe.PolicyViolation("x"), 5),
        (fe.InvalidPeerData("x"), 6),
        (fe.SessionError("x"), 6),
        (fe.FedlearnError("x"), 1),
        (fe.EncodingOverflow("x"), 1),
        (RuntimeError("x"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_exit_code_of_a_subclass_follows_its_parent() -> None:
    class LateData(fe.DataError):
        pass

    assert exit_code_for(LateData("x")) == 3


@pytest.mark.parametrize("cls", [fe.PeerUnavailable, fe.PolicyViolation, fe.NotFound])
def test_own_node_errors_pass_through_naming_the_node_at_fault_once(
    serve, cls: type[fe.FedlearnError]
) -> None:
    """The CLI talking to A's node: what A raised (about B) is shown as A said it, not re-wrapped."""
    channel = serve(INSECURE, HANDLERS).channel(INSECURE, server_name=None)
    _, exc = _call(channel, "unary_unary", cls.__name__.encode())
    relayed = error_from_rpc(exc, peer="party-a's node at here", own_node=True)
    assert type(relayed) is cls
    assert str(relayed) == f"{cls.__name__} happened"
    wrapped = error_from_rpc(exc, peer="party-a's node at here")
    assert "party-a's node at here" in str(wrapped)  # between nodes the peer is still named


# ---- what crosses to the partner (issue 11): no path, no ID, no other partner's model ----------

PRIVATE = "/srv/party-b/models"
RAW_ID = "user-8812-not-in-the-intersection"


def _private(name: str) -> None:
    """Raise ``name`` with a message that names a path and a raw ID, as B's own errors may."""
    if name == "bug":
        raise RuntimeError(f"{PRIVATE}/x.json: {RAW_ID}")
    raise getattr(fe, name)(f"{PRIVATE}/data.csv: duplicate ID {RAW_ID!r} at row 7")


def _private_unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    _private(request.decode())
    return b"unreachable"


@pytest.mark.parametrize("name", [c.__name__ for c in ERROR_CLASSES] + ["bug"])
def test_peer_facing_server_sends_no_path_and_no_id(
    serve, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    handlers = {"UnaryUnary": grpc.unary_unary_rpc_method_handler(_private_unary)}
    channel = serve(INSECURE, handlers, peer_facing=True).channel(INSECURE, server_name=None)
    with caplog.at_level(logging.WARNING, logger="fedlearn.transport.errors"):
        _, exc = _call(channel, "unary_unary", name.encode())
    details = exc.details()
    assert PRIVATE not in details and "/srv" not in details and "data.csv" not in details
    cls = getattr(fe, name, None)
    if cls is None or not issubclass(cls, ABOUT_THE_REQUEST):
        # about B's own data, config or code: a generic sentence; the detail stays in B's log
        assert RAW_ID not in details
        reference = re.search(r"reference ([0-9a-f]{8})", details)
        assert reference is not None
        logged = [r for r in caplog.records if reference.group(1) in r.getMessage()]
        assert logged and (RAW_ID in logged[0].getMessage() or RAW_ID in str(logged[0].exc_info))
    else:
        assert "<path>" in details  # the refusal's reason crosses, its path does not


def test_control_server_keeps_the_detail_for_its_own_operator(serve) -> None:
    handlers = {"UnaryUnary": grpc.unary_unary_rpc_method_handler(_private_unary)}
    channel = serve(INSECURE, handlers).channel(INSECURE, server_name=None)
    _, exc = _call(channel, "unary_unary", b"DataError")
    assert PRIVATE in exc.details() and RAW_ID in exc.details()


def test_public_message_replaces_the_detail() -> None:
    error = fe.NotFound(f"no model 'm' in {PRIVATE} (latest: other-1)", public="no model 'm' here")
    assert message_for_peer(error, "ref") == "no model 'm' here"
    assert message_for_peer(fe.NotFound(f"gone: {PRIVATE}"), "ref") == "gone: <path>"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("read /srv/b/data.csv: bad", "read <path> bad"),
        ("'/srv/b/data.csv' is missing", "'<path>' is missing"),
        ("C:\\data\\b.csv failed", "<path> failed"),
        ("\\\\server\\share\\b.csv failed", "<path> failed"),
        ("see ~/models/x", "see <path>"),
        ("file:///tmp/a.csv", "<path>"),
        ("u_B/4 and 1/2 stay", "u_B/4 and 1/2 stay"),
        ("[tls] ca and (a/b) stay", "[tls] ca and (a/b) stay"),
    ],
)
def test_scrub_paths(text: str, scrubbed: str) -> None:
    assert scrub_paths(text) == scrubbed


def test_a_public_message_takes_the_log_reference() -> None:
    error = fe.DataError(f"{PRIVATE}/data.csv: bad", public="B's data; reference {reference}")
    assert message_for_peer(error, "1a2b3c4d") == "B's data; reference 1a2b3c4d"


def test_b_s_unreadable_dataset_is_named_to_a_without_its_detail(tmp_path: Path) -> None:
    """A's operator learns which of B's datasets failed and that the fault is B's, with the log
    reference; B's path and the duplicate ID stay in B's log."""
    from fedlearn.config import DatasetSpec
    from fedlearn.protocol import messages as m
    from party_b.node import NodeB
    from tests.protocol.harness import TEST_POLICY

    path = tmp_path / "secret-b.csv"
    path.write_text(f"id,x\n{RAW_ID},1\n{RAW_ID},2\n")
    node = NodeB(
        name="party-b",
        datasets={"users": DatasetSpec("users", path, "id", None, None, [])},
        policy=TEST_POLICY,
        model_dir=tmp_path / "b",
        allowed_partners={"party-a"},
    )
    try:
        with pytest.raises(fe.DataError) as caught:
            node.open_session(
                m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="users", psi_salt=b"s" * 32),
                "party-a",
            )
    finally:
        node.close()
    assert RAW_ID in str(caught.value)  # the detail, for B's log
    crossed = message_for_peer(caught.value, "1a2b3c4d")
    assert crossed.startswith("party-b cannot load its dataset 'users'")
    assert crossed.endswith("under reference 1a2b3c4d")
    assert RAW_ID not in crossed and "secret-b" not in crossed
