"""The math of one encrypted training step, shared by both roles (docs/design.md section 3, adapted).

For a batch of s aligned rows. Every value is a fixed-point integer: A's slope at SLOPE_FRAC_BITS, B's
partial score at ``score_frac_bits`` (F2), the residual at SLOPE_FRAC_BITS + F2.

    A: (c, beta, gamma) = model.corrected_terms(u_A, y, stats)   (in the epochs that refresh them)
       beta                                   -> [[beta]]_A          (sent to B, per row)
       gamma                                  -> [[gamma]]_A         (sent to B, per row)
       alpha = sigmoid(u_A) - y + c - K beta  -> [[alpha]]_A         (sent to B, per row)
    B: v     = clip(u_B, -K, K) + K  (>= 0)   -> [[v]]_B             (sent to A, per row)
       w     = clip((u_B - mean) / std)^2     -> [[w]]_B             (sent to A, with [[gamma]])
    B: [[m]]_A = [[gamma]]_A ^ w                       A: [[m]]_B = [[w]]_B ^ gamma   (held per row)
    B: [[d]]_A = [[alpha]]_A * [[beta]]_A ^ v * [[m]]_A  A: [[d]]_B = [[v]]_B ^ beta * alpha * [[m]]_B
       so d = sigmoid(u_A) - y + c + beta u_B + gamma w: sigmoid(u_A + u_B) - y fitted over B's
       score distribution (model.corrected_terms); between refreshes c, beta and m are held
    each: [[G + R]]_peer = X_q^T [[d]]_peer + R, packed into few ciphertexts and re-randomised;
          the peer decrypts and returns G + R; the party removes R and updates its own weights.

docs/design.md linearises at u = 0 (``1/2 + u/4``); that fixed point is measurably worse than logistic
regression where the label is rare (the intercept moves every score far from 0). Linearising at u_A
lands within a few thousandths of AUC of scikit-learn; the curvature term, held between refreshes,
closes that gap (docs/protocol.md section 7). ``K`` = SCORE_CLIP bounds |u_B|, so every encoded value
has a known bound and packing slots cannot overflow; it never binds on sane data.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import PeerKeyOps
from fedlearn.crypto.packing import PackingLayout, packing_layout, unmask_truncated
from fedlearn.data import PartyTable
from fedlearn.errors import EncodingOverflow
from fedlearn.model import (
    CURVATURE_Z_CLIP,
    MAX_CURVATURE,
    MAX_OFFSET,
    MAX_SLOPE,
    ScoreStats,
    sigmoid,
    sigmoid_slope,
)
from fedlearn.preprocess import Preprocessor, PreprocessParams

#: |u_B| is clipped to SCORE_CLIP before encoding; v = u_B + SCORE_CLIP is then in [0, 2 K].
SCORE_CLIP = 64
#: Fixed-point bits of sigmoid'(u_A) (at most 1/4) and of A's loss coefficients.
SLOPE_FRAC_BITS = 16
#: Statistical hiding of masks: mask range is 2^MASK_BITS times the value range.
MASK_BITS = 80


@dataclass(frozen=True)
class FixedPointFeatures:
    """A party's quantised feature matrix: ``x = x_q / scales`` column by column."""

    x_q: np.ndarray  # (rows, f) int32
    scales: np.ndarray  # (f,) float64

    @property
    def x(self) -> np.ndarray:
        """(rows, f) float64: a new matrix of every row (8 bytes a cell); for a batch, ``x_rows``."""
        return np.asarray(self.x_q / self.scales, dtype=np.float64)

    def x_rows(self, rows: np.ndarray) -> np.ndarray:
        """``x[rows]``, the same values, without first dividing the whole matrix: (len(rows), f)."""
        return np.asarray(self.x_q[rows] / self.scales, dtype=np.float64)

    @property
    def n_features(self) -> int:
        return int(self.x_q.shape[1])


def residual_frac_bits(score_frac_bits: int) -> int:
    """Fixed-point bits of the residual d."""
    return SLOPE_FRAC_BITS + score_frac_bits


