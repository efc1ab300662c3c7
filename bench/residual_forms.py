"""Other forms of the residual d, replayed in plain numpy with the job defaults (issue 10's AUC gap).

    python -m bench.residual_forms [--forms corrected,tangent,exact] [--sets breast,rare,...]

The protocol used to linearise ``d = sigmoid(u_A + u_B) - y`` in B's score around A's
(docs/protocol.md section 7): ``sigmoid(u_A) + sigmoid'(u_A) u_B``, two functions of A's score times
the basis ``(1, u_B)`` of B's. Any residual of the form ``sum_k f_k(u_A) g_k(u_B)`` costs the protocol one
ciphertext per row per term and side (A's ``[[f_k]]_A``, B's ``[[g_k]]_B``), so the question this
bench answers is what a third term buys before anyone builds it. Forms:

- ``corrected``: the protocol now (``fit_plain_reference``'s own residual): three terms fitted at
  each refresh, the curvature term held per row between refreshes (docs/protocol.md section 2);
- ``tangent``: the protocol before it, the tangent with the slopes on the refresh schedule;
- ``exact``: ``sigmoid(u_A + u_B) - y`` (not computable in the protocol: the bound on what any form
  can reach with this schedule);
- ``rank3``: B's basis ``(1, z, z^2 - 1)`` with ``z = clip((u_B - mu) / s, -3, 3)``, mu and s the
  mean and standard deviation of B's scores over its training rows at the end of the previous epoch
  (s at least 1: in the first epoch B's weights are 0 and B's scores still grow), and A's ``f_k(u_A)``
  the least-squares projection of ``sigmoid(u_A + mu + s z)`` on that basis for z ~ N(0, 1)
  (Gauss-Hermite, 32 nodes): A would learn mu and s once per epoch;
- ``rank3-class``: the same with mu and s per class of A's label (A picks its row's class):
  A would learn both classes' mean and standard deviation of B's scores once per epoch.
- ``pooled``: ``rank3-class`` with the statistics the protocol could gather cheaply (the previous
  epoch's batches, class means from sums of B's ``[[v]]``, one pooled within-class deviation), and
  its cheaper variants ``pooled-held`` (A's f_1, f_2 reused between the epochs that refresh the
  slopes), ``pooled-mixed`` (three terms only in those epochs), ``pooled-b`` and ``pooled-b-held``
  (A's own gradient keeps the tangent), ``pooled2`` and ``pooled2-held`` (two terms per class).
  What each costs and measures is in docs/quality.md ("What the three terms would cost").
- ``polish``: the former protocol's tangent until the run converges, then fresh three terms (``pooled``)
  until it converges again.

Everything else is ``fit_plain_reference``'s schedule (start, Adam, decay, averaging, stopping,
slope reuse for the tangent) and ``bench.quality``'s measurement (calibration, A-only fallback,
scikit-learn on the same training users, 15,000+ held-out matched users per VIP set). The results
are in docs/quality.md; of the forms here only ``corrected`` is in the protocol.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from bench import quality
from fedlearn.model import (
    PlainRun,
    ResidualForm,
    fit_plain_reference,
    linearized_residual,
    sigmoid,
    sigmoid_slope,
)

FORMS = (
    "corrected",
    "tangent",
    "exact",
    "rank3",
    "rank3-class",
    "pooled",
    "pooled-b",
    "pooled-held",
    "pooled-b-held",
    "pooled-mixed",
    "pooled2",
    "pooled2-held",
    "polish",
)
CLIP = 3.0  # B's z is clipped to [-3, 3]: every ciphertext B sends stays bounded
SCALE_FLOOR = 1.0  # logits: B's scores grow through the first epoch from 0
_NODES, _WEIGHTS = hermegauss(32)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def b_basis(z: np.ndarray) -> np.ndarray:
    """B's three functions of its standardised score (shape (..., 3)): 1, z, z^2 - 1, z clipped."""
    z = np.clip(z, -CLIP, CLIP)
    return np.stack([np.ones_like(z), z, z * z - 1.0], axis=-1)


