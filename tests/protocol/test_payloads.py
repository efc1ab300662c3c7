"""The one parser of B's partial scores: length, count and finiteness are checked before use."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.errors import InvalidPeerData
from fedlearn.protocol.payloads import scores_from_bytes, scores_to_bytes


def test_round_trip() -> None:
    scores = np.random.default_rng(7).normal(size=13)
    data = scores_to_bytes(scores)
    assert len(data) == 13 * 8
    np.testing.assert_array_equal(scores_from_bytes(data, 13), scores)
    assert scores_from_bytes(b"", 0).shape == (0,)


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (scores_to_bytes(np.zeros(3))[:-1], 3, "not a whole number of float64 values"),
        (
            scores_to_bytes(np.zeros(2)),
            3,
            r"expected 3 finite scores \(one per matched user\), got 2",
        ),
        (scores_to_bytes(np.zeros(4)), 3, "got 4"),
        (scores_to_bytes(np.array([0.0, np.nan, 1.0])), 3, "non-finite"),
        (scores_to_bytes(np.array([0.0, np.inf, 1.0])), 3, "non-finite"),
    ],
)
def test_malformed_scores_are_refused(data: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidPeerData, match=message):
        scores_from_bytes(data, count, per="matched user")
