"""B's protocol state for one session: the PSI step order, the aligned rows, and scoring's partial scores.

B answers; A drives. A session moves through a fixed order of steps: PsiBlind and PsiPeerSet (in either
order), then PsiResult (the aligned rows), then the training steps (``train_b``) or PartialScores for a
scoring session. Everything A sends is checked before use: point encodings and counts, and step order.

B computes the intersection itself and never takes A's word for which of its rows matched: A sends
its points ``H(id_A)^a`` (PsiBlind) and, in PsiResult, B's points raised to its scalar
``H(id_B)^(ba)``; B matches those against ``H(id_A)^(ab)``, which it computed itself and which it
sends back only after that. A cannot make one of B's rows match without holding its ID: it would have
to produce ``H(id_B)^(ab)`` for a row it does not know before seeing any value raised to b
(computational Diffie-Hellman). PsiResult is taken once.

B's node (``party_b.node``) owns the sessions: it opens them, finds them by id, checks the partner,
expires them and holds each session's lock while a step runs here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from fedlearn.config import DatasetSpec
from fedlearn.crypto.executor import Executor as CryptoExecutor
from fedlearn.crypto.psi import POINT_BYTES, PsiKey, check_points, common_order, intersect
from fedlearn.data import PartyTable
from fedlearn.errors import InvalidPeerData, SessionError
from fedlearn.preprocess import Preprocessor
from fedlearn.protocol import messages as m
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.protocol.steps import fixed_point_features, row_scores
from fedlearn.protocol.train_b import PendingTraining, TrainingB, prepare_training

SCORE_CHUNK_ROWS = 65_536
"""Aligned rows B preprocesses at a time for a scoring session's partial scores."""


