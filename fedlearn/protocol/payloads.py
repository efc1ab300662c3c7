"""Byte layouts of the plaintext payloads that cross (ciphertexts are in ``fedlearn.crypto.wire``).

Single big integers (a DJN base in OpenSession, the decrypted loss in EpochLoss): minimal big-endian
bytes, ``int_to_bytes`` / ``int_from_bytes`` (which checks the value lies in [1, bound)).

Partial scores: B's ``X_B w_B`` per row, as little-endian float64 (``PartialScoresResponse.scores``).
B encodes them with ``scores_to_bytes``; A parses them with ``scores_from_bytes``, which checks the
length and that every value is finite before A uses any of them.
"""

from __future__ import annotations

import numpy as np

from fedlearn.errors import InvalidPeerData

SCORE_DTYPE = "<f8"


def scores_to_bytes(scores: np.ndarray) -> bytes:
    """Partial scores (shape (rows,)) as little-endian float64 bytes."""
    return np.asarray(scores, dtype=SCORE_DTYPE).tobytes()


def scores_from_bytes(data: bytes, expected_count: int, *, per: str = "row") -> np.ndarray:
    """The peer's partial scores, shape (expected_count,) float64.

    ``per`` names one row in the message (e.g. "matched user"). Raises ``InvalidPeerData`` when
    the bytes are not a whole number of float64 values, the count is not ``expected_count``, or a
    value is not finite.
    """
    if len(data) % 8:
        raise InvalidPeerData(
            f"PartialScores: {len(data)} bytes is not a whole number of float64 values"
        )
    scores = np.frombuffer(data, dtype=SCORE_DTYPE)
    if len(scores) != expected_count:
        raise InvalidPeerData(
            f"PartialScores: expected {expected_count} finite scores (one per {per}), got {len(scores)}"
        )
    if not np.all(np.isfinite(scores)):
        raise InvalidPeerData(
            f"PartialScores: expected {expected_count} finite scores, got non-finite values"
        )
    return scores.astype(np.float64)


def int_to_bytes(value: int | None) -> bytes:
    """A non-negative integer as minimal big-endian bytes (empty for None)."""
    if value is None:
        return b""
    value = int(value)
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def int_from_bytes(data: bytes, bound: int, *, what: str = "value") -> int | None:
    """A big-endian integer the peer sent, checked to lie in [1, bound); None for empty bytes."""
    if not data:
        return None
    if len(data) > (int(bound).bit_length() + 7) // 8 + 1:
        raise InvalidPeerData(f"{what}: {len(data)} bytes is longer than its bound allows")
    value = int.from_bytes(data, "big")
    if not 1 <= value < int(bound):
        raise InvalidPeerData(f"{what}: out of range")
    return value
