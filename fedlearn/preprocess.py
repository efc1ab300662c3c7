"""Each party's own preprocessing: fitted on its training rows, saved in its model shard.

A party turns its raw feature columns into a float matrix with :class:`Preprocessor` and then
into the short signed integers the encrypted math multiplies ciphertexts by
(:meth:`Preprocessor.quantize`, docs/design.md section 4). Nothing here crosses to the other party;
each side fits and keeps its own.

Output columns, in this order: for each numeric column (in the order given) its value, then its
missing-value indicator if it has one; then, for each categorical column, its one-hot block.

Numeric columns
    Missing values are imputed with the training median. A missing-value indicator column
    (``"<col>=<missing>"``, 1 where the raw value was missing) is added **only for columns that
    had missing values in the training rows**: a column that was always present gets no indicator
    (it would be a column of zeros the model could learn nothing from), and a missing value in such
    a column at transform time is still imputed with the median. Statistics are taken over the
    imputed training column (as ``SimpleImputer(strategy="median")`` then ``StandardScaler``).

    ``binning="none"``: standardised with the training mean and (population) standard deviation,
    then clipped to ``[-clip, clip]``. A constant training column becomes a column of zeros. This
    is a *dense* column: quantised to ``round(x * scale)`` with
    ``scale = (2**(feature_bits-1) - 1) / clip``.

    ``binning="quantile"``: cut at the training quantiles into at most ``bins`` bins (cut points are
    training values, so no bin is empty in training; a constant column gets a single bin), one-hot
    encoded as ``"<col>:bin<k>[lo,hi)"``. Values equal to a cut point go to the upper bin.

Categorical columns
    Values are compared as ``str(value)``. Missing values (None, NaN) form their own category,
    ``"<col>=<missing>"``. Categories whose share of training rows is below
    ``rare_min_fraction``, and all but the ``max_categories`` most frequent ones (ties broken by
    name), fold into ``"<col>=<other>"``, as do categories first seen at transform time. Every
    categorical column has an ``<other>`` column, so the output width never depends on what a
    later batch contains.

One-hot, bin and indicator columns are *binary*: exactly 0 or 1, quantised with scale 1, so the
encrypted math can select ciphertexts instead of exponentiating (docs/design.md section 4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fedlearn import metrics
from fedlearn.constraints import Constraints, Interval, Options, violations
from fedlearn.errors import ConfigError, DataError, EncodingOverflow, counted

FORMAT = "fedlearn.preprocessor/1"
MISSING_LABEL = "<missing>"
OTHER_LABEL = "<other>"
BINNING_MODES = ("none", "quantile")


@dataclass(frozen=True)
class PreprocessParams:
    """How a party preprocesses its columns: the job's ``[preprocess]`` table, sent to B in the job.

    Also the wire message of that name (``fedlearn.protocol.messages``). Not checked on construction
    (a message decoded from the wire may hold anything); ``check()`` checks it against
    ``_parameter_constraints``, and ``from_dict`` and ``Preprocessor.fit`` call it.
    """

    _parameter_constraints: ClassVar[Constraints] = {
        "clip": Interval(float, 0.5, 100.0),  # standardised values clipped to [-clip, clip]
        "rare_min_fraction": Interval(float, 0.0, 0.5),  # rarer categories fold into <other>
        "max_categories": Interval(int, 1, 10_000),  # at most this many categories per column
        "binning": Options(BINNING_MODES),  # "quantile": numeric columns -> quantile bins, one-hot
        "bins": Interval(int, 2, 1000),
        "feature_bits": Interval(int, 2, 16),  # signed fixed-point width of dense columns
    }

    clip: float = 4.0
    rare_min_fraction: float = 0.01
    max_categories: int = 50
    binning: str = "none"
    bins: int = 10
    feature_bits: int = 8

    def check(self) -> PreprocessParams:
        """Self, when every value is within its constraint; ConfigError naming each problem."""
        problems = violations(self._parameter_constraints, self.to_dict())
        if problems:
            raise ConfigError("preprocess config: " + "; ".join(problems))
        return self

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessParams:
        """Build and check from a ``[preprocess]``-like mapping; ConfigError names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"preprocess config: unknown key(s) {unknown}; allowed keys are {sorted(known)}"
            )
        return cls(**dict(d)).check()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def dense_scale(self) -> float:
        """Fixed-point scale of a dense column: [-clip, clip] maps onto the signed integer range."""
        return float((2 ** (self.feature_bits - 1) - 1) / self.clip)


