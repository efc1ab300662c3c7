"""A's evaluation of a training run: the joint model on the validation rows, and an A-only baseline.

The joint scores need B's partial scores on the validation rows (``PartialScores(VALIDATION)``, which B
answers only between epochs and only when its policy allows partial scores); the baseline is A's own
plaintext logistic regression on the same split and preprocessing, so the report can show what B's
features add.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from fedlearn import metrics
from fedlearn.errors import PolicyViolation
from fedlearn.model import sigmoid
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import scores_from_bytes
from fedlearn.protocol.peer_api import PeerApi

log = logging.getLogger(__name__)


def joint_validation_scores(
    peer: PeerApi, session_id: str, x: np.ndarray, weights: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Joint probabilities on the validation ``rows``: A's scores ``x[rows] @ weights`` plus B's.

    Raises ``InvalidPeerData`` when B does not send one finite score per row.
    """
    reply = peer.partial_scores(m.PartialScoresRequest(session_id, m.RowSubset.VALIDATION))
    peer_scores = scores_from_bytes(reply.scores, len(rows), per="validation row")
    return sigmoid(x[rows] @ weights + peer_scores)


def evaluate(
    peer: PeerApi,
    session_id: str,
    x: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
) -> dict[str, Any]:
    """Validation metrics of the joint model and of an A-only plaintext baseline on the same split."""
    if len(validation_rows) == 0:
        return {"metrics": {}, "curves": {}}
    y_val = labels[validation_rows]
    try:
        joint = joint_validation_scores(peer, session_id, x, weights, validation_rows)
    except PolicyViolation as exc:
        log.warning("no joint validation metrics: %s", exc)
        joint = None
    a_only = a_only_scores(x[:, :-1], labels, train_rows, validation_rows)
    result: dict[str, Any] = {
        "metrics": {"a_only": metrics.summary(y_val, a_only)},
        "curves": {"a_only": {"y": y_val.astype(int).tolist(), "score": a_only.tolist()}},
    }
    if joint is not None:
        result["metrics"]["joint"] = metrics.summary(y_val, joint)
        result["curves"]["joint"] = {"y": y_val.astype(int).tolist(), "score": joint.tolist()}
    return result


def a_only_scores(
    x: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, validation_rows: np.ndarray
) -> np.ndarray:
    """A's own plaintext logistic regression on the same split and preprocessing (the baseline)."""
    baseline = LogisticRegression(max_iter=2000)
    baseline.fit(x[train_rows], labels[train_rows])
    return np.asarray(baseline.predict_proba(x[validation_rows])[:, 1])
