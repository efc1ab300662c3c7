"""Exceptions to gRPC status codes and back, and exceptions to process exit codes: the one place.

Server side, ``ErrorMappingInterceptor`` (installed by ``build_server``) turns a ``FedlearnError``
raised by any handler, unary or streaming, into ``context.abort(<its grpc_code>, <its message>)``
and anything else into INTERNAL "internal error in <method>; see the node log", with the traceback
in the node's log and never on the wire. The error's class name also travels as trailing metadata,
so the client can raise the same class (two classes share INVALID_ARGUMENT, and two share
FAILED_PRECONDITION).

On a server that faces the partner (``peer_facing=True``: B's peer service) the message that
crosses is ``message_for_peer``'s: the raise site's ``public`` message if it gave one; the message
itself for errors about the partner's own request (malformed data, a refused policy, a step out of
order, an unknown model id); a generic sentence with a log reference for errors about the node's own
data or configuration (which name files and may quote IDs); and in every case with anything that
looks like a file path replaced by ``<path>``. The full message is logged beside the reference. A's
control service faces A's own operator and keeps the full message.

Client side, ``error_from_rpc`` turns a ``grpc.RpcError`` into a ``FedlearnError`` whose message
says which peer, what happened and what to check. The CLI and the nodes turn errors into exit codes
with ``exit_code_for``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from fedlearn import errors as fe
from fedlearn.errors import (
    AlreadyExists,
    ConfigError,
    DataError,
    FedlearnError,
    InvalidPeerData,
    JobCancelled,
    NotFound,
    PeerUnavailable,
    PolicyViolation,
    SessionError,
)

log = logging.getLogger(__name__)

#: Trailing-metadata key carrying the FedlearnError subclass name of an aborted call.
ERROR_CLASS_KEY = "fedlearn-error-class"
#: Trailing-metadata key carrying a refusal's ``min_batch_size`` (a decimal number), when it has one.
MIN_BATCH_KEY = "fedlearn-min-batch-size"
#: The largest ``min_batch_size`` taken from a peer (the value is untrusted; a larger one is dropped).
MAX_MIN_BATCH = 1 << 24

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_DATA = 0, 1, 2, 3
EXIT_PEER_UNAVAILABLE, EXIT_REFUSED, EXIT_PROTOCOL, EXIT_INTERRUPTED = 4, 5, 6, 130

#: Exit code per exception class; a subclass takes the code of its nearest listed ancestor and
#: anything unlisted (including FedlearnError itself and EncodingOverflow) exits 1.
EXIT_CODES: dict[type[BaseException], int] = {
    ConfigError: EXIT_USAGE,
    NotFound: EXIT_USAGE,
    AlreadyExists: EXIT_USAGE,
    DataError: EXIT_DATA,
    PeerUnavailable: EXIT_PEER_UNAVAILABLE,
    PolicyViolation: EXIT_REFUSED,
    InvalidPeerData: EXIT_PROTOCOL,
    SessionError: EXIT_PROTOCOL,
    KeyboardInterrupt: EXIT_INTERRUPTED,
    JobCancelled: EXIT_INTERRUPTED,
}

# How gRPC's details tell a refused TLS handshake from a peer that is down (grpcio 1.85, BoringSSL,
# TLS 1.3), as (substrings all found in the lower-cased details, what to tell the user). The first
# match wins.
_TLS_FAILURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("hostname verification",),
        "the peer's certificate does not carry the expected name: set [peer] name in this node's "
        "config to the name in the peer's certificate (its CN: the peer's [node] name)",
    ),
    (
        ("wrong_version_number",),
        "the peer does not speak TLS: it runs with insecure = true while this node uses TLS; "
        "use TLS on both nodes, or insecure = true on both (loopback only)",
    ),
    (
        ("certificate_verify_failed",),
        "this node does not trust the peer's certificate: it was not issued by the CA in this "
        "node's [tls] ca",
    ),
    # With TLS 1.3 the server checks the client certificate after the client has finished its
    # half of the handshake, so a refused client certificate shows up client-side only as the
    # connection closing while it is being set up. A TLS client dialling a plaintext server, or a
    # plaintext client dialling a TLS server, looks the same. A connection that closes after it was
    # set up (no "failed to connect") is an ordinary, retryable UNAVAILABLE.
    (
        ("failed to connect", "socket closed"),
        "the peer closed the connection during the TLS handshake: it probably does not trust this "
        "node's certificate (check that the CA in the peer's [tls] ca issued this node's [tls] "
        "cert), or one node runs with insecure = true and the other with TLS",
    ),
    (
        ("handshake",),
        "check that each node's [tls] ca is the CA that issued the other node's certificate, and "
        "that [peer] name is the name in the peer's certificate",
    ),
    (("ssl_error",), "check both nodes' [tls] ca, cert and key"),
)


#: Errors whose message is about the request the partner made (its data, its step order, the policy
#: it broke, the model id it named): they cross as they are (with paths scrubbed). Any other error
#: is about the node itself and crosses as a generic sentence with a log reference.
ABOUT_THE_REQUEST: tuple[type[FedlearnError], ...] = (
    InvalidPeerData,
    SessionError,
    PolicyViolation,
    NotFound,
    AlreadyExists,
)

# A file path in a message: absolute POSIX ("/srv/b/data.csv"), home ("~/models"), Windows
# ("C:\\data", "\\\\server\\share") or file:// URL, starting where a word cannot go on (so
# "u_B/4" or "1/2" stay); then anything up to white space, a quote or a bracket.
_PATH = re.compile(r"(?<![\w)\]])(?:file://|~|[A-Za-z]:)?[\\/]{1,2}[^\s'\"`()\[\]{}<>,;]+")


def scrub_paths(text: str) -> str:
    """``text`` with every file path replaced by ``<path>``."""
    return _PATH.sub("<path>", text)


def message_for_peer(exc: BaseException, reference: str) -> str:
    """The message that may cross to the partner for ``exc`` (see the module doc)."""
    if isinstance(exc, FedlearnError) and exc.public is not None:
        text = exc.public.replace("{reference}", reference)
    elif isinstance(exc, ABOUT_THE_REQUEST):
        text = str(exc) or type(exc).__name__
    elif isinstance(exc, FedlearnError):
        text = (
            "the node could not answer because of a problem with its own data or configuration; "
            f"its operator will find the detail in its log under reference {reference}"
        )
    else:
        text = f"internal error; the node's operator will find it in its log under reference {reference}"
    return scrub_paths(text)


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for ``exc`` (see the table in docs/transport.md)."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_INTERNAL


def status_code_for(exc: FedlearnError) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` named by ``exc.grpc_code``; INTERNAL when it names none (or OK)."""
    code = getattr(grpc.StatusCode, str(exc.grpc_code), None)
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        return grpc.StatusCode.INTERNAL
    return code


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Map exceptions from every handler (unary and streaming) to status codes (see module doc).

    ``peer_facing``: the callers are the partner's node, so messages go through
    ``message_for_peer``; otherwise (A's control service, for A's own operator) they cross whole.
    """

    def __init__(self, *, peer_facing: bool = False) -> None:
        self.peer_facing = peer_facing

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return wrap_handler(handler, handler_call_details.method, peer_facing=self.peer_facing)


def wrap_handler(
    handler: grpc.RpcMethodHandler, method: str, *, peer_facing: bool = False
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped by the error mapping (all four call shapes)."""
    kwargs: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_call(handler.unary_unary, method, peer_facing), **kwargs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_call(handler.stream_unary, method, peer_facing), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, method, peer_facing), **kwargs
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method, peer_facing), **kwargs
        )
    return handler