def gradient_bound_bits(max_rows: int, feature_bits: int, score_frac_bits: int) -> int:
    """Bits bounding |sum_i x_q[i, j] d_q[i]| over a batch of at most ``max_rows`` rows.

    |x_q| < 2^(feature_bits - 1) (binary columns: 1); |d| <= |sigmoid(u_A) - y + c| + |beta| K +
    |gamma| w <= 2 + K/4 + 9/2 < 2^5 for K = 64 (model's bounds on A's terms, w <= 9).
    """
    d_bound = 1 + MAX_OFFSET + MAX_SLOPE * SCORE_CLIP + MAX_CURVATURE * CURVATURE_Z_CLIP**2
    d_bits = math.ceil(math.log2(d_bound)) + residual_frac_bits(score_frac_bits)
    return int(max_rows).bit_length() + max(feature_bits - 1, 1) + d_bits + 1


def gradient_layout(
    n: int, *, max_rows: int, feature_bits: int, score_frac_bits: int
) -> PackingLayout:
    """The packing of masked gradients under modulus n; both parties derive the same one."""
    bound = gradient_bound_bits(max_rows, feature_bits, score_frac_bits)
    return packing_layout(n, value_bound_bits=bound, mask_bits=MASK_BITS)


def label_party_terms(
    u_a: np.ndarray,
    y: np.ndarray,
    score_frac_bits: int,
    beta: Sequence[int] | None = None,
    offset: np.ndarray | None = None,
) -> tuple[list[int], list[int]]:
    """A's per-row (alpha, beta) as signed fixed-point ints; the K offset cancels exactly in d.

    ``beta`` (s,), when given, is the slope to use instead of sigmoid'(u_A) (``fixed_slopes`` of
    A's corrected terms, or the one whose ciphertext B already holds for the row); alpha is then
    formed with it, so d = alpha + beta v stays exact for that slope. ``offset`` (s,) is A's c,
    added to sigmoid(u_A) - y.
    """
    if beta is None:
        beta = [int(v) for v in np.rint(sigmoid_slope(u_a) * 2.0**SLOPE_FRAC_BITS)]
    else:
        beta = [int(v) for v in beta]
    base = np.rint(
        (sigmoid(u_a) - np.asarray(y, dtype=np.float64) + (0.0 if offset is None else offset))
        * 2.0 ** residual_frac_bits(score_frac_bits)
    )
    shift = SCORE_CLIP << score_frac_bits
    alpha = [int(b) - shift * slope for b, slope in zip(base, beta, strict=True)]
    return alpha, beta


def fixed_slopes(values: np.ndarray) -> list[int]:
    """A's slopes or curvatures (floats, bounded by the model's MAX_*) at SLOPE_FRAC_BITS."""
    return [int(v) for v in np.rint(np.asarray(values, dtype=np.float64) * 2.0**SLOPE_FRAC_BITS)]


def feature_party_basis(
    scores_fixed: Sequence[int], stats: ScoreStats, score_frac_bits: int
) -> list[int]:
    """B's per-row w = round(clip((u_B - mean) / std, -3, 3)^2 2^F2) from its fixed v: in
    [0, 9 2^F2], so ``gamma w`` is at the residual's SLOPE_FRAC_BITS + F2 fractional bits."""
    offset = SCORE_CLIP << score_frac_bits
    u_b = (np.asarray(scores_fixed, dtype=np.float64) - offset) / 2.0**score_frac_bits
    return [int(v) for v in np.rint(stats.curvature_basis(u_b) * 2.0**score_frac_bits)]


def class_sum_bound_bits(rows: int, score_frac_bits: int) -> int:
    """Bits bounding the sum of B's v (each in [0, 2 K 2^F2]) over at most ``rows`` rows."""
    return (int(rows) * (2 * SCORE_CLIP << score_frac_bits)).bit_length()


