"""Party B's side of every protocol step, as plain methods over typed messages.

B answers; A drives. Each session is bound to the partner (certificate name) that opened it and moves
through a fixed order of steps; anything out of order, from another partner, or malformed is refused
with a ``FedlearnError`` that the transport maps to a gRPC status. Everything A sends is checked before
use: key sizes, ciphertext ranges and counts, point lengths, indices, session ids and step order.

The servicer in ``party_b`` only adapts gRPC streams to these methods; the in-memory transport calls
them directly, so tests run both roles in one process.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedlearn.config import DatasetSpec
from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import ENGINES, own_key_engine, peer_key_engine
from fedlearn.crypto.executor import make_executor
from fedlearn.crypto.keys import generate_keypair, public_key_from_bytes, public_key_to_bytes
from fedlearn.crypto.packing import PackingLayout, unpack
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.psi import PsiKey, common_order, session_salt
from fedlearn.crypto.wire import (
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
)
from fedlearn.data import PartyTable
from fedlearn.errors import (
    DataError,
    EncodingOverflow,
    InvalidPeerData,
    NotFound,
    PolicyViolation,
    SessionError,
)
from fedlearn.model import (
    OPTIMIZERS,
    Optimizer,
    epoch_batches,
    max_batch_rows,
    split_train_validation,
)
from fedlearn.preprocess import PreprocessConfig, Preprocessor
from fedlearn.protocol import messages as m
from fedlearn.protocol.steps import (
    FixedPointFeatures,
    feature_party_loss_term,
    feature_party_scores,
    gradient_from_masked,
    gradient_layout,
    int_from_bytes,
    int_to_bytes,
    masked_gradient,
    multiply_each,
    power_each,
    preprocess_dict,
)
from fedlearn.store import ModelStore, check_model_id
from fedlearn.tables import TableCache

log = logging.getLogger(__name__)

#: Most gradient values A may ask B to decrypt per batch (bounds B's role as a decryption service).
MAX_PEER_GRADIENT_VALUES = 100_000


@dataclass(frozen=True)
class PeerPolicy:
    """What B accepts (b.toml [policy])."""

    min_key_bits: int = 2048
    min_batch_size: int = 256
    max_epochs: int = 100
    allow_partial_scores: bool = True


@dataclass
class _Training:
    params: m.TrainParams
    own: OwnKeyEngine
    peer: PeerKeyEngine
    own_codec: FixedPointCodec
    preprocessor: Preprocessor
    features: FixedPointFeatures
    train_rows: np.ndarray
    validation_rows: np.ndarray
    weights: np.ndarray
    optimizer: Optimizer
    own_layout: PackingLayout  # B's gradient, packed under A's key
    peer_layout: PackingLayout  # A's gradient, packed under B's key
    n_batches: int
    expect: tuple[str, int, int] = ("forward", 0, 0)
    epoch_start_weights: np.ndarray | None = None
    batches: dict[int, list[np.ndarray]] = field(default_factory=dict)
    pending: Future[tuple[list[object], list[int]]] | None = None
    batch_rows: np.ndarray | None = None
    peer_value_count: int = 0
    own_masks: list[int] = field(default_factory=list)
    completed_epochs: int = 0
    loss_epochs_answered: set[int] = field(default_factory=set)


@dataclass
class _Session:
    session_id: str
    partner: str
    purpose: m.Purpose
    dataset: DatasetSpec
    table: PartyTable
    psi_key: PsiKey
    salt: bytes
    # PSI steps done: "blind" (A's points blinded) and "peer_set" (B's points sent), in either order;
    # then "aligned".
    stage: set[str] = field(default_factory=set)
    aligned_rows: np.ndarray | None = None
    training: _Training | _PendingTraining | None = None
    model: dict[str, Any] | None = None
    blinded_own: Future[bytes] | None = None  # B's own blinded IDs, computed while A blinds its own
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RoleB:
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
        session_ttl_s: float = 3600.0,
    ) -> None:
        self.name = name
        self.datasets = datasets
        self.policy = policy
        self.store = ModelStore(model_dir)
        self.allowed_partners = frozenset(allowed_partners)
        self.executor = make_executor(workers)
        self.session_ttl_s = session_ttl_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._tables = TableCache(name)
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="b-gradient")

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)
        self.executor.close()

    # ---- sessions -------------------------------------------------------------------------------

    def _check_partner(self, partner: str | None) -> str:
        if not partner or partner not in self.allowed_partners:
            raise PolicyViolation(
                f"partner {partner!r} is not allowed by {self.name}; its [partners] allowed list "
                f"is {sorted(self.allowed_partners)}"
            )
        return partner

    def _session(self, session_id: str, partner: str | None) -> _Session:
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

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [
                sid for sid, s in self._sessions.items() if now - s.last_used > self.session_ttl_s
            ]
            for sid in stale:
                self._drop(self._sessions.pop(sid))

    def _drop(self, session: _Session) -> None:
        if session.training is not None:
            session.training.own.close()
            session.training = None

    def open_session(
        self, request: m.OpenSessionRequest, partner: str | None
    ) -> m.OpenSessionResponse:
        partner = self._check_partner(partner)
        self._expire_sessions()
        if request.purpose not in (m.Purpose.ALIGN, m.Purpose.TRAIN, m.Purpose.SCORE):
            raise InvalidPeerData("OpenSession: purpose must be ALIGN, TRAIN or SCORE")
        model: dict[str, Any] | None = None
        dataset_name = request.dataset
        if request.purpose == m.Purpose.SCORE:
            model = self.store.load(check_model_id(request.model_id))
            if model.get("partner") != partner:
                raise PolicyViolation(
                    f"model {request.model_id} was trained with partner {model.get('partner')!r}, "
                    f"not {partner!r}"
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
        if request.purpose == m.Purpose.TRAIN:
            self._check_train_policy(request)
        table = self._load_table(spec)
        own_salt = secrets.token_bytes(32)
        salt = session_salt(request.psi_salt, own_salt)
        session = _Session(
            session_id=secrets.token_hex(16),
            partner=partner,
            purpose=request.purpose,
            dataset=spec,
            table=table,
            psi_key=PsiKey.generate(),
            salt=salt,
            model=model,
        )
        if request.purpose == m.Purpose.TRAIN:
            session.training = self._new_training_keys(request)
            own = session.training.own
            response_key = m.PaillierKey(
                n=public_key_to_bytes(own.public_key),
                djn_base=int_to_bytes(own.djn_base),
            )
        # Blind B's own IDs now, on the other core, while A blinds its IDs (PsiPeerSet collects it).
        session.blinded_own = self._background.submit(
            session.psi_key.blind_ids, [str(i) for i in table.ids], salt
        )
        with self._lock:
            self._sessions[session.session_id] = session
        log.info(
            "session %s opened by %s: %s on %s (%d rows)",
            session.session_id[:8],
            partner,
            request.purpose.name,
            spec.name,
            len(table.ids),
        )
        return m.OpenSessionResponse(
            session_id=session.session_id, psi_salt=own_salt, paillier_key=response_key
        )

    def _check_train_policy(self, request: m.OpenSessionRequest) -> None:
        params = request.train
        reasons = []
        if params.key_bits < self.policy.min_key_bits:
            reasons.append(
                f"key_bits {params.key_bits} is below the minimum {self.policy.min_key_bits}"
            )
        if params.batch_size < self.policy.min_batch_size:
            reasons.append(
                f"batch_size {params.batch_size} is below the minimum {self.policy.min_batch_size}"
            )
        if params.epochs > self.policy.max_epochs:
            reasons.append(f"epochs {params.epochs} is above the maximum {self.policy.max_epochs}")
        if params.epochs < 1:
            reasons.append("epochs must be at least 1")
        if (params.engine or "fast") not in ENGINES:
            reasons.append(f"unknown engine {params.engine!r}")
        if params.optimizer not in OPTIMIZERS:
            reasons.append(f"unknown optimizer {params.optimizer!r}")
        if not 0.0 <= params.validation_fraction < 1.0:
            reasons.append("validation_fraction must be in [0, 1)")
        if not 6 <= params.score_frac_bits <= 24:
            reasons.append("score_frac_bits must be in [6, 24]")
        if not 2 <= params.preprocess.feature_bits <= 16:
            reasons.append("feature_bits must be in [2, 16]")
        if not params.learning_rate > 0:
            reasons.append("learning_rate must be positive")
        if reasons:
            raise PolicyViolation(f"{self.name} refuses the training job: " + "; ".join(reasons))

    def _new_training_keys(self, request: m.OpenSessionRequest) -> Any:
        """Check A's key and make B's own; the rest of the training state comes after PSI."""
        peer_key = public_key_from_bytes(request.paillier_key.n, min_bits=self.policy.min_key_bits)
        djn_base = int_from_bytes(request.paillier_key.djn_base, peer_key.nsquare)
        key_bits = max(request.train.key_bits, self.policy.min_key_bits)
        engine = request.train.engine or "fast"
        own = own_key_engine(engine, generate_keypair(key_bits), executor=self.executor)
        peer = peer_key_engine(engine, peer_key, djn_base=djn_base, executor=self.executor)
        return _PendingTraining(request.train, own, peer)

    def _load_table(self, spec: DatasetSpec) -> PartyTable:
        return self._tables.get(spec)

    def close_session(
        self, request: m.CloseSessionRequest, partner: str | None
    ) -> m.CloseSessionResponse:
        session = self._session(request.session_id, partner)
        with self._lock:
            self._sessions.pop(session.session_id, None)
        self._drop(session)
        log.info("session %s closed", session.session_id[:8])
        return m.CloseSessionResponse()

    # ---- private set intersection ---------------------------------------------------------------

    def psi_blind(self, request: m.PsiBlindRequest, partner: str | None) -> m.PsiBlindResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            _require_stage(session, "PsiBlind", done=(), not_done=("blind", "aligned"))
            points = session.psi_key.blind_points(request.points)
            session.stage.add("blind")
        return m.PsiBlindResponse(points=points)

    def psi_peer_set(
        self, request: m.PsiPeerSetRequest, partner: str | None
    ) -> m.PsiPeerSetResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            _require_stage(session, "PsiPeerSet", done=(), not_done=("peer_set", "aligned"))
            assert session.blinded_own is not None
            points = session.blinded_own.result()
            session.stage.add("peer_set")
        return m.PsiPeerSetResponse(points=points, total=len(session.table.ids))

    def psi_result(self, request: m.PsiResultRequest, partner: str | None) -> m.PsiResultResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            _require_stage(session, "PsiResult", done=("blind", "peer_set"), not_done=("aligned",))
            rows = _parse_indices(request.peer_indices, len(session.table.ids))
            seed = session.training.params.seed if session.training is not None else 0
            rows = rows[common_order([str(session.table.ids[i]) for i in rows], seed)]
            session.aligned_rows = rows
            session.stage.add("aligned")
            if session.purpose == m.Purpose.TRAIN:
                self._prepare_training(session)
            elif session.purpose == m.Purpose.SCORE:
                self._prepare_scoring(session)
        log.info(
            "session %s aligned: %d of %d rows",
            session.session_id[:8],
            len(rows),
            len(session.table.ids),
        )
        return m.PsiResultResponse(intersection_size=len(rows))

    # ---- training -------------------------------------------------------------------------------

    def _prepare_training(self, session: _Session) -> None:
        pending = session.training
        assert isinstance(pending, _PendingTraining) and session.aligned_rows is not None
        params = pending.params
        n_rows = len(session.aligned_rows)
        if n_rows == 0:
            raise DataError(
                f"no IDs in common with {self.name}'s dataset {session.dataset.name!r}: check that "
                "both sides use the same kind of ID (white space is stripped, case is kept)"
            )
        train_rows, validation_rows = split_train_validation(
            n_rows, params.validation_fraction, params.seed
        )
        if len(train_rows) < self.policy.min_batch_size:
            raise PolicyViolation(
                f"{self.name} refuses the training job: only {len(train_rows)} aligned training rows, "
                f"below the minimum batch size {self.policy.min_batch_size}"
            )
        frame = session.table.features.iloc[session.aligned_rows].reset_index(drop=True)
        config = PreprocessConfig.from_dict(preprocess_dict(params.preprocess))
        preprocessor = Preprocessor(
            numeric=session.table.numeric_columns,
            categorical=session.table.categorical_columns,
            config=config,
        )
        preprocessor.fit(frame.iloc[train_rows])
        matrix = preprocessor.transform(frame)
        features = FixedPointFeatures(
            preprocessor.quantize(matrix).astype(np.int32),
            np.asarray(preprocessor.scales_, dtype=np.float64),
        )
        max_rows = max_batch_rows(len(train_rows), params.batch_size)
        min_rows = len(train_rows) // max(1, len(train_rows) // params.batch_size)
        if min_rows <= features.n_features:
            raise PolicyViolation(
                f"{self.name} refuses the training job: batches of about {min_rows} rows are not "
                f"larger than its {features.n_features} feature columns; raise batch_size"
            )
        peer_n = int(pending.peer.public_key.n)
        own_n = int(pending.own.public_key.n)
        bits = params.preprocess.feature_bits
        session.training = _Training(
            params=params,
            own=pending.own,
            peer=pending.peer,
            own_codec=FixedPointCodec(own_n, frac_bits=0),
            preprocessor=preprocessor,
            features=features,
            train_rows=train_rows,
            validation_rows=validation_rows,
            weights=np.zeros(features.n_features),
            optimizer=Optimizer(
                params.optimizer,
                params.learning_rate,
                np.ones(features.n_features),
                l2=params.l2,
                l1=params.l1,
            ),
            own_layout=gradient_layout(
                peer_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=params.score_frac_bits
            ),
            peer_layout=gradient_layout(
                own_n, max_rows=max_rows, feature_bits=bits, score_frac_bits=params.score_frac_bits
            ),
            n_batches=max(1, len(train_rows) // params.batch_size),
        )
        # Keep a batch of obfuscators ready: the pool refills while B waits for A.
        session.training.own.pool_target = max_rows
        session.training.own.prefill(max_rows)

    def _training(self, session: _Session, step: str, header: m.BatchHeader) -> _Training:
        training = session.training
        if session.purpose != m.Purpose.TRAIN or not isinstance(training, _Training):
            raise SessionError(f"{step}: this session is not a training session past alignment")
        expected = training.expect
        got = (step, header.epoch, header.batch)
        if got != expected:
            raise SessionError(
                f"{step} for epoch {header.epoch} batch {header.batch} is out of order; "
                f"expected {expected[0]} for epoch {expected[1]} batch {expected[2]}"
            )
        return training

    def batch_forward(
        self, request: m.BatchForwardRequest, partner: str | None
    ) -> m.BatchForwardResponse:
        session = self._session(request.header.session_id, partner)
        with session.lock:
            training = self._training(session, "forward", request.header)
            epoch, batch = request.header.epoch, request.header.batch
            if epoch >= training.params.epochs:
                raise PolicyViolation(
                    f"epoch {epoch + 1} is beyond the job's {training.params.epochs}"
                )
            if batch == 0:
                training.epoch_start_weights = training.weights.copy()
            batches = training.batches.setdefault(
                epoch,
                epoch_batches(
                    training.train_rows, training.params.batch_size, training.params.seed, epoch
                ),
            )
            training.batches = {epoch: batches}
            rows = batches[batch]
            peer_n = int(training.peer.public_key.n)
            alpha = ciphertexts_from_bytes(request.ciphertexts, peer_n, expected_count=len(rows))
            beta = ciphertexts_from_bytes(request.slopes, peer_n, expected_count=len(rows))
            frac = training.params.score_frac_bits
            scores = feature_party_scores(training.features.x[rows] @ training.weights, frac)
            encrypted_scores = training.own.encrypt(training.own_codec.encode_int(scores))
            loss_fixed = feature_party_loss_term(scores, frac)
            encrypted_loss = training.own.encrypt(training.own_codec.encode_int([loss_fixed]))
            x_q_batch = training.features.x_q[rows]
            nsquare = training.peer.public_key.nsquare

            def gradient() -> tuple[list[object], list[int]]:
                residual = multiply_each(alpha, power_each(beta, scores, nsquare), nsquare)
                return masked_gradient(training.peer, x_q_batch, residual, training.own_layout)

            training.pending = self._background.submit(gradient)
            training.batch_rows = rows
            training.expect = ("gradient", epoch, batch)
            own_n = int(training.own.public_key.n)
            return m.BatchForwardResponse(
                ciphertexts=ciphertexts_to_bytes(encrypted_scores, own_n),
                loss_term=ciphertexts_to_bytes(encrypted_loss, own_n),
            )

    def batch_gradient(
        self, request: m.BatchGradientRequest, partner: str | None
    ) -> m.BatchGradientResponse:
        session = self._session(request.header.session_id, partner)
        with session.lock:
            training = self._training(session, "gradient", request.header)
            count = request.value_count
            if not 1 <= count <= MAX_PEER_GRADIENT_VALUES:
                raise InvalidPeerData(
                    f"value_count must be 1..{MAX_PEER_GRADIENT_VALUES}, got {count}"
                )
            rows = training.batch_rows
            assert rows is not None
            if count >= len(rows):
                # With at least as many gradient values as rows, A could solve X_A^T d = G_A for d
                # and so recover B's partial scores: more rows than columns on both sides.
                raise PolicyViolation(
                    f"{self.name} refuses: A's {count} gradient values are not fewer than the "
                    f"{len(rows)} rows of the batch; raise batch_size"
                )
            if training.peer_value_count and count != training.peer_value_count:
                raise InvalidPeerData(
                    f"value_count changed from {training.peer_value_count} to {count} mid-session"
                )
            layout = training.peer_layout
            own_n = int(training.own.public_key.n)
            packed = ciphertexts_from_bytes(
                request.packed_ciphertexts, own_n, expected_count=layout.ciphertext_count(count)
            )
            training.peer_value_count = count
            masked_peer = unpack(training.own.decrypt(packed), layout, count)
            assert training.pending is not None
            own_packed, own_masks = training.pending.result()
            training.pending = None
            training.own_masks = own_masks
            training.expect = ("update", request.header.epoch, request.header.batch)
            peer_n = int(training.peer.public_key.n)
            return m.BatchGradientResponse(
                packed_ciphertexts=ciphertexts_to_bytes(own_packed, peer_n),
                masked_values=ints_to_bytes(masked_peer, layout.slot_bytes),
                value_count=training.features.n_features,
            )

    def batch_update(
        self, request: m.BatchUpdateRequest, partner: str | None
    ) -> m.BatchUpdateResponse:
        session = self._session(request.header.session_id, partner)
        with session.lock:
            training = self._training(session, "update", request.header)
            layout = training.own_layout
            n_features = training.features.n_features
            masked = ints_from_bytes(
                request.masked_values,
                layout.slot_bytes,
                expected_count=n_features,
                bound=layout.slot_value_bound,
            )
            rows = training.batch_rows
            assert rows is not None
            try:
                gradient = gradient_from_masked(
                    masked,
                    training.own_masks,
                    layout,
                    training.features,
                    training.params.score_frac_bits,
                    len(rows),
                )
            except EncodingOverflow as exc:
                raise InvalidPeerData(
                    f"BatchUpdate: the returned gradient values are wrong: {exc}"
                ) from None
            training.weights = training.optimizer.step(training.weights, gradient)
            epoch, batch = request.header.epoch, request.header.batch
            if batch + 1 < training.n_batches:
                training.expect = ("forward", epoch, batch + 1)
            else:
                training.expect = ("forward", epoch + 1, 0)
                training.completed_epochs = epoch + 1
            # B's weight change over the epoch, told only when the epoch is complete (a per-batch
            # norm would tell A the size of each of B's gradients).
            change = 0.0
            start = training.epoch_start_weights
            if training.expect == ("forward", epoch + 1, 0) and start is not None:
                change = float(np.linalg.norm(training.weights - start))
            return m.BatchUpdateResponse(weight_change_norm=change)

    def epoch_loss(self, request: m.EpochLossRequest, partner: str | None) -> m.EpochLossResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            training = session.training
            if not isinstance(training, _Training):
                raise SessionError("EpochLoss: not a training session past alignment")
            epoch = request.epoch
            if epoch + 1 != training.completed_epochs or training.expect[0] != "forward":
                raise SessionError(f"EpochLoss for epoch {epoch} is out of order")
            if epoch in training.loss_epochs_answered:
                raise SessionError(f"EpochLoss for epoch {epoch} was already answered")
            own_n = int(training.own.public_key.n)
            (ciphertext,) = ciphertexts_from_bytes(request.ciphertext, own_n, expected_count=1)
            training.loss_epochs_answered.add(epoch)
            (value,) = training.own.decrypt([ciphertext])
            return m.EpochLossResponse(value=int_to_bytes(int(value)))

    def partial_scores(
        self, request: m.PartialScoresRequest, partner: str | None
    ) -> m.PartialScoresResponse:
        session = self._session(request.session_id, partner)
        if not self.policy.allow_partial_scores:
            raise PolicyViolation(f"{self.name}'s policy does not allow returning partial scores")
        with session.lock:
            if request.subset == m.RowSubset.VALIDATION:
                training = session.training
                if not isinstance(training, _Training) or training.expect[0:3:2] != ("forward", 0):
                    # Only between epochs: scores after every batch would trace B's weights.
                    raise SessionError(
                        "PartialScores(VALIDATION) is answered only between epochs of a training session"
                    )
                scores = training.features.x[training.validation_rows] @ training.weights
            elif request.subset == m.RowSubset.ALIGNED:
                if session.purpose != m.Purpose.SCORE or "aligned" not in session.stage:
                    raise SessionError(
                        "PartialScores(ALIGNED) needs a scoring session after alignment"
                    )
                scores = session.model["_scores"]  # type: ignore[index]
            else:
                raise InvalidPeerData("PartialScores: subset must be ALIGNED or VALIDATION")
        return m.PartialScoresResponse(scores=np.asarray(scores, dtype="<f8").tobytes())

    def commit_model(
        self, request: m.CommitModelRequest, partner: str | None
    ) -> m.CommitModelResponse:
        session = self._session(request.session_id, partner)
        with session.lock:
            training = session.training
            if not isinstance(training, _Training) or training.expect[0] != "forward":
                raise SessionError("CommitModel needs a training session between batches")
            if training.completed_epochs < 1:
                raise SessionError("CommitModel before the first epoch finished")
            model_id = check_model_id(request.model_id)
            train_scores = training.features.x[training.train_rows] @ training.weights
            mean_partial = float(np.mean(train_scores)) if len(train_scores) else 0.0
            self.store.save(
                model_id,
                {
                    "model_id": model_id,
                    "role": "B",
                    "party": self.name,
                    "partner": session.partner,
                    "dataset": session.dataset.name,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "feature_names": list(training.preprocessor.output_names_),
                    "weights": [float(w) for w in training.weights],
                    "preprocessor": training.preprocessor.to_dict(),
                    "epochs_completed": training.completed_epochs,
                    "mean_partial_score": mean_partial,
                    "train_rows": len(training.train_rows),
                },
            )
        log.info("model %s committed (%d epochs)", model_id, training.completed_epochs)
        return m.CommitModelResponse(mean_partial_score=mean_partial)

    def delete_model(
        self, request: m.DeleteModelRequest, partner: str | None
    ) -> m.DeleteModelResponse:
        partner = self._check_partner(partner)
        model_id = check_model_id(request.model_id)
        shard = self.store.load(model_id)
        if shard.get("partner") != partner:
            raise PolicyViolation(f"model {model_id} belongs to another partner")
        self.store.delete(model_id)
        log.info("model %s deleted at %s's request", model_id, partner)
        return m.DeleteModelResponse()

    # ---- scoring --------------------------------------------------------------------------------

    def _prepare_scoring(self, session: _Session) -> None:
        assert session.model is not None and session.aligned_rows is not None
        model = session.model
        preprocessor = Preprocessor.from_dict(model["preprocessor"])
        frame = session.table.features.iloc[session.aligned_rows].reset_index(drop=True)
        matrix = preprocessor.transform(frame)
        x = preprocessor.quantize(matrix) / np.asarray(preprocessor.scales_, dtype=np.float64)
        weights = np.asarray(model["weights"], dtype=np.float64)
        if x.shape[1] != len(weights):
            raise SessionError(
                f"model {model['model_id']}: B's data gives {x.shape[1]} columns, but the model "
                f"was trained with {len(weights)}"
            )
        model["_scores"] = x @ weights


@dataclass
class _PendingTraining:
    """B's keys between OpenSession and PsiResult, before the aligned rows are known."""

    params: m.TrainParams
    own: OwnKeyEngine
    peer: PeerKeyEngine


def _require_stage(
    session: _Session, step: str, *, done: tuple[str, ...], not_done: tuple[str, ...]
) -> None:
    """PSI step order: ``done`` steps must have happened, ``not_done`` ones must not."""
    missing = [name for name in done if name not in session.stage]
    repeated = [name for name in not_done if name in session.stage]
    if missing or repeated:
        state = ", ".join(sorted(session.stage)) or "opened"
        raise SessionError(f"{step} is out of order: the session's PSI steps so far: {state}")


def _parse_indices(data: bytes, n_rows: int) -> np.ndarray:
    if len(data) % 4:
        raise InvalidPeerData("PsiResult: indices must be 4-byte little-endian integers")
    indices = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if indices.size and int(indices.max()) >= n_rows:
        raise InvalidPeerData(f"PsiResult: an index is beyond the {n_rows} rows B sent")
    if len(np.unique(indices)) != len(indices):
        raise InvalidPeerData("PsiResult: an index appears twice")
    return indices
