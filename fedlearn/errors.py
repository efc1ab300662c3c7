"""Exceptions that fedlearn raises, and the gRPC status each one maps to.

Library code raises these; only the CLI turns them into exit codes, and only the transport layer turns
them into gRPC status codes (see ``fedlearn.transport.errors``). Each message names the problem and,
where there is one, the fix.
"""

from __future__ import annotations


class FedlearnError(Exception):
    """Base class. ``grpc_code`` names the ``grpc.StatusCode`` member a servicer answers with.

    ``public``, when given, is the message that may cross to the peer in place of the full one
    (which names paths, IDs or other partners' models and stays in the node's log); a
    ``{reference}`` in it becomes the log reference of the answer. See
    ``fedlearn.transport.errors.message_for_peer`` for what crosses when it is not given.
    """

    grpc_code = "INTERNAL"

    def __init__(self, *args: object, public: str | None = None, min_batch_size: int = 0) -> None:
        super().__init__(*args)
        self.public = public
        #: For a refusal because a party has too many feature columns for the job's batches: the
        #: smallest batch size that would allow it (0 otherwise). It crosses the wire with the
        #: error, and A's driver retries a job whose ``batch_size = "auto"`` with it.
        self.min_batch_size = min_batch_size


class ConfigError(FedlearnError):
    """A config or job file is wrong: names the file, the key and what was expected."""

    grpc_code = "INVALID_ARGUMENT"


class DataError(FedlearnError):
    """A data file is wrong: a missing column, a non-numeric value, a duplicate ID, a bad label."""

    grpc_code = "FAILED_PRECONDITION"


class NoCommonIds(DataError):
    """Private set intersection found no ID in common: the parties write their IDs differently,
    or the wrong datasets are paired. Each party can describe only its own IDs."""


class DamagedModel(DataError):
    """A stored model shard is missing, cut off, altered or from a newer format: names the reason.

    The fix is to delete the model and train again; the node keeps running.
    """


class InvalidPeerData(FedlearnError):
    """What the peer sent is malformed: a ciphertext out of range, a wrong length, a small key."""

    grpc_code = "INVALID_ARGUMENT"


class PolicyViolation(FedlearnError):
    """The request breaks the serving party's policy (key size, batch size, epochs, partners)."""

    grpc_code = "PERMISSION_DENIED"


class SessionError(FedlearnError):
    """Unknown or expired session, or a protocol step out of order."""

    grpc_code = "FAILED_PRECONDITION"


class SessionEnded(SessionError):
    """The peer refused a step of a session and ended it; the reason is only in the peer's log.

    A refusal after a decryption must not tell the sender anything about what was decrypted (it
    would be a decryption oracle), so what crosses is this generic message and nothing else.
    """


class NotFound(FedlearnError):
    """An unknown model id or dataset name."""

    grpc_code = "NOT_FOUND"


class AlreadyExists(FedlearnError):
    """A model id that is already taken."""

    grpc_code = "ALREADY_EXISTS"


class EncodingOverflow(FedlearnError):
    """A fixed-point value does not fit the range its encoding allows; never decoded silently wrong."""

    grpc_code = "INTERNAL"


class PeerUnavailable(FedlearnError):
    """The peer node cannot be reached (down, wrong address, or TLS refused)."""

    grpc_code = "UNAVAILABLE"


class JobCancelled(FedlearnError):
    """A job was cancelled (by the operator, or because its client went away); nothing was saved."""

    grpc_code = "CANCELLED"


class Busy(PeerUnavailable):
    """The node is at one of its limits (open sessions, helper processes): try again later."""

    grpc_code = "RESOURCE_EXHAUSTED"


def counted(count: int, noun: str) -> str:
    """``"1 duplicate ID"``, ``"3 duplicate IDs"``: a count and its noun, for messages."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