def a_coefficients(
    u_a: np.ndarray, target: tuple[float, float], basis: tuple[float, float], terms: int = 3
) -> np.ndarray:
    """A's f_k(u_A) (shape (n, 3)): sigmoid(u_A + b) projected on B's basis in b.

    b ~ N(mu_t, s_t^2) with ``target`` = (mu_t, s_t): the distribution A assumes for the row's B
    score; ``basis`` = (mu, s): the standardisation B applied (B's overall statistics), so B's
    functions at b are ``b_basis((b - mu) / s)``.
    """
    (mu_t, s_t), (mu, s) = target, basis
    b = mu_t + s_t * _NODES
    design = b_basis((b - mu) / s)[:, :terms]
    values = sigmoid(u_a[:, None] + b[None, :])
    gram = design.T @ (_WEIGHTS[:, None] * design)
    return np.asarray((values * _WEIGHTS) @ design @ np.linalg.pinv(gram))


def separable_residual(
    u_a: np.ndarray,
    u_b: np.ndarray,
    y: np.ndarray,
    target: tuple[float, float],
    basis: tuple[float, float],
) -> np.ndarray:
    mu, s = basis
    coefficients = a_coefficients(u_a, target, basis)
    return np.asarray((coefficients * b_basis((u_b - mu) / s)).sum(axis=1) - y, dtype=np.float64)


class Exact:
    """``sigmoid(u_A + u_B) - y``: what no form of this kind can beat with this schedule."""

    def __call__(self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
        return np.asarray(sigmoid(u_a + u_b) - y, dtype=np.float64)

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, **_: Any) -> bool:
        return False


class ThreeTerms:
    """B's basis ``(1, z, z^2 - 1)``; A's fit over B's score distribution, per class or overall.

    The statistics are those of the previous epoch (B's scores of every training row with its
    last iterate), as the protocol would have them: (mu, s) overall, B's standardisation, and the
    distribution A assumes for a row of each label class (the overall one unless ``per_class``).
    """

    def __init__(self, per_class: bool) -> None:
        self.per_class = per_class
        self.overall = (0.0, SCALE_FLOOR)
        self.by_class = {False: self.overall, True: self.overall}

    def __call__(self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
        d = np.empty(len(y))
        classes = y.astype(bool)
        for label in (False, True):
            rows = classes == label
            d[rows] = separable_residual(
                u_a[rows], u_b[rows], y[rows], self.by_class[label], self.overall
            )
        return d

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, **_: Any) -> bool:
        self.overall = (float(scores_b.mean()), max(float(scores_b.std()), SCALE_FLOOR))
        for label in (False, True):
            group = scores_b[y.astype(bool) == label] if self.per_class else scores_b
            self.by_class[label] = (float(group.mean()), max(float(group.std()), SCALE_FLOOR))
        return False