def _wrap_call(behavior: Callable[..., Any], method: str, peer_facing: bool) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as exc:
            _abort_for(exc, context, method, peer_facing)
            raise  # not reached: _abort_for always raises

    return call


def _wrap_stream(
    behavior: Callable[..., Iterator[Any]], method: str, peer_facing: bool
) -> Callable[..., Any]:
    # A streaming handler is a generator: its body, and so its exceptions, run while gRPC iterates
    # it, after the handler function has returned. Wrap the iteration, not just the call.
    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as exc:
            _abort_for(exc, context, method, peer_facing)
            raise

    return stream


def _abort_for(
    exc: Exception, context: grpc.ServicerContext, method: str, peer_facing: bool
) -> None:
    reference = secrets.token_hex(4)
    if isinstance(exc, FedlearnError):
        code = status_code_for(exc)
        detail = str(exc) or type(exc).__name__
        message = message_for_peer(exc, reference) if peer_facing else detail
        log.warning(
            "%s answered %s: %s: %s (reference %s)",
            method,
            code.name,
            type(exc).__name__,
            detail,
            reference,
        )
        metadata = [(ERROR_CLASS_KEY, type(exc).__name__)]
        if exc.min_batch_size > 0:
            metadata.append((MIN_BATCH_KEY, str(exc.min_batch_size)))
        context.set_trailing_metadata(tuple(metadata))
        context.abort(code, message)
    if _already_finished(context):
        # The handler aborted itself (context.abort raises a bare Exception), or the client went
        # away (the request iterator raises RpcError): gRPC already knows the outcome.
        raise exc
    log.error("internal error in %s (reference %s)", method, reference, exc_info=exc)
    context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error in {method}; see the node log (reference {reference})",
    )


def _already_finished(context: grpc.ServicerContext) -> bool:
    if not context.is_active():
        return True
    code_of = getattr(context, "code", None)
    code = code_of() if callable(code_of) else None
    return code is not None and code is not grpc.StatusCode.OK


def is_tls_failure(exc: grpc.RpcError) -> bool:
    """True when ``exc`` is a connection failure caused by the TLS handshake (never retried)."""
    return _tls_advice(exc) is not None


def _tls_advice(exc: grpc.RpcError) -> str | None:
    if status_code_of(exc) is not grpc.StatusCode.UNAVAILABLE:
        return None
    details = _details(exc).lower()
    for markers, advice in _TLS_FAILURES:
        if all(marker in details for marker in markers):
            return advice
    return None