DEFAULT_CONFIG = PreprocessParams()


@dataclass(frozen=True)
class _NumericState:
    name: str
    median: float
    indicator: bool  # the column had missing values in training: emit <col>=<missing>
    mean: float
    std: float  # 0.0 for a constant training column: the output is zeros
    cuts: tuple[float, ...]  # binning="quantile" only: ascending cut points


@dataclass(frozen=True)
class _CategoricalState:
    name: str
    categories: tuple[str | None, ...]  # kept categories in output order; None is <missing>


class Preprocessor:
    """Fit on a party's training rows; transform any rows of the same columns.

    Fitted attributes: ``output_names_`` (list of str, one per output column), ``binary_columns_``
    (bool array: the column is exactly 0/1) and ``scales_`` (float array: the fixed-point scale of
    each output column, 1.0 for binary columns).
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        config: PreprocessParams = DEFAULT_CONFIG,
        allow_empty: bool = False,
    ) -> None:
        """``allow_empty``: no columns at all is a valid fit (zero output columns): A, which
        holds the label, may bring no features and rely on B's and its intercept."""
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.config = config
        self.allow_empty = allow_empty
        self._numeric_states: list[_NumericState] | None = None
        self._categorical_states: list[_CategoricalState] | None = None
        self.uninformative_columns_: list[str] = []  # set by fit(); not kept by to_dict()

    # ----------------------------------------------------------------------------------- fitting
    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        """Learn medians, means, stds, bin cuts and categories from the training rows.

        Raises ConfigError for a bad column list and DataError for missing columns, no rows,
        non-numeric or infinite values in a numeric column.
        """
        self._check_columns_config()
        _require_columns(frame, self.numeric + self.categorical)
        if len(frame) == 0:
            raise DataError("cannot fit preprocessing on 0 rows")
        self._numeric_states = []
        # Columns whose training rows all hold one value (all missing counts as one): they carry
        # nothing for this model, and the operator should hear of it (a join or export gone wrong).
        self.uninformative_columns_ = []
        for name in self.numeric:
            values = _numeric_values(frame, name)
            self._numeric_states.append(self._fit_numeric(name, values))
            missing = np.isnan(values)
            if missing.all() or (not missing.any() and values.max() == values.min()):
                self.uninformative_columns_.append(name)
        self._categorical_states = [
            self._fit_categorical(name, frame[name]) for name in self.categorical
        ]
        self.uninformative_columns_ += [
            name for name in self.categorical if frame[name].nunique(dropna=False) <= 1
        ]
        names = self.output_names_
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(
                f"output column names collide: {duplicates}; rename the raw columns or categories"
            )
        return self

    def _check_columns_config(self) -> None:
        if not isinstance(self.config, PreprocessParams):
            raise ConfigError(
                f"config must be a PreprocessParams, got {type(self.config).__name__}"
            )
        self.config.check()
        all_columns = self.numeric + self.categorical
        if not all_columns and not self.allow_empty:
            raise ConfigError("no feature columns: give at least one numeric or categorical column")
        repeated = sorted({c for c in all_columns if all_columns.count(c) > 1})
        if repeated:
            raise ConfigError(
                f"column(s) {repeated} listed more than once across numeric and categorical"
            )

    def _fit_numeric(self, name: str, values: np.ndarray) -> _NumericState:
        missing = np.isnan(values)
        observed = values[~missing]
        median = float(np.median(observed)) if observed.size else 0.0
        imputed = np.where(missing, median, values)
        constant = bool(imputed.max() == imputed.min())
        cuts: tuple[float, ...] = ()
        if self.config.binning == "quantile":
            probs = np.linspace(0.0, 1.0, self.config.bins + 1)[1:-1]
            candidates = np.unique(np.quantile(imputed, probs, method="lower"))
            cuts = tuple(float(c) for c in candidates if c > imputed.min())
        return _NumericState(
            name=name,
            median=median,
            indicator=bool(missing.any()),
            mean=float(imputed.mean()),
            std=0.0 if constant else float(imputed.std()),
            cuts=cuts,
        )

    def _fit_categorical(self, name: str, column: pd.Series) -> _CategoricalState:
        codes, texts = _category_codes(column)
        per_code = np.bincount(codes[codes >= 0], minlength=len(texts))
        counts: dict[str | None, int] = {}
        for text, count in zip(texts, per_code.tolist(), strict=True):
            counts[text] = counts.get(text, 0) + count  # 1 and "1" are the same category
        if (codes < 0).any():
            counts[None] = int((codes < 0).sum())
        threshold = self.config.rare_min_fraction * len(column)
        frequent = [value for value, count in counts.items() if count >= threshold]
        frequent.sort(key=lambda v: (-counts[v], v is None, v or ""))
        kept = tuple(frequent[: self.config.max_categories])
        return _CategoricalState(name=name, categories=kept)

    # -------------------------------------------------------------------------- fitted attributes
    def _states(self) -> tuple[list[_NumericState], list[_CategoricalState]]:
        if self._numeric_states is None or self._categorical_states is None:
            raise RuntimeError("Preprocessor is not fitted: call fit() or load it with from_dict()")
        return self._numeric_states, self._categorical_states

    @property
    def output_names_(self) -> list[str]:
        names, _ = self._layout()
        return names

    @property
    def binary_columns_(self) -> np.ndarray:
        _, binary = self._layout()
        return np.array(binary, dtype=bool)

    @property
    def scales_(self) -> np.ndarray:
        return np.where(self.binary_columns_, 1.0, self.config.dense_scale)

    def _layout(self) -> tuple[list[str], list[bool]]:
        numeric_states, categorical_states = self._states()
        names: list[str] = []
        binary: list[bool] = []
        for num in numeric_states:
            if self.config.binning == "quantile":
                edges = [-math.inf, *num.cuts, math.inf]
                for k in range(len(num.cuts) + 1):
                    names.append(f"{num.name}:bin{k}[{edges[k]:.6g},{edges[k + 1]:.6g})")
                    binary.append(True)
            else:
                names.append(num.name)
                binary.append(False)
            if num.indicator:
                names.append(f"{num.name}={MISSING_LABEL}")
                binary.append(True)
        for cat in categorical_states:
            for value in (*cat.categories, OTHER_LABEL):
                label = MISSING_LABEL if value is None else value
                names.append(f"{cat.name}={label}")
                binary.append(True)
        return names, binary

    # ------------------------------------------------------------------------------- transforming
    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Float64 matrix of shape (rows, len(output_names_)); extra frame columns are ignored.

        Raises DataError naming missing columns, or naming a numeric column with non-numeric or
        infinite values.
        """
        numeric_states, categorical_states = self._states()
        _require_columns(frame, self.numeric + self.categorical)
        blocks: list[np.ndarray] = []
        for num in numeric_states:
            blocks.extend(self._transform_numeric(num, _numeric_values(frame, num.name)))
        for cat in categorical_states:
            blocks.append(_transform_categorical(cat, frame[cat.name]))
        if not blocks:
            return np.zeros((len(frame), 0))
        return np.column_stack(blocks).astype(np.float64, copy=False)

    def _transform_numeric(self, num: _NumericState, values: np.ndarray) -> list[np.ndarray]:
        missing = np.isnan(values)
        imputed = np.where(missing, num.median, values)
        out: list[np.ndarray] = []
        if self.config.binning == "quantile":
            bin_index = np.searchsorted(np.asarray(num.cuts, dtype=float), imputed, side="right")
            out.append(_one_hot(bin_index, len(num.cuts) + 1))
        elif num.std == 0.0:
            out.append(np.zeros_like(imputed))
        else:
            standardised = (imputed - num.mean) / num.std
            out.append(np.clip(standardised, -self.config.clip, self.config.clip))
        if num.indicator:
            out.append(missing.astype(np.float64))
        return out

    def quantize(self, matrix: np.ndarray) -> np.ndarray:
        """Fixed-point int64 matrix, same shape: dense ``round(x * scale_j)``, binary exactly 0/1.

        ``quantize(X) / scales_`` is what the model uses; for dense columns it is within
        ``0.5 / scale = clip / (2**(feature_bits-1) - 1) / 2`` of X. Raises DataError for a wrong
        width, NaN or a binary column that is not 0/1, and EncodingOverflow for a dense value
        outside ``[-clip, clip]`` (which ``transform`` never produces).
        """
        x = np.asarray(matrix, dtype=np.float64)
        width = len(self.output_names_)
        if x.ndim != 2 or x.shape[1] != width:
            raise DataError(
                f"matrix has shape {x.shape}, but the preprocessor produces {width} columns"
            )
        if np.isnan(x).any():
            raise DataError("matrix has NaN values; quantize the output of transform()")
        binary = self.binary_columns_
        bad = binary & ~np.isin(x, (0.0, 1.0)).all(axis=0)
        if bad.any():
            names = [n for n, b in zip(self.output_names_, bad, strict=True) if b]
            raise DataError(f"binary column(s) {names} hold values other than 0 and 1")
        quantized = np.rint(x * self.scales_)
        limit = 2 ** (self.config.feature_bits - 1) - 1
        if np.abs(quantized).max(initial=0.0) > limit:
            raise EncodingOverflow(
                f"a dense value lies outside [-{self.config.clip}, {self.config.clip}] and "
                f"does not fit {self.config.feature_bits} signed bits"
            )
        return quantized.astype(np.int64)

    # ------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fitted state; a JSON round trip through :meth:`from_dict` is exact."""
        numeric_states, categorical_states = self._states()
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "numeric_state": [
                {
                    "name": n.name,
                    "median": n.median,
                    "indicator": n.indicator,
                    "mean": n.mean,
                    "std": n.std,
                    "cuts": list(n.cuts),
                }
                for n in numeric_states
            ],
            "categorical_state": [
                {"name": c.name, "categories": list(c.categories)} for c in categorical_states
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessor:
        """Load a fitted preprocessor saved by :meth:`to_dict`; DataError if it is malformed."""
        if d.get("format") != FORMAT:
            raise DataError(
                f"preprocessor state has format {d.get('format')!r}, expected {FORMAT!r}"
            )
        try:
            pre = cls(
                numeric=[str(n) for n in d["numeric"]],
                categorical=[str(c) for c in d["categorical"]],
                config=PreprocessParams.from_dict(d["config"]),
            )
            pre._numeric_states = [
                _NumericState(
                    name=str(s["name"]),
                    median=float(s["median"]),
                    indicator=bool(s["indicator"]),
                    mean=float(s["mean"]),
                    std=float(s["std"]),
                    cuts=tuple(float(c) for c in s["cuts"]),
                )
                for s in d["numeric_state"]
            ]
            pre._categorical_states = [
                _CategoricalState(
                    name=str(s["name"]),
                    categories=tuple(None if c is None else str(c) for c in s["categories"]),
                )
                for s in d["categorical_state"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"preprocessor state is malformed: {exc!r}") from exc
        if [s.name for s in pre._numeric_states] != pre.numeric or [
            s.name for s in pre._categorical_states
        ] != pre.categorical:
            raise DataError("preprocessor state is malformed: column states do not match columns")
        return pre


# ------------------------------------------------------------------------------------- helpers
def _require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"input is missing column(s) {absent}")


def uninformative_note(columns: Sequence[str]) -> str:
    """What the operator is told of :attr:`Preprocessor.uninformative_columns_` (A's model notes,
    B's log)."""
    return (
        f"column(s) {', '.join(columns)} hold one value on every training row: they carry "
        "nothing for this model (check the export)"
    )


#: A column whose AUC alone on the training rows is this far from 0.5 (0.99 or 0.01) is named.
LEAK_AUC_MARGIN = 0.49
#: ... when each label class has at least this many training rows (fewer could do it by chance).
LEAK_MIN_CLASS_ROWS = 20
#: The check reads at most this many rows (the first training rows; the aligned rows are in the
#: session's random common order): an AUC of 0.99 shows as well on them, at a bounded cost.
LEAK_SAMPLE_ROWS = 200_000


def separating_columns(
    x: np.ndarray, rows: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> list[tuple[str, float]]:
    """(name, AUC) of each of the first ``len(names)`` columns of ``x`` that alone separates
    ``labels`` (one per row of ``rows``) almost perfectly. One column of ``rows`` is copied at a
    time; a positive scale per column (quantised features) changes no AUC.

    Such a column is nearly always recorded after the outcome (a purchase date, a VIP flag): it
    leaks the label, and the model will not score new users the way it scores these rows. The AUC
    of a column is that of ranking the rows by its values (``metrics.auc``: ties count half).
    """
    rows, labels = rows[:LEAK_SAMPLE_ROWS], np.asarray(labels)[:LEAK_SAMPLE_ROWS].astype(int)
    positives = int(labels.sum())
    if min(positives, len(labels) - positives) < LEAK_MIN_CLASS_ROWS:
        return []
    found = []
    for column, name in enumerate(names):
        auc = metrics.auc(labels, x[rows, column])
        if abs(auc - 0.5) >= LEAK_AUC_MARGIN:
            found.append((str(name), float(auc)))
    return found


def separating_note(found: Sequence[tuple[str, float]]) -> str:
    """What A's operator is told of ``separating_columns`` (printed after training, kept)."""
    shown = ", ".join(f"{name} (AUC {auc:.3f})" for name, auc in found)
    return (
        f"column(s) {shown} alone separate the label almost perfectly on the training rows: a "
        "column recorded after the outcome (a purchase date, a VIP flag) leaks the label, and the "
        "model will not score new users as well as these rows. Keep only what is known on the day "
        "a user signs up"
    )


def _numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The column as float64 with NaN for missing; DataError on text or infinite values."""
    column = frame[name]
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        coerced = pd.to_numeric(column, errors="coerce")
        bad = (coerced.isna() & column.notna()).to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"column {name!r} has {counted(int(bad.sum()), 'non-numeric value')}, "
                f"first at row {first} ({column.iloc[first]!r})"
            )
        values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        raise DataError(
            f"column {name!r} has {counted(int(infinite.sum()), 'infinite value')}, first at row {first}"
        )
    return values


def _category_codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(code per row, -1 where missing; the distinct values as text, indexed by code)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), [str(value) for value in uniques]


def _transform_categorical(cat: _CategoricalState, column: pd.Series) -> np.ndarray:
    codes, texts = _category_codes(column)
    other = len(cat.categories)
    index = {value: i for i, value in enumerate(cat.categories) if value is not None}
    missing = cat.categories.index(None) if None in cat.categories else other
    # Output index per distinct value, then one more entry that code -1 (missing) picks up.
    lookup = np.array([index.get(text, other) for text in texts] + [missing], dtype=np.int64)
    return _one_hot(lookup[codes], other + 1)


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((codes.shape[0], width), dtype=np.float64)
    out[np.arange(codes.shape[0]), codes] = 1.0
    return out
