"""A's gRPC client for B's PeerService: the ``PeerApi`` over the wire.

Every call has a deadline; only calls that are safe to repeat are retried (on UNAVAILABLE, with
backoff); large messages travel as streams of chunks. gRPC errors come back as ``FedlearnError``s that
say what went wrong at B (the transport's ``error_from_rpc``).
"""

from __future__ import annotations

from typing import Any

import grpc

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
)


class GrpcPeer:
    """PeerApi implementation over a channel to B."""

    def __init__(
        self, channel: grpc.Channel, *, peer_name: str, address: str, deadline_s: float
    ) -> None:
        self.channel = channel
        self.stub = peer_pb2_grpc.PeerServiceStub(channel)
        self.peer_name = peer_name
        self.label = peer_label(peer_name, address)
        self.deadline_s = deadline_s
        self.bytes_sent = 0  # serialized protobuf bytes, for the traffic figures in benchmarks
        self.bytes_received = 0

    def _call(self, method_name: str, request: Any) -> Any:
        rpc = RPCS[method_name]
        method = getattr(self.stub, rpc.name)
        retries = 3 if rpc.retry else 0
        common: dict[str, Any] = {"deadline_s": self.deadline_s, "peer": self.label}
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
        return self._call("open_session", request)

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

    def close_session(self, request: m.CloseSessionRequest) -> m.CloseSessionResponse:
        return self._call("close_session", request)