def error_from_rpc(
    exc: grpc.RpcError, *, peer: str, deadline_s: float | None = None, own_node: bool = False
) -> FedlearnError:
    """The ``FedlearnError`` to raise for a failed call to ``peer`` ("party-b at 127.0.0.1:50052").

    UNAVAILABLE (and CANCELLED) -> PeerUnavailable, with a TLS hint when the handshake failed;
    DEADLINE_EXCEEDED -> PeerUnavailable "did not answer within N s"; PERMISSION_DENIED and
    UNAUTHENTICATED -> PolicyViolation; INVALID_ARGUMENT -> InvalidPeerData; FAILED_PRECONDITION
    -> SessionError; NOT_FOUND -> NotFound; ALREADY_EXISTS -> AlreadyExists; RESOURCE_EXHAUSTED ->
    InvalidPeerData for an oversized message, else PeerUnavailable (overloaded); UNIMPLEMENTED ->
    InvalidPeerData (a protocol mismatch); anything else -> FedlearnError. When the
    peer is a fedlearn node, the class it raised (sent as trailing metadata) is used instead of the
    code's default, as long as it maps to the same code.

    ``own_node``: the peer is the caller's own node (the CLI talking to A's node). An error that
    node raised already names the node at fault and carries its hint (say, "party-b at ... is not
    reachable"), so it is passed through unchanged instead of being blamed on ``peer`` a second time.
    """
    error = _error_from_rpc(exc, peer=peer, deadline_s=deadline_s, own_node=own_node)
    error.min_batch_size = _min_batch_sent(exc)
    return error


def _min_batch_sent(exc: grpc.RpcError) -> int:
    """The ``min_batch_size`` a fedlearn node sent with its refusal (0 when none, or not a number
    in 1..MAX_MIN_BATCH: the peer is not trusted to size A's batches without bound)."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        items = trailing() if callable(trailing) else ()
        value = dict(items or ()).get(MIN_BATCH_KEY, "")
        number = int(value) if isinstance(value, str) and value.isdigit() else 0
    except Exception:  # a malformed RpcError: no hint
        return 0
    return number if 0 < number <= MAX_MIN_BATCH else 0


def _error_from_rpc(
    exc: grpc.RpcError, *, peer: str, deadline_s: float | None, own_node: bool
) -> FedlearnError:
    code, details = status_code_of(exc), _details(exc)
    sent = _sent_class(exc, code)
    if own_node and sent is not None:
        return sent(details)
    if code is grpc.StatusCode.UNAVAILABLE:
        advice = _tls_advice(exc)
        if advice is not None:
            return PeerUnavailable(f"TLS handshake with {peer} failed: {advice} ({details})")
        return PeerUnavailable(
            f"{peer} is not reachable: {details}. Is the node running, and is the address in the config right?"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f"within {deadline_s:g} s" if deadline_s is not None else "within the deadline"
        return PeerUnavailable(
            f"{peer} did not answer {within}; it may be overloaded or stuck, or the deadline "
            "too short for this step"
        )
    if sent is not None:
        name = peer.split(" at ", 1)[0]
        if details.startswith(name + " "):  # "party-b refuses ...": name it once, with its address
            return sent(peer + details[len(name) :])
        prefix = f"{peer} refused the request" if issubclass(sent, PolicyViolation) else peer
        return sent(f"{prefix}: {details}")
    if code is grpc.StatusCode.CANCELLED:
        return PeerUnavailable(f"the call to {peer} was cancelled: {details}")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PolicyViolation(f"{peer} refused the request: {details}")
    by_code: dict[grpc.StatusCode | None, type[FedlearnError]] = {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidPeerData,
        grpc.StatusCode.FAILED_PRECONDITION: SessionError,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    }
    if code in by_code:
        return by_code[code](f"{peer}: {details}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" not in details.lower():
        return PeerUnavailable(f"{peer} is overloaded: {details}")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InvalidPeerData(
            f"a message to or from {peer} was refused: {details}; messages must stay under "
            "MAX_MESSAGE_BYTES (fedlearn.transport.options): stream large payloads in chunks"
        )
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return InvalidPeerData(
            f"{peer} does not implement this call ({details}); do both nodes run the same "
            "fedlearn version?"
        )
    name = code.name if code is not None else "an unknown status"
    return FedlearnError(f"{peer} failed with {name}: {details}")


def _sent_class(exc: grpc.RpcError, code: grpc.StatusCode | None) -> type[FedlearnError] | None:
    trailing = getattr(exc, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    for key, value in metadata or ():
        if key != ERROR_CLASS_KEY:
            continue
        cls = getattr(fe, str(value), None)
        if (
            isinstance(cls, type)
            and issubclass(cls, FedlearnError)
            and cls is not FedlearnError
            and getattr(grpc.StatusCode, cls.grpc_code, None) is code
        ):
            return cls
    return None


def status_code_of(exc: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call, or None for an RpcError that carries none."""
    code_of = getattr(exc, "code", None)
    code = code_of() if callable(code_of) else None
    return code if isinstance(code, grpc.StatusCode) else None


def _details(exc: grpc.RpcError) -> str:
    details_of = getattr(exc, "details", None)
    details = details_of() if callable(details_of) else None
    return str(details) if details else "no details"