@dataclass
class SessionB:
    """One session at B. ``last_used`` and ``lock`` are the node's (expiry, one step at a time)."""

    session_id: str
    partner: str
    purpose: m.Purpose
    dataset: DatasetSpec
    table: PartyTable
    psi_key: PsiKey
    salt: bytes
    # PSI steps done: "blind" (A's points taken) and "peer_set" (B's points sent), in either order;
    # then "result" (PsiResult taken: never twice) and "aligned".
    stage: set[str] = field(default_factory=set)
    aligned_rows: np.ndarray | None = None
    training: TrainingB | PendingTraining | None = None
    model: dict[str, Any] | None = None
    blinded_own: Future[bytes] | None = None  # B's own blinded IDs, computed while A blinds its own
    # A's points raised to B's scalar: computed from PsiBlind on, sent only in PsiResult's answer.
    double_blinded_peer: Future[bytes] | None = None
    # Training: B's checkpoint folder for this partner's job (fedlearn.checkpoint), "" for none.
    checkpoint_key: str = ""
    job_id: str = ""
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_background(
        self, background: Executor, work: Callable[..., bytes], *args: Any
    ) -> Future[bytes]:
        """``work(*args)`` on ``background``; the lease starts again when it ends, before its
        future is done (so no expiry check sees the work finished and the lease still old): the
        lease counts A's silence, not the time B spends blinding a large set."""

        def run() -> bytes:
            try:
                return work(*args)
            finally:
                self.last_used = time.monotonic()

        return background.submit(run)

    def working_in_background(self) -> bool:
        """Whether B's PSI blinding for this session is still queued or running."""
        work = (self.blinded_own, self.double_blinded_peer)
        return any(future is not None and not future.done() for future in work)

    def psi_blind(
        self,
        request: m.PsiBlindRequest,
        background: Executor,
        *,
        executor: CryptoExecutor | None = None,
    ) -> m.PsiBlindResponse:
        """Take A's blinded points ``H(id_A)^a`` and start raising them to B's scalar on
        ``background`` (spread over ``executor``'s workers when given); the result is kept until
        PsiResult. Answers with the count taken."""
        _require_stage(self, "PsiBlind", done=(), not_done=("blind", "aligned"))
        if len(request.points) % POINT_BYTES:
            raise InvalidPeerData(
                f"PsiBlind: points must be a multiple of {POINT_BYTES} bytes long; "
                f"got {len(request.points)}"
            )
        self.double_blinded_peer = self.in_background(
            background, partial(self.psi_key.blind_points, executor=executor), request.points
        )
        self.stage.add("blind")
        return m.PsiBlindResponse(accepted=len(request.points) // POINT_BYTES)

    def psi_peer_set(self) -> m.PsiPeerSetResponse:
        """B's own IDs, blinded with B's PSI key (computed in the background since OpenSession)."""
        _require_stage(self, "PsiPeerSet", done=(), not_done=("peer_set", "aligned"))
        assert self.blinded_own is not None
        points = self.blinded_own.result()
        self.stage.add("peer_set")
        return m.PsiPeerSetResponse(points=points, total=len(self.table.ids))

    def psi_result(
        self, request: m.PsiResultRequest, *, name: str, policy: PeerPolicy
    ) -> tuple[np.ndarray, bytes]:
        """Compute the intersection from A's blinding of B's points; returns (B's rows in the
        common order, A's points raised to B's scalar for A).

        ``request.peer_points`` must be one valid point per row B sent in PsiPeerSet, in that
        order (``InvalidPeerData`` otherwise). Taken once: a second PsiResult is a ``SessionError``
        even when the first was refused. A training session's state is prepared here
        (``train_b.prepare_training``), a scoring session's partial scores too. ``name`` is B's
        name, for refusals.
        """
        _require_stage(self, "PsiResult", done=("blind", "peer_set"), not_done=("result",))
        self.stage.add("result")
        n_rows = len(self.table.ids)
        if len(request.peer_points) != n_rows * POINT_BYTES:
            raise InvalidPeerData(
                f"PsiResult: expected {n_rows} points, one per point B sent in PsiPeerSet; got "
                f"{len(request.peer_points) / POINT_BYTES:g}"
            )
        check_points(request.peer_points, "PsiResult: A's blinding of B's points")
        assert self.double_blinded_peer is not None
        double_peer = self.double_blinded_peer.result()
        rows, _ = intersect(request.peer_points, double_peer)
        seed = self.training.params.seed if self.training is not None else 0
        rows = rows[common_order([str(self.table.ids[i]) for i in rows], seed)]
        self.aligned_rows = rows
        self.stage.add("aligned")
        if self.purpose == m.Purpose.TRAIN:
            assert isinstance(self.training, PendingTraining)
            self.training = prepare_training(
                self.training,
                name=name,
                policy=policy,
                table=self.table,
                dataset=self.dataset.name,
                aligned_rows=rows,
            )
        elif self.purpose == m.Purpose.SCORE:
            self._prepare_scoring()
        return rows, double_peer

    def partial_scores(self, subset: m.RowSubset) -> np.ndarray:
        """B's partial scores X_B w_B (plaintext, shape (rows,)) on the validation or aligned rows."""
        if subset == m.RowSubset.VALIDATION:
            training = self.training
            if not isinstance(training, TrainingB) or not training.between_epochs:
                # Only between epochs: scores after every batch would trace B's weights.
                raise SessionError(
                    "PartialScores(VALIDATION) is answered only between epochs of a training session"
                )
            return training.validation_scores()
        if subset == m.RowSubset.ALIGNED:
            if self.purpose != m.Purpose.SCORE or "aligned" not in self.stage:
                raise SessionError("PartialScores(ALIGNED) needs a scoring session after alignment")
            assert self.model is not None
            return np.asarray(self.model["_scores"])
        raise InvalidPeerData("PartialScores: subset must be ALIGNED or VALIDATION")

    def _prepare_scoring(self) -> None:
        """B's partial scores ``X_B w_B`` for the aligned rows, ``SCORE_CHUNK_ROWS`` rows at a time:
        the preprocessed copy of B's features never exceeds one chunk (the scores, 8 bytes a row,
        are kept for PartialScores)."""
        assert self.model is not None and self.aligned_rows is not None
        model = self.model
        preprocessor = Preprocessor.from_dict(model["preprocessor"])
        weights = np.asarray(model["weights"], dtype=np.float64)
        rows = self.aligned_rows
        scores = np.empty(len(rows), dtype=np.float64)
        for start in range(0, len(rows), SCORE_CHUNK_ROWS):
            chunk = rows[start : start + SCORE_CHUNK_ROWS]
            frame = self.table.features.iloc[chunk].reset_index(drop=True)
            x = fixed_point_features(preprocessor, frame).x
            if x.shape[1] != len(weights):
                raise SessionError(
                    f"model {model['model_id']}: B's data gives {x.shape[1]} columns, but the "
                    f"model was trained with {len(weights)}"
                )
            scores[start : start + len(chunk)] = row_scores(x, weights)
        model["_scores"] = scores


def _require_stage(
    session: SessionB, step: str, *, done: tuple[str, ...], not_done: tuple[str, ...]
) -> None:
    """PSI step order: ``done`` steps must have happened, ``not_done`` ones must not."""
    missing = [name for name in done if name not in session.stage]
    repeated = [name for name in not_done if name in session.stage]
    if missing or repeated:
        state = ", ".join(sorted(session.stage)) or "opened"
        raise SessionError(f"{step} is out of order: the session's PSI steps so far: {state}")
