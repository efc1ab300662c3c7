"""ECDH private set intersection (PSI) primitives over ristretto255, a prime-order group.

The protocol these primitives serve (the message flow lives in ``fedlearn.protocol``):

1. A and B each draw 16+ random bytes and exchange them; both derive the same ``session_salt``.
2. Each party draws a fresh secret scalar for the session (``PsiKey.generate``), hashes its IDs
   to the group and raises them to its scalar (``blind_ids``): ``H(id)^k``. The blinded points
   are sent to the peer. Without the scalar they reveal nothing about the IDs (decisional
   Diffie-Hellman in a prime-order group).
3. Each party raises the peer's points to its own scalar (``blind_points``), so both sets end up
   as ``H(id)^(k_A k_B)``. Which party raises what, and in which order the points cross so that
   B computes the intersection itself, is in docs/protocol.md section 1.
4. ``intersect`` matches the double-blinded points; equal points mean equal IDs. Both parties then
   sort the matched IDs by ``common_order`` (SHA-256 of the job's seed and the ID), so both get the
   intersection in the same order without either revealing its row order.

The group
---------
ristretto255 (RFC 9496) through libsodium (``crypto_core_ristretto255_from_hash``,
``crypto_scalarmult_ristretto255``), reached with ``pysodium``. Ristretto is a prime-order group
built on Curve25519: every valid encoding is one element of a group of prime order
l = 2^252 + 27742317777372353535851937790883648493, with no cofactor and no twist. That matters:
the X25519 u-coordinates this module used before are points of either the curve or its twist,
and which of the two survives blinding, so each blinded ID told the peer one bit about the ID
(enough to halve a dictionary of candidate IDs per bit of the salt-hashed value). In a group of
prime order, ``H(id)^k`` is a uniformly random element for an unknown k, whatever ``H(id)`` was.

Hashing IDs to the group
------------------------
``H(id) = from_hash(SHA-512(domain || session_salt || utf-8(id)))``: libsodium's
``crypto_core_ristretto255_from_hash`` maps the 64 digest bytes to an element (the RFC 9496
one-way map applied to each half, summed), uniform over the group; no try-and-increment loop, so
the time to hash does not depend on the ID. The salt is always 32 bytes, so the concatenation is
unambiguous. The per-session salt (from both parties' random bytes) means points from one session
cannot be matched against another session's, and no party can precompute a dictionary before the
session opens.

IDs are hashed exactly as given: case is kept and white space is *not* stripped here. Normalising
IDs (stripping surrounding white space, refusing duplicates) is ``fedlearn.data.normalise_ids``'s
job, done before blinding.

What a peer sends is checked
----------------------------
Points travel as concatenated 32-byte canonical encodings (``POINT_BYTES``), one ``bytes`` value
per list. The length must be a multiple of 32. Points we multiply (``blind_points``) get
libsodium's full check: the encoding must be canonical and decode to a group element, and a
product that is the identity is refused. Points we only compare with our own (``check_points``)
must be canonical encodings other than the identity. No list may hold a point twice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedlearn.crypto.executor import Executor, local_process_pool
from fedlearn.errors import DataError, InvalidPeerData

POINT_BYTES = 32
"""Bytes in one encoded point (a canonical ristretto255 encoding)."""

SCALAR_BYTES = 32
"""Bytes in a secret scalar (little-endian, in ]0, l[)."""

SALT_BYTES = 32
"""Bytes in a session salt, as ``session_salt`` returns it."""

MIN_SALT_CONTRIBUTION = 16
"""Fewest random bytes each party must contribute to the session salt."""

MAX_SALT_CONTRIBUTION = 1024
"""Most bytes accepted from a party for the session salt (anything longer is not a salt)."""

MIN_CHUNK_FOR_POOL = 20_000
"""Fewest items per worker before ``workers > 1`` starts a process pool; less runs inline."""

_SALT_DOMAIN = b"fedlearn/psi/session-salt/v1"
_HASH_DOMAIN = b"fedlearn/psi/ristretto255-from-sha512/v2\x00"
_IDENTITY = bytes(POINT_BYTES)
_DIGEST_BYTES = 32  # SHA-256, for common_order


def _sodium() -> Any:
    """The ``pysodium`` module, imported on first use so that a missing libsodium is a clear error."""
    try:
        import pysodium
    except (
        ImportError,
        ValueError,
        OSError,
    ) as exc:  # pysodium raises ValueError without libsodium
        raise RuntimeError(
            "private set intersection needs libsodium 1.0.18 or newer (the ristretto255 group): "
            "install it with your system's package manager (Debian/Ubuntu: apt-get install "
            f"libsodium23; macOS: brew install libsodium; conda: conda install libsodium): {exc}"
        ) from exc
    return pysodium


class PsiKey:
    """One party's secret scalar for one PSI session.

    Generate a fresh key for every session (``PsiKey.generate``) and drop it when the session ends;
    reusing a key across sessions would let the peer link IDs between sessions.
    """

    __slots__ = ("_scalar",)

    def __init__(self, scalar: bytes) -> None:
        if len(scalar) != SCALAR_BYTES or scalar == bytes(SCALAR_BYTES):
            raise ValueError(f"a PSI scalar is {SCALAR_BYTES} bytes and not zero")
        self._scalar = scalar

    @classmethod
    def generate(cls) -> PsiKey:
        """A fresh random scalar, uniform in ]0, l[ (libsodium's CSPRNG)."""
        return cls(bytes(_sodium().crypto_core_ristretto255_scalar_random()))

    def __repr__(self) -> str:
        return "PsiKey(<secret>)"

    def _raw(self) -> bytes:
        return self._scalar

    def blind_ids(
        self,
        ids: Sequence[str] | np.ndarray,
        salt: bytes,
        *,
        workers: int = 1,
        executor: Executor | None = None,
    ) -> bytes:
        """Hash each ID to the group and raise it to this key: ``H(id)^k`` for each id, in order.

        ``ids``: n strings, hashed as given (no stripping, case kept). ``salt``: the 32-byte
        ``session_salt``. Returns n * 32 bytes. ``workers > 1`` spreads large inputs (at least
        ``MIN_CHUNK_FOR_POOL`` IDs per worker) over a process pool (worth it only when the cores
        are otherwise idle).
        The pool uses "spawn", so a script calling this must guard its entry point with
        ``if __name__ == "__main__":``. ``executor`` (a node's long-lived pool or Ray actors)
        replaces that pool, with ``workers = executor.workers``; its workers get this key's scalar.

        Raises ``DataError`` when an ID is not a string or cannot be encoded as UTF-8, and
        ``ValueError`` when the salt is not 32 bytes.
        """
        if len(salt) != SALT_BYTES:
            raise ValueError(
                f"the PSI salt must be {SALT_BYTES} bytes (from session_salt); got {len(salt)}"
            )
        id_list = ids if isinstance(ids, (list, np.ndarray)) else list(ids)
        return _run_chunked(
            _blind_ids_chunk, self._raw(), id_list, len(id_list), 1, salt, workers, executor
        )

    def blind_points(
        self, points: bytes, *, workers: int = 1, executor: Executor | None = None
    ) -> bytes:
        """Raise each of the peer's points to this key: ``P^k`` for each 32-byte point, in order.

        ``points``: concatenated 32-byte points as the peer sent them. Returns the same number of
        bytes. Raises ``InvalidPeerData`` when the length is not a multiple of 32, or a point is
        not the canonical encoding of a group element, or is the identity (libsodium refuses both:
        an identity product would match every other identity).
        """
        if len(points) % POINT_BYTES:
            raise InvalidPeerData(
                f"blinded points must be a multiple of {POINT_BYTES} bytes long; "
                f"got {len(points)} bytes"
            )
        # libsodium 1.0.18 ignores the top bit of an encoding: refuse non-canonical ones here.
        check_points(points, "the peer's points")
        count = len(points) // POINT_BYTES
        return _run_chunked(
            _blind_points_chunk, self._raw(), points, count, POINT_BYTES, b"", workers, executor
        )


def session_salt(salt_a: bytes, salt_b: bytes) -> bytes:
    """The session's 32-byte salt from A's and B's random contributions (A's first).

    Both parties call this with the same arguments in the same order and get the same salt. Each
    contribution must be 16 to 1024 bytes; the two must differ (a peer echoing our own bytes back
    would leave the salt to us alone). Raises ``InvalidPeerData`` otherwise.
    """
    for name, part in (("A", salt_a), ("B", salt_b)):
        if not MIN_SALT_CONTRIBUTION <= len(part) <= MAX_SALT_CONTRIBUTION:
            raise InvalidPeerData(
                f"party {name}'s PSI salt contribution must be {MIN_SALT_CONTRIBUTION} to "
                f"{MAX_SALT_CONTRIBUTION} random bytes; got {len(part)}"
            )
    if salt_a == salt_b:
        raise InvalidPeerData(
            "the two PSI salt contributions are identical; each party must draw its own"
        )
    digest = hashlib.sha256(_SALT_DOMAIN)
    for part in (salt_a, salt_b):
        digest.update(len(part).to_bytes(2, "big"))
        digest.update(part)
    return digest.digest()


def intersect(own_double: bytes, peer_double: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Match two lists of double-blinded points.

    ``own_double``: ``H(id)^(k_A k_B)`` for our IDs, in our order; ``peer_double``: the same for the
    peer's IDs, in the peer's order (32 bytes per point). Returns ``(own_index, peer_index)``, two
    int64 arrays of equal length m: ``own_index[j]`` and ``peer_index[j]`` are the rows of the j-th
    common ID. The matches are sorted by the double-blinded point bytes, an order both parties
    compute alike and that reveals neither's row order.

    Raises ``InvalidPeerData`` when a length is not a multiple of 32 or a list holds the same point
    twice (distinct IDs never collide; a repeated point is a peer error or a duplicate ID).
    """
    own = _as_point_array(own_double, "our double-blinded points")
    peer = _as_point_array(peer_double, "the peer's double-blinded points")
    _, own_index, peer_index = np.intersect1d(own, peer, assume_unique=True, return_indices=True)
    return own_index.astype(np.int64), peer_index.astype(np.int64)


def check_points(points: bytes, what: str) -> int:
    """Check points we only compare (never multiply): returns their count.

    Each must be a canonical ristretto255 encoding (RFC 9496 section 4.3.1: a field element
    s < p = 2^255 - 19, little-endian, non-negative, i.e. even) and not the identity (all zeros).
    Whether it decodes to a group element is not checked here: such points are only compared,
    byte for byte, with points we computed ourselves (canonical encodings of group elements), so
    one that does not decode can never match. Vectorised: about 1 ms per 100,000 points, where
    libsodium's full decoding takes 2 s. Raises ``InvalidPeerData`` naming the first bad item
    (by position, never by value).
    """
    if len(points) % POINT_BYTES:
        raise InvalidPeerData(
            f"{what} must be a multiple of {POINT_BYTES} bytes long; got {len(points)}"
        )
    encoded = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)
    negative = (encoded[:, 0] & 1) == 1
    top_bit = (encoded[:, -1] & 0x80) != 0
    # s >= p: the 255-bit value is at least 2^255 - 19, i.e. bytes 1..30 all 0xff, byte 31 0x7f
    # and byte 0 at least 0xed (with the top bit clear).
    not_reduced = (
        (encoded[:, 0] >= 0xED)
        & np.all(encoded[:, 1:31] == 0xFF, axis=1)
        & (encoded[:, 31] == 0x7F)
    )
    identity = ~encoded.any(axis=1)
    bad = np.flatnonzero(negative | top_bit | not_reduced | identity)
    if bad.size:
        raise InvalidPeerData(
            f"{what}: item {int(bad[0])} is not a canonical ristretto255 point other than the "
            "identity; refused"
        )
    return len(encoded)


def _as_point_array(points: bytes, what: str) -> np.ndarray:
    if len(points) % POINT_BYTES:
        raise InvalidPeerData(
            f"{what} must be a multiple of {POINT_BYTES} bytes long; got {len(points)}"
        )
    # Fixed-width byte strings: numpy compares and sorts them as the raw 32 bytes (padding with
    # NUL bytes cannot merge two different 32-byte values, because all are exactly 32 bytes).
    array = np.frombuffer(points, dtype=f"S{POINT_BYTES}")
    if len(np.unique(array)) != len(array):
        raise InvalidPeerData(f"{what} hold the same point more than once")
    return array


# ---- the work itself, run inline or in worker processes ------------------------------------------


def hash_ids(ids: Sequence[str], salt: bytes) -> bytes:
    """``H(id)`` for each ID, unblinded (32 bytes each): for tests and the peer's-eye view only.

    Never send these: without a secret scalar on top, anyone can recompute them from a guess.
    """
    from_hash = _sodium().crypto_core_ristretto255_from_hash
    prefix = _HASH_DOMAIN + salt
    return b"".join(from_hash(hashlib.sha512(prefix + i.encode("utf-8")).digest()) for i in ids)


def _blind_ids_chunk(scalar: bytes, ids: Sequence[str], salt: bytes, offset: int) -> bytes:
    """``H(id)^k`` for ``ids`` (item numbers in messages start at ``offset``): 32 bytes each."""
    sodium = _sodium()
    from_hash = sodium.crypto_core_ristretto255_from_hash
    multiply = sodium.crypto_scalarmult_ristretto255
    prefix = _HASH_DOMAIN + salt
    sha512 = hashlib.sha512
    # One preallocated buffer, not a list of n small bytes objects (65 bytes each in CPython).
    out = bytearray(len(ids) * POINT_BYTES)
    for j, identifier in enumerate(ids):
        if not isinstance(identifier, str):
            raise DataError(
                f"PSI IDs must be strings; item {offset + j} is {type(identifier).__name__}"
            )
        try:
            encoded = identifier.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(
                f"PSI ID at item {offset + j} cannot be encoded as UTF-8: {exc.reason}"
            ) from exc
        # from_hash never gives the identity for a hash output except with probability ~2^-252;
        # if it did, multiply() would raise ValueError rather than return a point matching others.
        start = j * POINT_BYTES
        out[start : start + POINT_BYTES] = multiply(
            scalar, from_hash(sha512(prefix + encoded).digest())
        )
    return bytes(out)


def _blind_points_chunk(scalar: bytes, points: bytes, _salt: bytes, offset: int) -> bytes:
    """``P^k`` for the concatenated 32-byte ``points`` (item numbers start at ``offset``)."""
    multiply = _sodium().crypto_scalarmult_ristretto255
    out = bytearray(len(points))
    view = memoryview(points)
    for start in range(0, len(points), POINT_BYTES):
        try:
            out[start : start + POINT_BYTES] = multiply(
                scalar, bytes(view[start : start + POINT_BYTES])
            )
        except ValueError as exc:  # libsodium: not a canonical encoding, or an identity product
            raise InvalidPeerData(
                f"the peer's point at item {offset + start // POINT_BYTES} is not a canonical "
                "ristretto255 point other than the identity; refused"
            ) from exc
    return bytes(out)


_Chunk = Callable[[bytes, Any, bytes, int], bytes]


def _run_chunked(
    work: _Chunk,
    private_raw: bytes,
    items: Any,
    count: int,
    item_size: int,
    salt: bytes,
    workers: int,
    executor: Executor | None = None,
) -> bytes:
    """``work`` over ``count`` items (a list of IDs, ``item_size`` 1, or concatenated points,
    ``item_size`` 32), inline, on ``executor``'s workers when given, or split over ``workers``
    local processes; the results concatenated in order."""
    if executor is not None:
        workers = executor.workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    n_chunks = min(workers, count // MIN_CHUNK_FOR_POOL)
    if n_chunks <= 1:
        return work(private_raw, items, salt, 0)
    size = math.ceil(count / n_chunks)
    offsets = list(range(0, count, size))
    chunks = [items[i * item_size : (i + size) * item_size] for i in offsets]
    if executor is not None:
        tasks = [
            (work, private_raw, chunk, salt, offset)
            for chunk, offset in zip(chunks, offsets, strict=True)
        ]
        return b"".join(executor.map(_chunk_task, tasks))
    # "spawn", not "fork": the nodes run gRPC threads, and forking a process with live gRPC threads
    # can deadlock the child.
    with local_process_pool(len(chunks), "spawn") as pool:
        results = pool.map(work, [private_raw] * len(chunks), chunks, [salt] * len(chunks), offsets)
        return b"".join(results)


def _chunk_task(task: tuple[_Chunk, bytes, list, bytes, int]) -> bytes:
    """Executor entry point: one chunk of blinding."""
    work, private_raw, chunk, salt, offset = task
    return work(private_raw, chunk, salt, offset)


def common_order(ids: Sequence[str], seed: int) -> np.ndarray:
    """The permutation that sorts the intersection's IDs by SHA-256(seed, id).

    Both parties hold the same intersection IDs after PSI, so both derive the same row order without
    another message, and the order (hence the train/validation split and the batches) depends only
    on the job's seed: the same job on the same data gives the same model.

    The m digests are kept as one (m,) array of 32-byte strings (32 bytes a row, not a Python
    object each) and sorted by numpy, which compares fixed-width byte strings byte by byte as
    unsigned values: the same order as sorting the digests as Python ``bytes`` (all are 32 bytes, so
    NUL padding plays no part). SHA-256 digests of distinct IDs never tie.
    """
    prefix = int(seed).to_bytes(8, "big", signed=False) + b"\x00"
    keys = np.empty(len(ids), dtype=f"S{_DIGEST_BYTES}")
    sha256 = hashlib.sha256
    for j, identifier in enumerate(ids):
        keys[j] = sha256(prefix + str(identifier).encode("utf-8")).digest()
    return np.argsort(keys, kind="stable").astype(np.int64)
