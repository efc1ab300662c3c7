"""gRPC transport between the party nodes: mutual TLS, options, deadlines, retries, errors.

Nothing outside this package builds gRPC servers or channels or sets gRPC options. Modules:
``options`` (every option, message limits), ``config`` (``TransportConfig``, its start-up checks),
``tls`` (credentials, peer identity), ``server`` (build, health, graceful shutdown), ``client``
(channels, calls), ``errors`` (status codes and exit codes). Large messages are streamed in chunks
of ``CHUNK_BYTES`` by ``fedlearn.protocol.chunking``.
"""

from fedlearn.transport.client import (
    build_channel,
    call_stream,
    call_unary,
    peer_label,
    stream_responses,
    wait_ready,
)
from fedlearn.transport.config import TransportConfig, is_loopback_address
from fedlearn.transport.errors import (
    EXIT_CODES,
    ErrorMappingInterceptor,
    error_from_rpc,
    exit_code_for,
)
from fedlearn.transport.options import (
    CHUNK_BYTES,
    MAX_MESSAGE_BYTES,
    channel_options,
    server_options,
)
from fedlearn.transport.server import (
    HealthState,
    build_server,
    health_state,
    serve_until_signal,
    start_server,
    stop_server,
)
from fedlearn.transport.tls import (
    certificate_name,
    channel_credentials,
    peer_identity,
    server_credentials,
)

__all__ = [
    "CHUNK_BYTES",
    "EXIT_CODES",
    "MAX_MESSAGE_BYTES",
    "ErrorMappingInterceptor",
    "HealthState",
    "TransportConfig",
    "build_channel",
    "build_server",
    "call_stream",
    "call_unary",
    "certificate_name",
    "channel_credentials",
    "channel_options",
    "error_from_rpc",
    "exit_code_for",
    "health_state",
    "is_loopback_address",
    "peer_identity",
    "peer_label",
    "serve_until_signal",
    "server_credentials",
    "server_options",
    "start_server",
    "stop_server",
    "stream_responses",
    "wait_ready",
]
