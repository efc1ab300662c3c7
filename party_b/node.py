"""B's node: its sessions, its data, its model store and its worker pools; A's calls arrive here.

B answers; A drives. Each session is bound to the partner (certificate name) that opened it; each RPC
finds the session, checks the partner, holds the session's lock and hands the step to the protocol:
the PSI steps and partial scores to ``fedlearn.protocol.session_b``, the training steps to
``fedlearn.protocol.train_b``, the training job's policy check to ``fedlearn.protocol.policy``. Anything
out of order, from another partner, or malformed is refused with a ``FedlearnError`` that the transport
maps to a gRPC status.

Limits (b.toml [policy], checked before any work): at most ``max_sessions`` open sessions,
``max_sessions_per_partner`` per partner and ``max_training_sessions`` training sessions (each holds
an obfuscator helper process); one more is refused with ``Busy`` (RESOURCE_EXHAUSTED). Each session
holds a lease of ``session_lease_s`` seconds, renewed by every request: a reaper thread drops the
sessions of a partner that vanished (and stops their helpers) once the lease has passed, skipping a
session whose step is still running.

The servicer (``party_b.servicer``) only adapts gRPC streams to these methods; the in-memory transport
(``fedlearn.protocol.in_memory``) calls them directly, so tests run both roles in one process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from fedlearn.checkpoint import (
    MAX_RESUME_EPOCHS,
    CheckpointStore,
    check_job_id,
    latest_common_epoch,
    partner_job_key,
)
from fedlearn.config import DatasetSpec
from fedlearn.crypto.executor import Executor, make_executor
from fedlearn.crypto.keys import key_fingerprint, public_key_to_bytes
from fedlearn.crypto.psi import PsiKey, session_salt
from fedlearn.data import PartyTable
from fedlearn.errors import (
    Busy,
    DataError,
    InvalidPeerData,
    NotFound,
    PolicyViolation,
    SessionEnded,
    SessionError,
)
from fedlearn.faults import pause_point
from fedlearn.protocol import messages as m
from fedlearn.protocol.payloads import int_to_bytes, scores_to_bytes
from fedlearn.protocol.policy import PeerPolicy, check_train_job, check_training_protocol
from fedlearn.protocol.session_b import SessionB
from fedlearn.protocol.train_b import (
    PendingTraining,
    TrainingB,
    check_step,
    new_training_keys,
)
from fedlearn.store import ModelStore, check_model_id
from fedlearn.tables import TableCache

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long closing the node waits for each session drop already under way (a drop stops the
#: session's obfuscator helper, which finishes its current chunk first).
DROP_WAIT_S = 30.0


class NodeB:
    """B's node logic. Thread-safe: gRPC calls arrive on a thread pool."""

    def __init__(
        self,
        *,
        name: str,
        datasets: dict[str, DatasetSpec],
        policy: PeerPolicy,
        model_dir: Path,
        allowed_partners: frozenset[str] | set[str],
        workers: int = 1,
        session_ttl_s: float | None = None,
        background: str = "thread",
        executor: str | Executor = "process",
        ray_address: str | None = None,
    ) -> None:
        self.name = name
        self.datasets = datasets
        self.policy = policy
        self.store = ModelStore(model_dir)
        self.store.sweep()
        # Each training job's last epochs, per partner and job id (fedlearn.checkpoint).
        self.checkpoints = CheckpointStore(Path(model_dir) / ".checkpoints")
        self.checkpoints.sweep()
        self.allowed_partners = frozenset(allowed_partners)
        # Where B's heavy crypto runs: a local pool or Ray actors ("process" or "ray", with
        # ray_address), or an executor made by the caller (tests); the node closes it.
        self.executor: Executor = (
            make_executor(workers, executor, ray_address=ray_address)
            if isinstance(executor, str)
            else executor
        )
        # Where B's obfuscator pools are filled (see OwnKeyEngine): Ray's actors, which keep the
        # DJN tables, when the executor is Ray.
        self.background = "executor" if self.executor.remote else background
        # The lease: a session unused this long is dropped (None: the policy's session_lease_s).
        self.session_ttl_s = session_ttl_s if session_ttl_s is not None else policy.session_lease_s
        self._sessions: dict[str, SessionB] = {}
        self._opening: list[tuple[str, m.Purpose]] = []  # admitted, not yet in _sessions
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._dropping: list[threading.Thread] = []  # close_session's drops under way
        self._reaper = threading.Thread(target=self._reap, name="b-session-reaper", daemon=True)
        self._reaper.start()
        self._tables = TableCache(name)
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="b-gradient")

    def close(self) -> None:
        """Drop every open session (stopping their obfuscator helpers), then the worker pools."""
        self._stopped.set()
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            self._drop(session)
        # Sessions closed by the partner are dropped in threads of their own (close_session):
        # let them finish, so that a closed node holds nothing (its held ciphertexts included).
        with self._lock:
            dropping, self._dropping = self._dropping, []
        for thread in dropping:
            thread.join(timeout=DROP_WAIT_S)
        self._background.shutdown(wait=False, cancel_futures=True)
        self.executor.close()

    # ---- sessions -------------------------------------------------------------------------------

    def check_partner(self, partner: str | None) -> str:
        """``partner`` if it is allowed; PolicyViolation otherwise (before any request is read)."""
        return self._check_partner(partner)

    def _check_partner(self, partner: str | None) -> str:
        if not partner or partner not in self.allowed_partners:
            raise PolicyViolation(
                f"partner {partner!r} is not allowed by {self.name}; its [partners] allowed list "
                f"is {sorted(self.allowed_partners)}",
                public=f"partner {partner!r} is not allowed by {self.name}",
            )
        return partner

    def _session(self, session_id: str, partner: str | None) -> SessionB:
        partner = self._check_partner(partner)
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionError(
                f"unknown or expired session {session_id[:12]!r}; open a new session"
            )
        if session.partner != partner:
            raise PolicyViolation("this session belongs to another partner")
        session.last_used = time.monotonic()
        return session

    def _expire_sessions(self) -> int:
        """Drop the sessions whose lease has passed and that run no step; returns how many."""
        now = time.monotonic()
        with self._lock:
            stale = [
                session
                for session in self._sessions.values()
                if now - session.last_used > self.session_ttl_s
                and not session.working_in_background()  # nor does B's own PSI work
                and session.lock.acquire(blocking=False)  # a running step keeps its session
            ]
            for session in stale:
                del self._sessions[session.session_id]
        for session in stale:
            try:
                self._drop(session)
            finally:
                session.lock.release()
            log.info(
                "session %s of %s expired: no request for %.0f s (lease); dropped",
                session.session_id[:8],
                session.partner,
                now - session.last_used,
            )
        return len(stale)

    def _reap(self) -> None:
        interval = min(30.0, max(0.05, self.session_ttl_s / 4))
        while not self._stopped.wait(interval):
            try:
                self._expire_sessions()
            except Exception:  # the reaper must outlive one bad session
                log.exception("session reaper")

    def _admit(self, partner: str, purpose: m.Purpose) -> None:
        """Reserve room for one more session, or raise Busy naming the limit (under ``_lock``)."""
        policy = self.policy
        held = [(s.partner, s.purpose) for s in self._sessions.values()] + self._opening
        if len(held) >= policy.max_sessions:
            limit = f"{len(held)} open sessions, the limit (max_sessions)"
        elif sum(p == partner for p, _ in held) >= policy.max_sessions_per_partner:
            limit = f"{policy.max_sessions_per_partner} open sessions for {partner}, the limit "
            limit += "(max_sessions_per_partner)"
        elif purpose == m.Purpose.TRAIN and (
            sum(k == m.Purpose.TRAIN for _, k in held) >= policy.max_training_sessions
        ):
            limit = f"{policy.max_training_sessions} training sessions, the limit "
            limit += "(max_training_sessions)"
        else:
            self._opening.append((partner, purpose))
            return
        raise Busy(
            f"{self.name} has {limit}; wait for a job to finish (idle sessions expire after "
            f"{self.session_ttl_s:g} s) or raise it in {self.name}'s [policy]"
        )

    def _drop(self, session: SessionB) -> None:
        if session.training is not None:
            session.training.close()
            session.training = None

    def open_session(
        self, request: m.OpenSessionRequest, partner: str | None
    ) -> m.OpenSessionResponse:
        partner = self._check_partner(partner)
        self._expire_sessions()
        if request.purpose not in (m.Purpose.ALIGN, m.Purpose.TRAIN, m.Purpose.SCORE):
            raise InvalidPeerData("OpenSession: purpose must be ALIGN, TRAIN or SCORE")
        with self._lock:
            self._admit(partner, request.purpose)
        try:
            return self._open_session(request, partner)
        finally:
            with self._lock:
                self._opening.remove((partner, request.purpose))

    def _open_session(self, request: m.OpenSessionRequest, partner: str) -> m.OpenSessionResponse:
        model: dict[str, Any] | None = None
        dataset_name = request.dataset
        if request.purpose == m.Purpose.SCORE:
            model = self.store.load(check_model_id(request.model_id))
            if model.get("partner") != partner:
                # To the caller, another partner's model is no model at all (names no partner).
                raise NotFound(
                    f"model {request.model_id} was trained with partner {model.get('partner')!r}, "
                    f"not {partner!r}",
                    public=f"no model {request.model_id!r} here",
                )
            if not self.policy.allow_partial_scores:
                raise PolicyViolation(
                    f"{self.name}'s policy does not allow returning partial scores"
                )
            dataset_name = dataset_name or model["dataset"]
            if dataset_name != model["dataset"]:
                raise PolicyViolation(
                    f"model {request.model_id} was trained on dataset {model['dataset']!r}, "
                    f"not {dataset_name!r}"
                )
        spec = self.datasets.get(dataset_name)
        if spec is None:
            raise NotFound(
                f"{self.name} has no dataset {dataset_name!r}; it exposes: "
                f"{', '.join(sorted(self.datasets)) or 'none'}"
            )
        response_key = m.PaillierKey()
        held: tuple[int, ...] = ()
        checkpoint_key, resume_epoch, resume_state = "", 0, None
        if request.purpose == m.Purpose.TRAIN:
            check_training_protocol(self.name, partner, request.training_protocol)
            check_train_job(self.name, self.policy, request.train)
            checkpoint_key, held, resume_epoch, resume_state = self._resume_point(
                request, partner, spec.name
            )
        table = self._load_table(spec)
        if request.purpose == m.Purpose.TRAIN and not (
            table.numeric_columns or table.categorical_columns
        ):
            message = (
                f"{self.name}'s dataset {spec.name!r} has no feature columns (only its IDs): a "
                "joint model needs at least one of its columns; its operator sets them in "
                "[[datasets]] features"
            )
            raise DataError(message, public=message)  # before the PSI: nothing was learnt
        own_salt = secrets.token_bytes(32)
        salt = session_salt(request.psi_salt, own_salt)
        session = SessionB(
            session_id=secrets.token_hex(16),
            partner=partner,
            purpose=request.purpose,
            dataset=spec,
            table=table,
            psi_key=PsiKey.generate(),
            salt=salt,
            model=model,
            checkpoint_key=checkpoint_key,
            job_id=request.job_id if checkpoint_key else "",
        )
        if request.purpose == m.Purpose.TRAIN:
            session.training = new_training_keys(
                request, self.policy, self.executor, background=self.background
            )
            session.training.resume = resume_state
            own = session.training.own
            response_key = m.PaillierKey(
                n=public_key_to_bytes(own.public_key),
                djn_base=int_to_bytes(own.djn_base),
            )
        # Blind B's own IDs now, on the other core, while A blinds its IDs (PsiPeerSet collects it).
        session.blinded_own = session.in_background(
            self._background,
            partial(session.psi_key.blind_ids, executor=self.executor),
            [str(i) for i in table.ids],
            salt,
        )
        with self._lock:
            self._sessions[session.session_id] = session
        log.info(
            "session %s opened by %s: %s on %s (%d rows)%s",
            session.session_id[:8],
            partner,
            request.purpose.name,
            spec.name,
            len(table.ids),
            _key_note(session.training),
        )
        if resume_epoch:
            log.info(
                "session %s resumes its job after epoch %d", session.session_id[:8], resume_epoch
            )
        return m.OpenSessionResponse(
            session_id=session.session_id,
            psi_salt=own_salt,
            paillier_key=response_key,
            checkpoint_epochs=held,
            resume_epoch=resume_epoch,
            training_protocol=m.TRAINING_PROTOCOL if request.purpose == m.Purpose.TRAIN else 0,
        )

    def _resume_point(
        self, request: m.OpenSessionRequest, partner: str, dataset: str
    ) -> tuple[str, tuple[int, ...], int, dict[str, Any] | None]:
        """(checkpoint key, epochs B holds, epoch to resume after, B's state there) for a training
        session. Without a job id B keeps no checkpoints; without ``resume_epochs`` the job starts
        afresh (and B forgets what it held under that id). Everything A sent is untrusted: the job
        id must be a plain name, the list short and in range, and the checkpoint must be B's own
        for this partner, dataset and exactly these job parameters (``PolicyViolation`` otherwise).
        """
        if not request.job_id:
            return "", (), 0, None
        try:
            key = partner_job_key(partner, check_job_id(request.job_id))
        except DataError as exc:
            raise InvalidPeerData(f"OpenSession: {exc}") from None
        asked = request.resume_epochs
        if len(asked) > MAX_RESUME_EPOCHS or any(not 1 <= e <= request.train.epochs for e in asked):
            raise InvalidPeerData(
                f"OpenSession: resume_epochs must list at most {MAX_RESUME_EPOCHS} epochs "
                f"within the job's {request.train.epochs}"
            )
        if not asked:
            self.checkpoints.remove(key)
            return key, (), 0, None
        held = tuple(self.checkpoints.epochs(key))
        epoch = latest_common_epoch(list(asked), list(held))
        if not epoch:
            return key, held, 0, None
        state = self.checkpoints.load(key, epoch)
        expected = {
            "partner": partner,
            "job_id": request.job_id,
            "dataset": dataset,
            "params": _params_dict(request.train),
        }
        changed = [name for name, value in expected.items() if state.get(name) != value]
        if changed:
            raise PolicyViolation(
                f"{self.name} refuses to resume job {request.job_id}: its {', '.join(changed)} "
                "differ from its checkpoint; start the job afresh"
            )
        return key, held, epoch, state

    def _load_table(self, spec: DatasetSpec) -> PartyTable:
        try:
            return self._tables.get(spec)
        except DataError as exc:
            # The detail names B's file and may quote its values: it stays in B's log. A's
            # operator learns which dataset, that the fault is at B, and the reference to ask for.
            if exc.public is None:
                exc.public = (
                    f"{self.name} cannot load its dataset {spec.name!r}: a problem with its own "
                    "data file or its config, not with this request; its operator will find the "
                    "detail in its log under reference {reference}"
                )
            raise

    def close_session(
        self, request: m.CloseSessionRequest, partner: str | None
    ) -> m.CloseSessionResponse:
        session = self._session(request.session_id, partner)
        with self._lock:
            self._sessions.pop(session.session_id, None)
        if request.discard and session.checkpoint_key:
            # A cancelled the job: it is never resumed, so B's plaintext state of it goes now
            # (A drops its own), not at the 7-day sweep. Only this partner's job: the key hashes both.
            self.checkpoints.remove(session.checkpoint_key)
            log.info("session %s: job cancelled, its checkpoints removed", session.session_id[:8])
        # Stopping the helper waits for its current chunk of work; the caller (often a node that
        # is stopping, with a short deadline) need not.
        dropping = threading.Thread(target=self._drop, args=(session,), name="b-drop", daemon=True)
        dropping.start()
        with self._lock:
            self._dropping = [t for t in self._dropping if t.is_alive()] + [dropping]
        log.info("session %s closed", session.session_id[:8])
        return m.CloseSessionResponse()

    # ---- private set intersection ---------------------------------------------------------------

    def psi_blind(self, request: m.PsiBlindRequest, partner: str | None) -> m.PsiBlindResponse:
        session = self._session(request.session_id, partner)
        pause_point("align")  # fault-injection tests only (fedlearn.faults)
        with session.lock:
            return session.psi_blind(request, self._background, executor=self.executor)

    def psi_peer_set(
        self, request: m.PsiPeerSetRequest, partner: str | None
    ) -> m.PsiPeerSetResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            return session.psi_peer_set()

    def psi_result(self, request: m.PsiResultRequest, partner: str | None) -> m.PsiResultResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            rows, double_peer = session.psi_result(request, name=self.name, policy=self.policy)
        log.info(
            "session %s aligned: %d of %d rows",
            session.session_id[:8],
            len(rows),
            len(session.table.ids),
        )
        return m.PsiResultResponse(intersection_size=len(rows), points=double_peer)

    # ---- training (the steps are in train_b) --------------------------------------------------

    # Each training step runs through _ending_on_refusal: any refusal (or failure) of a step ends
    # the session, and what crosses names the step only (see SessionEnded).

    def batch_forward(
        self, request: m.BatchForwardRequest, partner: str | None
    ) -> m.BatchForwardResponse:
        session = self._session(request.header.session_id, partner)

        def step() -> m.BatchForwardResponse:
            training = check_step(session.training, session.purpose, "forward", request.header)
            return training.forward(request, self._background)

        return self._ending_on_refusal(session, "BatchForward", step)

    def batch_gradient(
        self, request: m.BatchGradientRequest, partner: str | None
    ) -> m.BatchGradientResponse:
        session = self._session(request.header.session_id, partner)

        def step() -> m.BatchGradientResponse:
            training = check_step(session.training, session.purpose, "gradient", request.header)
            return training.gradient(request)

        return self._ending_on_refusal(session, "BatchGradient", step)

    def batch_update(
        self, request: m.BatchUpdateRequest, partner: str | None
    ) -> m.BatchUpdateResponse:
        session = self._session(request.header.session_id, partner)

        def step() -> m.BatchUpdateResponse:
            training = check_step(session.training, session.purpose, "update", request.header)
            response = training.update(request)
            if training.between_epochs and session.checkpoint_key:
                self._checkpoint(session, training)
            return response

        return self._ending_on_refusal(session, "BatchUpdate", step)

    def epoch_loss(self, request: m.EpochLossRequest, partner: str | None) -> m.EpochLossResponse:
        session = self._session(request.session_id, partner)

        def step() -> m.EpochLossResponse:
            training = session.training
            if not isinstance(training, TrainingB):
                raise SessionError("EpochLoss: not a training session past alignment")
            return training.epoch_loss(request)

        return self._ending_on_refusal(session, "EpochLoss", step)

    def _checkpoint(self, session: SessionB, training: TrainingB) -> None:
        """B's state after a complete epoch, kept for a resume of the same job (fedlearn.checkpoint)."""
        state = {
            **training.checkpoint_state(),
            "partner": session.partner,
            "job_id": session.job_id,
            "dataset": session.dataset.name,
            "params": _params_dict(training.params),
        }
        self.checkpoints.save(session.checkpoint_key, training.completed_epochs, state)

    def _ending_on_refusal(self, session: SessionB, step_name: str, step: Callable[[], T]) -> T:
        """Run one training step under the session's lock; a refusal ends the session.

        Whatever goes wrong (a check that fails, a decrypted value out of range, a bug), B drops
        the session's state and keys, logs the detail here, and sends A only that ``step_name``
        was refused. So no refusal can be asked again with a variation (the session is gone), and
        none says which value failed or why: a refused request is not a decryption oracle.
        """
        with session.lock:
            try:
                return step()
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
            self._end(session)
        log.warning(
            "session %s ended: %s from %s refused: %s",
            session.session_id[:8],
            step_name,
            session.partner,
            detail,
        )
        # Raised outside the except block: the exception carries no cause or context.
        raise SessionEnded(
            f"{self.name} ended the session: a {step_name} request was refused "
            f"(the reason is in {self.name}'s log)"
        )

    def _end(self, session: SessionB) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)
        self._drop(session)

    def partial_scores(
        self, request: m.PartialScoresRequest, partner: str | None
    ) -> m.PartialScoresResponse:
        session = self._session(request.session_id, partner)
        if not self.policy.allow_partial_scores:
            raise PolicyViolation(f"{self.name}'s policy does not allow returning partial scores")
        pause_point("score")  # fault-injection tests only (fedlearn.faults)
        with session.lock:
            scores = session.partial_scores(request.subset)
        return m.PartialScoresResponse(scores=scores_to_bytes(scores))

    def commit_model(
        self, request: m.CommitModelRequest, partner: str | None
    ) -> m.CommitModelResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            training = session.training
            if not isinstance(training, TrainingB) or not training.between_batches:
                raise SessionError("CommitModel needs a training session between batches")
            if training.completed_epochs < 1:
                raise SessionError("CommitModel before the first epoch finished")
            model_id = check_model_id(request.model_id)
            shard = training.model_shard(
                model_id, party=self.name, partner=session.partner, dataset=session.dataset.name
            )
            self.store.save(model_id, shard)
            if session.checkpoint_key:
                # The last epoch stays until the bounds remove it: A may be killed before it saved
                # its own shard, and then resumes from there (and deletes this model first).
                self.checkpoints.prune(session.checkpoint_key, 1)
        log.info("model %s committed (%d epochs)", model_id, training.completed_epochs)
        return m.CommitModelResponse(mean_partial_score=shard["mean_partial_score"])

    def delete_model(
        self, request: m.DeleteModelRequest, partner: str | None
    ) -> m.DeleteModelResponse:
        partner = self._check_partner(partner)
        model_id = check_model_id(request.model_id)
        shard = self.store.load(model_id)
        if shard.get("partner") != partner:
            raise NotFound(
                f"model {model_id} belongs to partner {shard.get('partner')!r}, not {partner!r}",
                public=f"no model {model_id!r} here",
            )
        self.store.delete(model_id)
        log.info("model %s deleted at %s's request", model_id, partner)
        return m.DeleteModelResponse()

    def check_models(
        self, request: m.CheckModelsRequest, partner: str | None
    ) -> m.CheckModelsResponse:
        """Whether B holds an intact shard of each model id, for this partner only.

        Another partner's model is MISSING, as is an unknown one (so nothing tells A which ids
        exist for others); a damaged shard is DAMAGED with its reason (which names no path).
        Raises ``InvalidPeerData`` for more than ``MAX_CHECKED_MODELS`` ids or an invalid id.
        """
        partner = self._check_partner(partner)
        if len(request.model_ids) > MAX_CHECKED_MODELS:
            raise InvalidPeerData(f"CheckModels: at most {MAX_CHECKED_MODELS} model ids at a time")
        states, reasons = [], []
        for model_id in request.model_ids:
            try:
                shard = self.store.load(check_model_id(model_id))
            except NotFound:
                state, reason = m.ShardState.MISSING, ""
            except DataError as exc:  # DamagedModel: its public message names no path
                state, reason = m.ShardState.DAMAGED, exc.public or "damaged"
            else:
                owned = shard.get("partner") == partner
                state, reason = (m.ShardState.INTACT if owned else m.ShardState.MISSING), ""
            states.append(int(state))
            reasons.append(reason)
        return m.CheckModelsResponse(states=tuple(states), reasons=tuple(reasons))


#: The most model ids one CheckModels request may ask about.
MAX_CHECKED_MODELS = 1000


def _params_dict(params: m.TrainParams) -> dict[str, Any]:
    """The job's parameters as they read back from a checkpoint's JSON."""
    return dict(json.loads(json.dumps(dataclasses.asdict(params))))


def _key_note(training: object) -> str:
    """The session's Paillier key fingerprints for the log (A records the same in its model)."""
    if not isinstance(training, PendingTraining):
        return ""
    return (
        f"; keys: B {key_fingerprint(training.own.public_key)}, "
        f"A {key_fingerprint(training.peer.public_key)}"
    )