def feature_party_scores(u_b: np.ndarray, score_frac_bits: int) -> list[int]:
    """B's per-row v = round(clip(u_B) 2^F2) + K 2^F2, non-negative ints."""
    clipped = np.clip(np.asarray(u_b, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)
    offset = SCORE_CLIP << score_frac_bits
    return [int(v) + offset for v in np.rint(clipped * 2.0**score_frac_bits)]


def feature_party_loss_term(scores_fixed: Sequence[int], score_frac_bits: int) -> int:
    """B's loss term sum(u_B^2)/8 at SLOPE_FRAC_BITS + F2 fractional bits (from B's fixed v)."""
    offset = SCORE_CLIP << score_frac_bits
    total = sum((v - offset) ** 2 for v in scores_fixed)
    shift = SLOPE_FRAC_BITS - score_frac_bits - 3  # / 2^(2 F2) * 2^(16 + F2) / 8
    return total << shift if shift >= 0 else total >> -shift


def label_party_loss(u_a: np.ndarray, y: np.ndarray) -> tuple[float, list[int], int]:
    """A's plaintext loss sum, and the coefficients c = sigmoid(u_A) - y (fixed) for the cross term.

    Returns (sum of l(u_A), c as ints at SLOPE_FRAC_BITS, sum of c) so that
    cross = dot(c, [[v]]) - K 2^F2 sum(c).
    """
    y = np.asarray(y, dtype=np.float64)
    plain = float(np.sum(np.logaddexp(0.0, u_a) - y * u_a))
    coefficients = [int(v) for v in np.rint((sigmoid(u_a) - y) * 2.0**SLOPE_FRAC_BITS)]
    return plain, coefficients, sum(coefficients)


def feature_party_residual(
    peer_engine: PeerKeyOps,
    alpha: Sequence[int],
    beta: Sequence[int],
    scores_fixed: Sequence[int],
    correction: Sequence[int],
) -> list[int]:
    """B: [[d]]_A = [[alpha]]_A [[beta]]_A^v [[m]]_A per row, under A's key.

    ``alpha``, ``beta`` and the curvature correction ``correction`` ([[gamma w]]_A, held since the
    row's last refresh) are ciphertexts under A's key (s,); ``scores_fixed`` B's v (s,), ints >= 0.
    """
    return peer_engine.add(
        peer_engine.add(alpha, peer_engine.scale(beta, scores_fixed)), correction
    )


def label_party_residual(
    peer_engine: PeerKeyOps,
    encrypted_scores: Sequence[int],
    alpha: Sequence[int],
    beta: Sequence[int],
    codec: FixedPointCodec,
    correction: Sequence[int],
) -> list[int]:
    """A: [[d]]_B = [[v]]_B^beta alpha [[m]]_B per row, under B's key.

    ``encrypted_scores`` are B's [[v]]_B (s,); ``alpha`` and ``beta`` A's fixed-point terms
    (signed); ``correction`` the held [[gamma w]]_B (s,); ``codec`` encodes signed ints mod B's n.
    """
    scaled = peer_engine.add_plain(
        peer_engine.scale(encrypted_scores, beta), codec.encode_int(alpha)
    )
    return peer_engine.add(scaled, correction)


def masked_gradient(
    peer_engine: PeerKeyOps,
    x_q_batch: np.ndarray,
    encrypted_residual: Sequence[int],
    layout: PackingLayout,
) -> tuple[list[int], list[int]]:
    """[[X^T d + R]]_peer, packed and re-randomised, and the masks R (kept by the party).

    ``encrypted_residual`` is [[d]] under the peer's key, one per batch row (s,); ``x_q_batch`` is
    (s, f). Returns ``ceil(f / layout.slots)`` ciphertexts under the peer's key.
    """
    gradient = peer_engine.matvec_t(x_q_batch, encrypted_residual)
    packed, masks = peer_engine.pack_masked(gradient, layout)
    return list(packed), list(masks)


def gradient_from_masked(
    masked_values: Sequence[int],
    masks: Sequence[int],
    *,
    layout: PackingLayout,
    features: FixedPointFeatures,
    score_frac_bits: int,
    batch_rows: int,
) -> np.ndarray:
    """The mean data gradient X^T d / s (float, shape (f,)) from the peer's returned masked slots.

    ``masked_values`` are the low b + 1 bits of each slot, as the key holder returns them
    (``packing.truncate``); any values decode to some gradient, so a wrong answer cannot provoke
    an error that depends on the masks.
    """
    integers = unmask_truncated(masked_values[: len(masks)], masks, layout)
    scale = features.scales * float(2 ** residual_frac_bits(score_frac_bits))
    total = np.array([float(v) for v in integers]) / scale
    return np.asarray(total / batch_rows, dtype=np.float64)


def loss_mask(bound_bits: int) -> int:
    """A mask R for the epoch loss, uniform in [2^bound_bits, 2^(bound_bits + MASK_BITS))."""
    return (1 << bound_bits) + secrets.randbelow(
        (1 << (bound_bits + MASK_BITS)) - (1 << bound_bits)
    )


def loss_bound_bits(rows: int, score_frac_bits: int) -> int:
    """Bits bounding |B's share of an epoch's loss| in fixed point (SLOPE_FRAC_BITS + F2 bits)."""
    per_row = 2 * SCORE_CLIP + SCORE_CLIP**2 / 8
    return (
        int(rows).bit_length()
        + math.ceil(math.log2(per_row))
        + residual_frac_bits(score_frac_bits)
        + 2
    )


def truncate_loss(masked_loss: int, bound_bits: int) -> int:
    """Key holder: the low ``bound_bits + 1`` bits of ``L + R``, all it sends back (see unmask_loss)."""
    return int(masked_loss) & ((1 << (bound_bits + 1)) - 1)


def unmask_loss(returned: int, mask: int, bound_bits: int) -> int:
    """L from ``(L + R) mod 2^(bound_bits + 1)`` and R, read as signed (|L| < 2^bound_bits).

    Raises ``EncodingOverflow`` when the returned value is wider than ``bound_bits + 1`` bits.
    """
    modulus = 1 << (bound_bits + 1)
    if not 0 <= int(returned) < modulus:
        raise EncodingOverflow("the returned epoch loss is wider than its bound")
    value = (int(returned) - mask) % modulus
    return value - modulus if value >= modulus >> 1 else value


FEATURE_CHUNK_ROWS = 65_536
"""Rows ``fit_party_features`` transforms at a time (the float64 intermediates' bound)."""


def fit_party_features(
    table: PartyTable,
    aligned_rows: np.ndarray,
    train_rows: np.ndarray,
    params: PreprocessParams,
    *,
    intercept: bool = False,
) -> tuple[Preprocessor, FixedPointFeatures]:
    """One party's preprocessing, fitted on its training rows, and its fixed-point features.

    ``aligned_rows`` index ``table`` in the session's common order; ``train_rows`` index those.
    The features cover every aligned row; with ``intercept`` a last column of ones (scale 1) is added
    (A's intercept). Both roles call this, so the two sides preprocess alike.
    """
    preprocessor = Preprocessor(
        numeric=table.numeric_columns,
        categorical=table.categorical_columns,
        config=params,
        allow_empty=intercept,  # A (the intercept's party) may bring the label alone
    )
    preprocessor.fit(table.features.iloc[aligned_rows[train_rows]].reset_index(drop=True))
    # Transform and quantise FEATURE_CHUNK_ROWS rows at a time into the int32 matrix: the float64
    # copies (the raw rows, the transformed and scaled matrices) never exceed one chunk. Rows are
    # transformed independently, so the result is the one of a single pass.
    width = len(preprocessor.output_names_) + int(intercept)
    x_q = np.empty((len(aligned_rows), width), dtype=np.int32)
    for start in range(0, len(aligned_rows), FEATURE_CHUNK_ROWS):
        rows = aligned_rows[start : start + FEATURE_CHUNK_ROWS]
        frame = table.features.iloc[rows].reset_index(drop=True)
        x_q[start : start + len(rows)] = fixed_point_features(
            preprocessor, frame, intercept=intercept
        ).x_q
    scales = np.asarray(preprocessor.scales_, dtype=np.float64)
    return preprocessor, FixedPointFeatures(x_q, np.append(scales, 1.0) if intercept else scales)


def fixed_point_features(
    preprocessor: Preprocessor, frame: pd.DataFrame, *, intercept: bool = False
) -> FixedPointFeatures:
    """A party's features for the encrypted math: preprocess, quantise, and the scales to divide by.

    ``preprocessor`` is fitted; ``frame`` holds its raw columns, one row per user. The result's
    ``x_q`` (rows, f) int32 multiplies ciphertexts; ``x = x_q / scales`` is what the model's
    weights apply to, in training and in scoring alike. With ``intercept`` a last column of ones
    (scale 1) is added (A's intercept). Raises ``DataError`` for bad values in ``frame``.
    """
    quantized = preprocessor.quantize(preprocessor.transform(frame)).astype(np.int32)
    scales = np.asarray(preprocessor.scales_, dtype=np.float64)
    if intercept:
        quantized = np.hstack([quantized, np.ones((len(frame), 1), dtype=np.int32)])
        scales = np.append(scales, 1.0)
    return FixedPointFeatures(quantized, scales)


def row_scores(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``x @ weights`` row by row, (rows, f) and (f,) -> (rows,) float64, computed so that a row's
    value does not depend on which other rows are in ``x``: scoring in chunks of any size gives the
    same scores, bit for bit. (BLAS's matrix-vector product blocks rows, so a row's rounding
    depends on its place in the block; ``einsum`` sums each row on its own.)"""
    return np.einsum("ij,j->i", x, weights)
