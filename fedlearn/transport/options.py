"""Every gRPC channel and server option fedlearn sets, in one place, each with the reason for it.

Nothing else in fedlearn passes options to ``grpc.server`` or ``grpc.*_channel``: the factories in
``fedlearn.transport.server`` and ``fedlearn.transport.client`` take them from here.
``TransportConfig`` (what a node's config file says about TLS and deadlines) lives in
``fedlearn.transport.config`` and is re-exported here for convenience.
"""

from __future__ import annotations

from typing import Any

from fedlearn.transport.config import TransportConfig, is_loopback_address

__all__ = [
    "CHUNK_BYTES",
    "MAX_MESSAGE_BYTES",
    "TransportConfig",
    "channel_options",
    "is_loopback_address",
    "server_options",
]

#: Largest message either side sends or accepts, in bytes. gRPC's default receive limit is 4 MiB and
#: its send limit is unlimited; we set both, on both sides, so an oversized message fails at the
#: sender with RESOURCE_EXHAUSTED instead of being refused after crossing the network.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

#: Payload bytes per streamed chunk. An eighth of the message limit: leaves ample room for the other
#: fields of a chunk message, and small chunks keep both ends working at once (the receiver decodes
#: chunk k while the sender encrypts chunk k+1) with bounded memory per message.
CHUNK_BYTES = 1024 * 1024

# Keepalive. A long encrypted step can keep a stream quiet for minutes; HTTP/2 pings keep NAT and
# proxies from dropping the connection, and detect a dead peer within time + timeout.
_CLIENT_KEEPALIVE_TIME_MS = 30_000
_SERVER_KEEPALIVE_TIME_MS = 60_000
_KEEPALIVE_TIMEOUT_MS = 10_000
# The server must accept pings at least as often as the client sends them, or it answers with
# GOAWAY "too_many_pings" and the connection drops. Half the client interval leaves room for jitter.
_SERVER_MIN_PING_INTERVAL_MS = _CLIENT_KEEPALIVE_TIME_MS // 2

# Reconnect backoff. gRPC's defaults (1 s initial, 120 s max) make a restarted peer look down for up
# to two minutes; the two nodes are few and usually close, so reconnect quickly and cap at 1 s (a
# 5 s cap made the first job after a peer restart fail for up to 6.6 s although the peer was up).
_MIN_RECONNECT_BACKOFF_MS = 200
_INITIAL_RECONNECT_BACKOFF_MS = 200
_MAX_RECONNECT_BACKOFF_MS = 1_000


def _message_limits() -> list[tuple[str, Any]]:
    return [
        # Explicit send and receive limits (see MAX_MESSAGE_BYTES).
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def server_options() -> list[tuple[str, Any]]:
    """Options for ``grpc.server``: message limits, keepalive, an exclusive port."""
    return [
        *_message_limits(),
        # Ping idle clients now and then so a vanished client's resources are freed.
        ("grpc.keepalive_time_ms", _SERVER_KEEPALIVE_TIME_MS),
        # Close the connection when a ping is not answered within this time.
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # Accept client keepalive pings even when no call is active (the client sends them).
        ("grpc.keepalive_permit_without_calls", 1),
        # Server side: the shortest interval between client pings that is not a "strike"
        # (the name is gRPC's; it is the receive-side minimum).
        ("grpc.http2.min_ping_interval_without_data_ms", _SERVER_MIN_PING_INTERVAL_MS),
        # Linux SO_REUSEPORT is on by default in gRPC: a second node started on the same port would
        # bind silently and share connections with the first. Off, binding a taken port fails.
        ("grpc.so_reuseport", 0),
    ]


def channel_options(*, server_name: str | None) -> list[tuple[str, Any]]:
    """Options for a client channel: message limits, keepalive, fast reconnects, TLS name override.

    ``server_name`` is the name the server's certificate must carry (CN or SAN DNS entry), e.g.
    ``"party-b"``; when given, TLS verifies that name instead of the host part of the address, so a
    node can be reached by IP address and still be authenticated by its party name.
    """
    options: list[tuple[str, Any]] = [
        *_message_limits(),
        # Send a keepalive ping after this long without traffic on the connection.
        ("grpc.keepalive_time_ms", _CLIENT_KEEPALIVE_TIME_MS),
        # Treat the connection as dead if the ping is not answered within this time.
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # Keep pinging between calls, so a dead connection is found before the next call uses it.
        ("grpc.keepalive_permit_without_calls", 1),
        # Allow pings on a connection that has sent no data (the default allows only 2).
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly after the peer restarts (see _MAX_RECONNECT_BACKOFF_MS).
        ("grpc.min_reconnect_backoff_ms", _MIN_RECONNECT_BACKOFF_MS),
        ("grpc.initial_reconnect_backoff_ms", _INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
    ]
    if server_name:
        # Verify the server certificate against this name rather than the address's host.
        options.append(("grpc.ssl_target_name_override", server_name))
    return options
