"""B's gRPC servicer: adapts PeerService streams to ``NodeB`` methods; no protocol logic here.

Each handler takes the caller's identity from its client certificate and refuses a partner that is
not allowed, then parses (and for streamed requests, joins) the request, calls the role, and splits a large response into a stream. Exceptions are
mapped to status codes in one place, the transport's ErrorMappingInterceptor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from fedlearn.errors import PeerUnavailable
from fedlearn.proto.v1 import peer_pb2_grpc
from fedlearn.protocol import chunking, wire
from fedlearn.protocol.rpcs import RPCS, Rpc
from fedlearn.transport import CHUNK_BYTES, TransportConfig, peer_identity
from party_b.node import NodeB

log = logging.getLogger(__name__)


class PeerServicer(peer_pb2_grpc.PeerServiceServicer):
    """PeerService over a NodeB. ``insecure_identity`` names the partner on a plaintext loopback.

    ``transport``: B's TLS settings; with ``[tls.pins]`` a caller's name counts only when the CA
    pinned for that name issued its certificate (``peer_identity`` raises ``PolicyViolation``).
    Errors that cross to A are scrubbed where they are mapped (``build_server(peer_facing=True)``).
    """

    def __init__(
        self,
        role: NodeB,
        *,
        insecure_identity: str | None = None,
        transport: TransportConfig | None = None,
    ) -> None:
        self.role = role
        self.insecure_identity = insecure_identity
        self.transport = transport

    def identity(self, context: grpc.ServicerContext) -> str | None:
        name = peer_identity(context, self.transport)
        return name if name is not None else self.insecure_identity


def _handler(rpc: Rpc) -> Callable[..., Any]:
    def handle(self: PeerServicer, request: Any, context: grpc.ServicerContext) -> Any:
        # The caller's identity first: a partner that is not allowed is refused before a single
        # message of its stream is read, let alone buffered.
        partner = self.role.check_partner(self.identity(context))
        parsed: Any
        if rpc.request_streamed:
            parsed = chunking.join(
                (wire.from_proto(part, rpc.request) for part in request), rpc.request
            )
            if not context.is_active():
                # The stream ended because the partner went away (killed, or its connection cut),
                # not because it sent all of it: what arrived is a truncated message. It is not
                # the partner's word, so it is neither used nor refused (a refusal ends the
                # session); the session stays until its lease expires or the partner closes it.
                raise PeerUnavailable(
                    f"the partner went away during its {rpc.name} message; nothing of it was used"
                )
        else:
            parsed = wire.from_proto(request, rpc.request)
        response = getattr(self.role, rpc.method)(parsed, partner)
        if rpc.response_streamed:
            return _stream(chunking.split(response, chunk_bytes=CHUNK_BYTES))
        return wire.to_proto(response)

    handle.__name__ = rpc.name
    return handle


def _stream(parts: Iterable[Any]) -> Iterator[Any]:
    for part in parts:
        yield wire.to_proto(part)


for _rpc in RPCS.values():
    setattr(PeerServicer, _rpc.name, _handler(_rpc))


def add_to_server(servicer: PeerServicer, server: grpc.Server) -> None:
    peer_pb2_grpc.add_PeerServiceServicer_to_server(servicer, server)
