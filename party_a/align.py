"""A's side of the private set intersection (ECDH-PSI over ristretto255), the first phase of every session.

    B -> A  H(id_B)^b        PsiPeerSet   (B blinds its IDs while A blinds its own)
    A -> B  H(id_A)^a        PsiBlind     (B starts raising them to b, and keeps the result)
    A -> B  H(id_B)^(ba)     PsiResult    (A raised B's points meanwhile; B's order)
    B:      matches H(id_B)^(ba) against its own H(id_A)^(ab): B's rows of the intersection
    B -> A  H(id_A)^(ab)     (A's order), and B's count
    A:      matches the same two lists: A's rows; B's count must agree
    both:   sort the matched rows by SHA-256(seed, id): the common row order (``common_order``)

Each party learns the other's set size and the intersection, nothing about the other's other IDs.
B computes its rows itself and sends ``H(id_A)^(ab)`` only after A has committed to
``H(id_B)^(ba)``, so A cannot claim a row of B it does not hold the ID of (docs/protocol.md section 1).
Secret scalars and the salt are fresh per session; the salt mixes a random share from each party.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fedlearn.crypto.executor import Executor
from fedlearn.crypto.psi import (
    POINT_BYTES,
    PsiKey,
    check_points,
    common_order,
    intersect,
    session_salt,
)
from fedlearn.errors import FedlearnError, InvalidPeerData
from fedlearn.faults import pause_point
from fedlearn.progress import ProgressCallback, ProgressEvent, no_progress
from fedlearn.protocol import messages as m
from fedlearn.protocol.peer_api import PeerApi
from fedlearn.protocol.policy import check_training_protocol


@dataclass(frozen=True)
class Alignment:
    """The outcome of PSI for A: a session with B and A's rows in the common order."""

    session: m.OpenSessionResponse
    own_rows: np.ndarray  # A's row indices of the intersection, in the common order
    own_size: int
    peer_size: int
    seconds: float


def open_and_align(
    peer: PeerApi,
    request: m.OpenSessionRequest,
    own_ids: Sequence[str],
    *,
    workers: int = 1,
    executor: Executor | None = None,
    progress: ProgressCallback = no_progress,
) -> Alignment:
    """Open a session with ``request`` (A's salt is filled in here) and run PSI on ``own_ids``.

    A's blinding runs on ``executor`` when given (the node's pool or Ray actors), else on a
    pool of ``workers`` processes started for it. ``progress`` gets a message-less "alignment"
    event between the PSI's steps: where it raises (a cancelled job, a client that went away),
    the PSI stops there instead of running on for a CLI that is gone.

    Closes the session on B's side if anything fails after it was opened.
    """
    started = time.perf_counter()
    own_salt = secrets.token_bytes(32)
    opened = peer.open_session(dataclasses.replace(request, psi_salt=own_salt))
    try:
        if request.purpose == m.Purpose.TRAIN:  # before any work: a B of another release
            check_training_protocol("this node", peer.peer_name, opened.training_protocol)
        pause_point("align")  # fault-injection tests only (fedlearn.faults)
        own_rows, peer_size = _intersect(
            peer, opened, own_salt, own_ids, workers, executor, progress
        )
        own_rows = own_rows[common_order([own_ids[i] for i in own_rows], order_seed(request))]
    except BaseException:
        close_quietly(peer, opened.session_id)
        raise
    return Alignment(opened, own_rows, len(own_ids), peer_size, time.perf_counter() - started)


def _intersect(
    peer: PeerApi,
    opened: m.OpenSessionResponse,
    own_salt: bytes,
    own_ids: Sequence[str],
    workers: int,
    executor: Executor | None,
    progress: ProgressCallback,
) -> tuple[np.ndarray, int]:
    step = ProgressEvent("alignment")
    salt = session_salt(own_salt, opened.psi_salt)
    key = PsiKey.generate()
    # A blinds its IDs while B blinds its own (B starts at OpenSession); then B raises A's points
    # to its key while A raises B's points to A's: each phase keeps both parties busy.
    blinded = key.blind_ids(list(own_ids), salt, workers=workers, executor=executor)
    progress(step)
    peer_set = peer.psi_peer_set(m.PsiPeerSetRequest(opened.session_id))
    progress(step)
    peer_size = len(peer_set.points) // POINT_BYTES
    if peer_set.total != peer_size or len(peer_set.points) % POINT_BYTES:
        raise InvalidPeerData(f"PsiPeerSet: announced {peer_set.total} points, sent {peer_size}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="psi-blind") as pool:
        reply = pool.submit(peer.psi_blind, m.PsiBlindRequest(opened.session_id, blinded))
        double_peer = key.blind_points(peer_set.points, workers=workers, executor=executor)
        accepted = reply.result().accepted
    if accepted != len(own_ids):
        raise InvalidPeerData(f"PsiBlind: sent {len(own_ids)} points, B took {accepted}")
    progress(step)
    result = peer.psi_result(m.PsiResultRequest(opened.session_id, double_peer))
    double_own = result.points
    if len(double_own) != len(blinded):
        raise InvalidPeerData(
            f"PsiResult: sent {len(own_ids)} points, got {len(double_own) / POINT_BYTES:g} back"
        )
    check_points(double_own, "PsiResult: B's blinding of A's points")
    own_rows, _ = intersect(double_own, double_peer)
    if result.intersection_size != len(own_rows):
        raise InvalidPeerData(
            f"PsiResult: B counts {result.intersection_size} common IDs, A counts {len(own_rows)}"
        )
    return own_rows, peer_size


def order_seed(request: m.OpenSessionRequest) -> int:
    """The seed of the session's row order: the job's seed for training, 0 otherwise."""
    return int(request.train.seed) if request.purpose == m.Purpose.TRAIN else 0


def close_quietly(peer: PeerApi, session_id: str, *, discard: bool = False) -> None:
    """Best-effort CloseSession (B expires sessions anyway); ``discard`` when the job was
    cancelled, so B drops its checkpoints of it too."""
    with contextlib.suppress(FedlearnError):
        peer.close_session(m.CloseSessionRequest(session_id, discard))