def _grown(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array`` with room for every index in ``rows`` (per-row state; the row count is not passed)."""
    missing = int(rows.max()) + 1 - len(array) if len(rows) else 0
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]))]) if missing > 0 else array


class _HeldTangent:
    """The protocol's residual: the tangent with each row's slope as of the last epoch that
    refreshed it (``fit_plain_reference``'s own, for forms that use it in some epochs only)."""

    def __init__(self) -> None:
        self.slopes = np.zeros(0)

    def __call__(
        self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, *, rows: np.ndarray, refresh: bool
    ) -> np.ndarray:
        self.slopes = _grown(self.slopes, rows)
        if refresh:
            self.slopes[rows] = sigmoid_slope(u_a)
        return linearized_residual(u_a, u_b, y, self.slopes[rows])


class Tangent(_HeldTangent):
    """The protocol before the corrected residual: the tangent alone, slopes on its schedule."""

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, **_: Any) -> bool:
        return False


class Pooled:
    """Three (or two) terms from statistics the protocol can gather cheaply, with options for what
    they would cost.

    The statistics are those of the *previous epoch's batches*, as B's scores were at each step: B
    would sum its own ``u_B`` and ``u_B^2`` as it goes and tell A (mu, s); A would sum B's
    ``[[v]]_B`` per class and have the sums decrypted at the epoch's end (one value per class, no
    ``[[v^2]]``). A row of class y is taken as N(mu_y, s_w^2), s_w the pooled within-class deviation
    ``sqrt(s^2 - pi_0 pi_1 (mu_1 - mu_0)^2)``. Options:

    - ``a_side="tangent"``: A's own gradient keeps today's tangent (B sends no new ciphertext);
    - ``held``: A's f_1, f_2 and B's standardisation are those of the last epoch that refreshes the
      slopes (B would hold A's ciphertexts, as it holds ``[[beta]]`` today), f_0 current;
    - ``mixed``: three terms in the epochs that refresh the slopes, today's tangent with the held
      slope in the others;
    - ``terms=2``: B's basis ``(1, z)`` only, the fit per class (no new ciphertext at all).
    """

    def __init__(
        self, a_side: str = "three", held: bool = False, mixed: bool = False, terms: int = 3
    ) -> None:
        self.a_side, self.held, self.mixed, self.terms = a_side, held, mixed, terms
        floor = (0.0, SCALE_FLOOR)
        self.overall, self.by_class = floor, {False: floor, True: floor}
        self.frozen = floor  # B's standardisation (mu, s) in use
        self.tangent = _HeldTangent()  # mixed: the tangent in the epochs that do not refresh
        self.f12 = np.zeros((0, 2))  # held: A's f_1, f_2 per row
        self._sums = np.zeros((2, 3))  # per class: rows, sum u_B, sum u_B^2

    def __call__(
        self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, *, rows: np.ndarray, refresh: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        classes = y.astype(bool)
        self.gather(u_b, classes)
        if self.mixed:
            d = self.tangent(u_a, u_b, y, rows=rows, refresh=refresh)  # holds the slopes
            if not refresh:
                return d, d
        if not self.held or refresh:
            self.frozen = self.overall
        self.f12 = _grown(self.f12, rows)
        mu, s = self.frozen
        d_b = np.empty(len(y))
        for label in (False, True):
            mask = classes == label
            target = self.by_class[label]
            coefficients = a_coefficients(u_a[mask], target, self.frozen, self.terms)
            if self.held:
                picked = rows[mask]
                if refresh:
                    self.f12[picked, : self.terms - 1] = coefficients[:, 1:]
                held = self.f12[picked, : self.terms - 1]
                b = target[0] + target[1] * _NODES
                means = _WEIGHTS @ b_basis((b - mu) / s)[:, : self.terms]
                expected = (_WEIGHTS * sigmoid(u_a[mask][:, None] + b[None, :])).sum(axis=1)
                coefficients = np.c_[expected - held @ means[1:], held]
            basis = b_basis((u_b[mask] - mu) / s)[:, : self.terms]
            d_b[mask] = (coefficients * basis).sum(axis=1) - y[mask]
        if self.a_side == "tangent":
            return np.asarray(linearized_residual(u_a, u_b, y)), d_b
        return d_b, d_b

    def gather(self, u_b: np.ndarray, classes: np.ndarray) -> None:
        """Add one batch's B scores to the epoch's sums, per class."""
        for label in (False, True):
            group = u_b[classes == label]
            self._sums[int(label)] += (len(group), group.sum(), (group * group).sum())

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, **_: Any) -> bool:
        n, total, square = self._sums.sum(axis=0)
        mean = total / n
        variance = max(square / n - mean * mean, 0.0)
        means = {bool(k): self._sums[k, 1] / max(self._sums[k, 0], 1) for k in (0, 1)}
        shares = self._sums[:, 0] / n
        within = max(variance - shares[0] * shares[1] * (means[True] - means[False]) ** 2, 0.0)
        s_w = max(float(np.sqrt(within)), SCALE_FLOOR)
        self.overall = (float(mean), max(float(np.sqrt(variance)), SCALE_FLOOR))
        self.by_class = {k: (float(means[k]), s_w) for k in (False, True)}
        self._sums[:] = 0.0
        return False


class Polish:
    """The protocol's tangent (slopes reused on its schedule) until the run converges, then fresh
    three terms (``pooled``) until it converges again: the three terms' cost only at the end.

    B's statistics are gathered in every epoch, so the first three-term epoch has its previous
    epoch's. ``switched``: the epoch the three terms started (None while the tangent runs).
    """

    def __init__(self) -> None:
        self.three = Pooled()
        self.tangent = _HeldTangent()
        self.epochs = 0
        self.switched: int | None = None

    def __call__(
        self, u_a: np.ndarray, u_b: np.ndarray, y: np.ndarray, *, rows: np.ndarray, refresh: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if self.switched is not None:
            return self.three(u_a, u_b, y, rows=rows, refresh=True)
        self.three.gather(u_b, y.astype(bool))
        return self.tangent(u_a, u_b, y, rows=rows, refresh=refresh)

    def end_epoch(self, scores_b: np.ndarray, y: np.ndarray, *, converged: bool) -> bool:
        self.three.end_epoch(scores_b, y)
        self.epochs += 1
        if converged and self.switched is None:
            self.switched = self.epochs
            return True
        return False


def fit_form(form: str) -> Callable[..., PlainRun]:
    """``fit_plain_reference`` (the job's schedule) with the residual of ``form``."""
    forms: dict[str, Callable[[], ResidualForm | None]] = {
        "corrected": lambda: None,
        "tangent": Tangent,
        "exact": Exact,
        "rank3": lambda: ThreeTerms(per_class=False),
        "rank3-class": lambda: ThreeTerms(per_class=True),
        "pooled": lambda: Pooled(),
        "pooled-b": lambda: Pooled(a_side="tangent"),
        "pooled-held": lambda: Pooled(held=True),
        "pooled-b-held": lambda: Pooled(a_side="tangent", held=True),
        "pooled-mixed": lambda: Pooled(mixed=True),
        "pooled2": lambda: Pooled(terms=2),
        "pooled2-held": lambda: Pooled(terms=2, held=True),
        "polish": lambda: Polish(),
    }
    make = forms[form]

    def fit(*args: Any, **kwargs: Any) -> PlainRun:
        return fit_plain_reference(*args, **kwargs, residual=make())  # a fresh state per fit

    return fit


def builders() -> dict[str, Callable[[Path], quality.QualitySet]]:
    sets: dict[str, Callable[[Path], quality.QualitySet]] = {
        "breast": lambda out: quality.fate_set("breast", out),
        "default_credit": lambda out: quality.fate_set("default_credit", out),
        "rare": lambda out: quality.vip_set(
            50_000, 7, out, rare=0.02, new_users=quality._new(50_000)
        ),
    }
    for rows in (2_000, 20_000, 200_000):
        for seed in range(1, 6):
            sets[f"vip{rows}-{seed}"] = functools.partial(_vip, rows, seed)
    return sets


def _vip(rows: int, seed: int, out: Path) -> quality.QualitySet:
    return quality.vip_set(rows, seed, out, new_users=quality._new(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--sets", default="breast,rare,vip2000-1,vip20000-1,default_credit")
    args = parser.parse_args()
    forms = args.forms.split(",")
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        parser.error(f"unknown form {unknown[0]!r}: choose from {', '.join(FORMS)}")
    known = builders()
    print("form         set              epochs  AUC - scikit-learn  log loss ratio  calibration")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            if name not in known:
                parser.error(f"unknown set {name!r}: choose from {', '.join(known)}")
            qs = known[name](Path(tmp) / name)
            plain = quality.plain_view(qs)
            for form in forms:
                run = quality.replay_run(qs, plain, fit_form(form))
                m: dict[str, Any] = quality.measure(qs, plain, run)
                print(
                    f"{form:12s} {qs.name:16s} {m['stopped']['epochs']:6d}  "
                    f"{m['auc'] - m['sk_auc']:+.4f} ± {m['auc_difference_se']:.4f}   "
                    f"{m['log_loss'] / m['sk_log_loss']:6.3f}x        "
                    f"{100 * m['calibration_error']:+5.1f}%",
                    flush=True,
                )


if __name__ == "__main__":
    main()
