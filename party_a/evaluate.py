"""A's evaluation of a training run: the joint model on the validation rows, its calibration, and
A's own A-only model (the baseline, and the fallback that scores users B lacks).

The joint scores need B's partial scores on the validation rows (``PartialScores(VALIDATION)``, which B
answers only between epochs and only when its policy allows partial scores). On them A fits the joint
model's calibration (``fedlearn.calibration``). The A-only model is A's own plaintext logistic
regression on the same training rows and preprocessing, calibrated on the same validation rows, so
both models give probabilities on one scale (docs/scoring.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from fedlearn import metrics
from fedlearn.calibration import Calibration, fit_platt
from fedlearn.errors import PolicyViolation
from fedlearn.model import sigmoid
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import scores_from_bytes
from fedlearn.protocol.peer_api import PeerApi

log = logging.getLogger(__name__)


def joint_validation_scores(
    peer: PeerApi, session_id: str, x: np.ndarray, weights: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Joint (uncalibrated) probabilities on the validation ``rows``; see ``joint_validation_logits``."""
    return sigmoid(joint_validation_logits(peer, session_id, x, weights, rows))


def joint_validation_logits(
    peer: PeerApi, session_id: str, x: np.ndarray, weights: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Joint logits on the validation ``rows``: A's scores ``x[rows] @ weights`` plus B's.

    Raises ``InvalidPeerData`` when B does not send one finite score per row.
    """
    reply = peer.partial_scores(m.PartialScoresRequest(session_id, m.RowSubset.VALIDATION))
    peer_scores = scores_from_bytes(reply.scores, len(rows), per="validation row")
    return np.asarray(x[rows] @ weights + peer_scores, dtype=np.float64)


def evaluate(
    peer: PeerApi,
    session_id: str,
    x: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    feature_names: list[str],
) -> dict[str, Any]:
    """Validation metrics, the joint model's calibration and A's own (A-only) fallback model.

    ``x``: A's features of all aligned rows, intercept column last; ``weights``: A's joint weights.
    Returns ``metrics`` and ``curves`` (joint and A-only, calibrated probabilities on the validation
    rows), ``calibration`` (the joint model's Platt map, fitted on those rows; the identity when
    there are none or B refuses partial scores) and ``a_only_model`` (the fallback for users B
    lacks: weights by name, intercept and its own calibration).
    """
    fallback = fit_a_only(x[:, :-1], labels, train_rows, validation_rows, feature_names)
    result: dict[str, Any] = {
        "metrics": {},
        "curves": {},
        "calibration": Calibration().to_dict(),
        "a_only_model": fallback,
    }
    if len(validation_rows) == 0:
        return result
    y_val = labels[validation_rows]
    a_only = a_only_probabilities(fallback, x[validation_rows, :-1])
    result["metrics"]["a_only"] = metrics.summary(y_val, a_only)
    result["curves"]["a_only"] = {"y": y_val.astype(int).tolist(), "score": a_only.tolist()}
    try:
        joint_logits = joint_validation_logits(peer, session_id, x, weights, validation_rows)
    except PolicyViolation as exc:
        log.warning("no joint validation metrics and no calibration: %s", exc)
        return result
    calibration = fit_platt(
        joint_logits, y_val, **labelled_rate(labels, train_rows, validation_rows)
    )
    joint = calibration.apply(joint_logits)
    result["calibration"] = calibration.to_dict()
    result["metrics"]["joint"] = metrics.summary(y_val, joint)
    result["metrics"]["joint_uncalibrated"] = metrics.summary(y_val, sigmoid(joint_logits))
    result["curves"]["joint"] = {"y": y_val.astype(int).tolist(), "score": joint.tolist()}
    return result


def fit_a_only(
    x: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    feature_names: list[str],
) -> dict[str, Any]:
    """A's own plaintext logistic regression on the same training rows and preprocessing.

    ``x``: A's features without the intercept column, shape (aligned rows, f). scikit-learn's
    default L2 (C = 1); calibrated with Platt scaling on the validation rows like the joint model,
    so both give probabilities on the same scale. Returns the JSON-able model for A's shard.
    """
    calibration = Calibration()
    if x.shape[1] == 0:
        # A brought the label alone: its own model is the label rate of every row A holds a
        # label for (training and validation, as calibration's level): one score for all.
        rate = labelled_rate(labels, train_rows, validation_rows)["base_rate"]
        rate = float(np.clip(rate, 1e-6, 1 - 1e-6))
        return {
            "weights": {},
            "intercept": math.log(rate / (1 - rate)),
            "calibration": calibration.to_dict(),
            "train_rows": len(train_rows),
        }
    model = LogisticRegression(max_iter=2000)
    model.fit(x[train_rows], labels[train_rows])
    weights = np.asarray(model.coef_[0], dtype=np.float64)
    intercept = float(model.intercept_[0])
    if len(validation_rows):
        logits = x[validation_rows] @ weights + intercept
        calibration = fit_platt(
            logits,
            labels[validation_rows],
            **labelled_rate(labels, train_rows, validation_rows),
        )
    return {
        "weights": {name: float(w) for name, w in zip(feature_names, weights, strict=True)},
        "intercept": intercept,
        "calibration": calibration.to_dict(),
        "train_rows": len(train_rows),
    }


def labelled_rate(
    labels: np.ndarray, train_rows: np.ndarray, validation_rows: np.ndarray
) -> dict[str, Any]:
    """``fit_platt``'s level arguments: the label rate over A's training and validation rows and
    their number (``fedlearn.calibration``)."""
    both = np.concatenate([labels[train_rows], labels[validation_rows]])
    return {"base_rate": float(both.mean()), "base_rows": len(both)}


def a_only_probabilities(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the A-only ``model`` (as ``fit_a_only`` returns it) for rows ``x``
    (A's features without the intercept column, in the model's column order)."""
    weights = np.array(list(model["weights"].values()), dtype=np.float64)
    logits = x @ weights + float(model["intercept"])
    return Calibration.from_dict(model["calibration"]).apply(logits)
