"""A's gRPC client for B's PeerService: the ``PeerApi`` over the wire.

Every call has a deadline; only calls that are safe to repeat are retried (on UNAVAILABLE, with
backoff); large messages travel as streams of chunks. Before a session is opened, a peer that
refuses connections (restarting, or not yet up) is waited for, up to ``connect_wait_s`` seconds,
with health probes; a failed TLS handshake is reported at once. The ids of the sessions open at B
are kept, so a node that stops can close them (``close_open_sessions``). gRPC errors come back as ``FedlearnError``s that
say what went wrong at B (the transport's ``error_from_rpc``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import grpc

from fedlearn.errors import FedlearnError, PeerUnavailable
from fedlearn.proto.v1 import peer_pb2_grpc
from fedlearn.protocol import chunking, wire
from fedlearn.protocol import messages as m
from fedlearn.protocol.rpcs import RPCS
from fedlearn.transport import (
    CHUNK_BYTES,
    call_stream,
    call_unary,
    peer_label,
    stream_responses,
    wait_ready,
)

log = logging.getLogger(__name__)

#: How long a session's first call waits for a peer that refuses connections before reporting it
#: down (a restarting node takes a few seconds to listen; the channel's reconnect backoff is 1 s).
CONNECT_WAIT_S = 10.0
#: The deadline of each CloseSession sent while this node stops.
CLOSE_ON_STOP_DEADLINE_S = 2.0


class GrpcPeer:
    """PeerApi implementation over a channel to B."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        peer_name: str,
        address: str,
        deadline_s: float,
        connect_wait_s: float = CONNECT_WAIT_S,
    ) -> None:
        self.channel = channel
        self.stub = peer_pb2_grpc.PeerServiceStub(channel)
        self.peer_name = peer_name
        self.label = peer_label(peer_name, address)
        self.deadline_s = deadline_s
        self.bytes_sent = 0  # serialized protobuf bytes, for the traffic figures in benchmarks
        self.bytes_received = 0
        self.connect_wait_s = connect_wait_s
        self.open_sessions: set[str] = set()
        self._sessions_lock = threading.Lock()

    def _call(self, method_name: str, request: Any, deadline_s: float | None = None) -> Any:
        rpc = RPCS[method_name]
        method = getattr(self.stub, rpc.name)
        retries = 3 if rpc.retry else 0
        common: dict[str, Any] = {"deadline_s": deadline_s or self.deadline_s, "peer": self.label}
        if rpc.request_streamed:

            def requests() -> Any:
                for part in chunking.split(request, chunk_bytes=CHUNK_BYTES):
                    proto = wire.to_proto(part)
                    self.bytes_sent += proto.ByteSize()
                    yield proto

            result = call_stream(method, requests, retries=retries, **common)
            if rpc.response_streamed:
                return self._join(result, rpc.response)
            return self._received(result, rpc.response)
        proto_request = wire.to_proto(request)
        self.bytes_sent += proto_request.ByteSize()
        if rpc.response_streamed:
            return self._join(stream_responses(method, proto_request, **common), rpc.response)
        reply = call_unary(method, proto_request, retries=retries, **common)
        return self._received(reply, rpc.response)

    def _received(self, proto: Any, message_type: type) -> Any:
        self.bytes_received += proto.ByteSize()
        return wire.from_proto(proto, message_type)

    def _join(self, protos: Any, message_type: type) -> Any:
        return chunking.join((self._received(p, message_type) for p in protos), message_type)

    def open_session(self, request: m.OpenSessionRequest) -> m.OpenSessionResponse:
        if self.connect_wait_s > 0:
            # Still down (or TLS refused) after the wait: the call below reports it as usual.
            with contextlib.suppress(PeerUnavailable):
                wait_ready(self.channel, timeout_s=self.connect_wait_s, peer=self.label)
        response: m.OpenSessionResponse = self._call("open_session", request)
        with self._sessions_lock:
            self.open_sessions.add(response.session_id)
        return response

    def psi_blind(self, request: m.PsiBlindRequest) -> m.PsiBlindResponse:
        return self._call("psi_blind", request)

    def psi_peer_set(self, request: m.PsiPeerSetRequest) -> m.PsiPeerSetResponse:
        return self._call("psi_peer_set", request)

    def psi_result(self, request: m.PsiResultRequest) -> m.PsiResultResponse:
        return self._call("psi_result", request)

    def batch_forward(self, request: m.BatchForwardRequest) -> m.BatchForwardResponse:
        return self._call("batch_forward", request)

    def batch_gradient(self, request: m.BatchGradientRequest) -> m.BatchGradientResponse:
        return self._call("batch_gradient", request)

    def batch_update(self, request: m.BatchUpdateRequest) -> m.BatchUpdateResponse:
        return self._call("batch_update", request)

    def epoch_loss(self, request: m.EpochLossRequest) -> m.EpochLossResponse:
        return self._call("epoch_loss", request)

    def partial_scores(self, request: m.PartialScoresRequest) -> m.PartialScoresResponse:
        return self._call("partial_scores", request)

    def commit_model(self, request: m.CommitModelRequest) -> m.CommitModelResponse:
        return self._call("commit_model", request)

    def delete_model(self, request: m.DeleteModelRequest) -> m.DeleteModelResponse:
        return self._call("delete_model", request)

    def check_models(self, request: m.CheckModelsRequest) -> m.CheckModelsResponse:
        return self._call("check_models", request)

    def close_session(self, request: m.CloseSessionRequest) -> m.CloseSessionResponse:
        with self._sessions_lock:
            self.open_sessions.discard(request.session_id)
        return self._call("close_session", request)

    def close_open_sessions(self, deadline_s: float = CLOSE_ON_STOP_DEADLINE_S) -> int:
        """Close every session this client opened and has not closed (when the node stops, so B
        frees their state and helper processes now rather than when their lease ends). Failures
        are logged, not raised. Returns how many were closed."""
        with self._sessions_lock:
            pending, self.open_sessions = sorted(self.open_sessions), set()
        closed = 0
        for session_id in pending:
            request = m.CloseSessionRequest(session_id=session_id)
            try:
                self._call("close_session", request, deadline_s=deadline_s)
                closed += 1
            except FedlearnError as exc:
                log.warning("could not close session %s at stop: %s", session_id[:8], exc)
        return closed
