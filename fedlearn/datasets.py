"""The synthetic VIP demo data: a reading app (party A) and a data provider (party B).

``make_vip`` writes four CSV files for one seed, always the same bytes for the same arguments:

* ``a_train.csv``: A's training users: ``user_id``, A's signup-time columns (three categoricals,
  numerics with some missing values) and the label ``vip_30d`` (bought VIP within 30 days).
* ``b_features.csv``: B's users: ``user_id`` and 23 richer columns (spending, installed-app counts,
  interest scores, two categoricals). B knows 80% of A's training users, 75% of A's new users, and
  has extra users (20% of ``rows``) that A doesn't have; its rows are in its own (shuffled) order.
* ``a_new_users.csv``: A's columns, no label, for ``rows // 5`` new users not in the training file.
* ``a_new_users_truth.csv``: ``user_id, vip_30d`` for the new users, to check scoring quality.

How the labels arise: every user has three hidden traits, wealth ``w``, reading affinity ``r`` and
day-0 engagement ``e`` (which leans on ``r``). The label is drawn as
``vip_30d ~ Bernoulli(sigmoid(b0 + 1.1 w + 1.0 r + 0.35 e + channel and region effects))`` with
``b0`` set so that 11% of all users are positive. A's columns are noisy signals of ``e`` and faint
ones of ``w`` and ``r`` (device, age, pages read); B's columns measure ``w`` and ``r`` well. So a
logistic regression on A's columns alone ranks users clearly worse than one on both sides'
columns. Measured with scikit-learn (one-hot and standardised columns, mean imputation, 70/30 split
of the users both parties know): rows=50,000, seed 7: A-only AUC 0.688, joint 0.812; at rows=5,000
over seeds 1, 2, 7: A-only 0.66-0.68, joint 0.78-0.82 (``tests/test_datasets.py`` checks the gap).

IDs look like ``u0001234``; a legacy cohort has ``U`` instead (in both parties' files alike), and
about 1% of cells carry stray surrounding spaces, which ``fedlearn.data.normalise_ids`` strips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedlearn.data import write_table_atomic

ID_COLUMN = "user_id"
LABEL_COLUMN = "vip_30d"
POSITIVE_RATE = 0.11
B_KNOWS_TRAIN = 0.80
B_KNOWS_NEW = 0.75
B_EXTRA = 0.20

A_CATEGORICAL = ("signup_channel", "device_os", "region")
A_NUMERIC = (
    "first_session_minutes",
    "pages_read_day0",
    "chapters_unlocked_day0",
    "age",
    "hour_of_signup",
    "notifications_opt_in",
    "used_search_day0",
)
B_CATEGORICAL = ("device_price_tier", "city_tier")
B_NUMERIC = (
    "spending_level",
    "monthly_online_spend",
    "credit_card_holder",
    "membership_any",
    "payment_apps_count",
    "ecommerce_apps_count",
    "reading_apps_count",
    "video_apps_count",
    "game_apps_count",
    "finance_apps_count",
    "education_apps_count",
    "social_apps_count",
    "subscription_services_count",
    "paid_app_purchases_12m",
    "interest_fiction",
    "interest_romance",
    "interest_scifi",
    "interest_sports",
    "interest_finance",
    "interest_games",
    "avg_daily_screen_hours",
)

_CHANNELS = {  # category: (share, effect on the log-odds)
    "organic": (0.38, 0.0),
    "ads_social": (0.22, -0.25),
    "ads_search": (0.18, 0.05),
    "referral": (0.10, 0.35),
    "app_store_featured": (0.07, 0.20),
    "partner_promo": (0.03, 0.50),
    "influencer_campaign": (0.015, 0.10),
    "tv_ad": (0.005, 0.0),
}
_REGIONS = {
    "east": (0.30, 0.10),
    "south": (0.25, 0.0),
    "north": (0.20, -0.05),
    "west": (0.13, -0.10),
    "central": (0.10, 0.0),
    "overseas": (0.015, 0.30),
    "islands": (0.005, 0.0),
}


@dataclass(frozen=True)
class VipPaths:
    """Where ``make_vip`` wrote the files, and which columns play which part."""

    out_dir: Path
    a_train_csv: Path
    b_features_csv: Path
    a_new_users_csv: Path
    a_new_users_truth_csv: Path
    id_column: str
    label_column: str
    a_columns: tuple[str, ...]
    """A's feature columns (categorical and numeric), in file order."""
    a_categorical: tuple[str, ...]
    b_columns: tuple[str, ...]
    """B's feature columns (categorical and numeric), in file order."""
    b_categorical: tuple[str, ...]


def make_vip(
    out_dir: Path | str, *, rows: int = 50_000, seed: int = 7, new_users: int | None = None
) -> VipPaths:
    """Write the VIP demo files for ``rows`` training users into ``out_dir`` (created if needed).

    Deterministic: the same ``rows`` and ``seed`` give byte-identical files. Raises ``ValueError``
    when ``rows`` is below 100. ``new_users`` held-out new users (default ``rows // 5``; a benchmark
    asks for more to measure on, the training users' draws then differ). Node configs are not written here; the caller builds them from the
    returned ``VipPaths``.
    """
    if rows < 100:
        raise ValueError(f"rows must be at least 100 for the demo data; got {rows}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_new = rows // 5 if new_users is None else int(new_users)
    n_extra = round(B_EXTRA * rows)
    total = rows + n_new + n_extra  # users 0..rows-1 train, then new users, then B's extra users

    ids = _user_ids(rng, total)
    wealth, reading, engagement = (rng.standard_normal(total) for _ in range(3))
    engagement = 0.4 * reading + np.sqrt(1 - 0.4**2) * engagement
    a_frame, a_effect = _a_columns(rng, wealth, reading, engagement)
    b_frame = _b_columns(rng, wealth, reading)
    logit = 1.1 * wealth + 1.0 * reading + 0.35 * engagement + a_effect
    logit += _intercept_for_rate(logit, POSITIVE_RATE)
    labels = (rng.random(total) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    train = np.arange(rows)
    new = np.arange(rows, rows + n_new)
    extra = np.arange(rows + n_new, total)
    b_rows = np.concatenate(
        [
            rng.choice(train, round(B_KNOWS_TRAIN * rows), replace=False),
            rng.choice(new, round(B_KNOWS_NEW * n_new), replace=False),
            extra,
        ]
    )
    rng.shuffle(b_rows)

    paths = VipPaths(
        out_dir=out,
        a_train_csv=out / "a_train.csv",
        b_features_csv=out / "b_features.csv",
        a_new_users_csv=out / "a_new_users.csv",
        a_new_users_truth_csv=out / "a_new_users_truth.csv",
        id_column=ID_COLUMN,
        label_column=LABEL_COLUMN,
        a_columns=A_CATEGORICAL + A_NUMERIC,
        a_categorical=A_CATEGORICAL,
        b_columns=B_CATEGORICAL + B_NUMERIC,
        b_categorical=B_CATEGORICAL,
    )
    a_train = _with_ids(a_frame.iloc[train], _messy(rng, ids[train]))
    a_train[LABEL_COLUMN] = labels[train]
    write_table_atomic(a_train, paths.a_train_csv)
    write_table_atomic(_with_ids(a_frame.iloc[new], _messy(rng, ids[new])), paths.a_new_users_csv)
    truth = pd.DataFrame({ID_COLUMN: ids[new], LABEL_COLUMN: labels[new]})
    write_table_atomic(truth, paths.a_new_users_truth_csv)
    write_table_atomic(
        _with_ids(b_frame.iloc[b_rows], _messy(rng, ids[b_rows])), paths.b_features_csv
    )
    return paths


def _user_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    """Unique IDs ``u`` + zero-padded digits; a legacy cohort (5%) starts with ``U``."""
    digits = max(7, len(str(count * 20)))
    numbers = rng.choice(10**digits, size=count, replace=False)
    prefix = np.where(rng.random(count) < 0.05, "U", "u")
    return np.array(
        [f"{p}{n:0{digits}d}" for p, n in zip(prefix, numbers, strict=True)], dtype=object
    )


def _messy(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """The IDs as one party's export writes them: about 1% with stray spaces around them."""
    pad = rng.random(len(ids))
    out = ids.copy()
    out[pad < 0.005] = [f" {v}" for v in ids[pad < 0.005]]
    out[(pad >= 0.005) & (pad < 0.01)] = [f"{v}  " for v in ids[(pad >= 0.005) & (pad < 0.01)]]
    return out


def _with_ids(frame: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    result = frame.reset_index(drop=True)
    result.insert(0, ID_COLUMN, ids)
    return result


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _pick(
    rng: np.random.Generator, table: dict[str, tuple[float, float]], count: int
) -> tuple[np.ndarray, np.ndarray]:
    names = list(table)
    shares = np.array([table[name][0] for name in names])
    chosen = rng.choice(len(names), size=count, p=shares / shares.sum())
    effects = np.array([table[name][1] for name in names])[chosen]
    return np.array(names, dtype=object)[chosen], effects


def _with_missing(rng: np.random.Generator, values: pd.Series, rate: float) -> pd.Series:
    return values.mask(rng.random(len(values)) < rate)


def _a_columns(
    rng: np.random.Generator, wealth: np.ndarray, reading: np.ndarray, engagement: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """A's signup-time columns, and the log-odds effect of its channel and region."""
    n = len(wealth)
    noise = rng.standard_normal
    channel, channel_effect = _pick(rng, _CHANNELS, n)
    region, region_effect = _pick(rng, _REGIONS, n)
    region[rng.random(n) < 0.02] = None  # 2% with no region
    ios = rng.random(n) < _sigmoid(-0.6 + 0.5 * wealth)
    android_os = np.where(rng.random(n) < 0.09, "harmonyos", "android")
    device_os = np.where(ios, "ios", np.where(rng.random(n) < 0.01, "kaios", android_os))
    evening = rng.random(n) < 0.45
    hour = np.where(evening, rng.integers(18, 24, n), rng.integers(0, 24, n))
    frame = pd.DataFrame(
        {
            "signup_channel": channel,
            "device_os": device_os.astype(object),
            "region": region,
            "first_session_minutes": _with_missing(
                rng, pd.Series(np.exp(2.3 + 0.35 * engagement + 0.5 * noise(n)).round(1)), 0.04
            ),
            "pages_read_day0": rng.poisson(np.exp(1.5 + 0.4 * engagement + 0.15 * reading)),
            "chapters_unlocked_day0": rng.poisson(np.exp(0.2 + 0.3 * engagement)),
            "age": _with_missing(
                rng,
                pd.Series(np.clip(33 + 3 * wealth + 10 * noise(n), 16, 75).round()).astype("Int64"),
                0.05,
            ),
            "hour_of_signup": hour,
            "notifications_opt_in": (rng.random(n) < _sigmoid(0.3 * engagement)).astype(int),
            "used_search_day0": (rng.random(n) < _sigmoid(-1 + 0.5 * reading)).astype(int),
        }
    )
    return frame, channel_effect + region_effect


def _b_columns(rng: np.random.Generator, wealth: np.ndarray, reading: np.ndarray) -> pd.DataFrame:
    """B's richer columns: good measurements of wealth and reading affinity, and distractors."""
    n = len(wealth)

    def noise(scale: float = 1.0) -> np.ndarray:
        return scale * rng.standard_normal(n)

    def count(log_mean: np.ndarray | float) -> np.ndarray:
        return rng.poisson(np.exp(log_mean) * np.ones(n))

    def score(signal: np.ndarray | float, missing: float = 0.0) -> pd.Series:
        return _with_missing(rng, pd.Series(_sigmoid(signal + noise(0.8)).round(3)), missing)

    price_signal = wealth + noise(0.6)
    tiers = np.array(["budget", "mid", "premium", "flagship"], dtype=object)
    city_signal = 0.7 * wealth + noise(0.8)
    cities = np.array(["tier4", "tier3", "tier2", "tier1"], dtype=object)
    city = cities[np.digitize(city_signal, [-1.0, 0.0, 1.0])]
    city = np.where(rng.random(n) < 0.01, "unknown", city)
    return pd.DataFrame(
        {
            "device_price_tier": tiers[np.digitize(price_signal, [-0.8, 0.3, 1.3])],
            "city_tier": city,
            "spending_level": np.clip(np.round(3 + 1.1 * wealth + noise(0.7)), 1, 5).astype(int),
            "monthly_online_spend": _with_missing(
                rng, pd.Series(np.exp(5 + 0.8 * wealth + noise(0.6)).round(2)), 0.03
            ),
            "credit_card_holder": (rng.random(n) < _sigmoid(0.2 + 0.9 * wealth)).astype(int),
            "membership_any": (rng.random(n) < _sigmoid(-0.5 + 0.7 * wealth)).astype(int),
            "payment_apps_count": count(0.5 + 0.3 * wealth),
            "ecommerce_apps_count": count(1.0 + 0.3 * wealth),
            "reading_apps_count": count(0.3 + 0.6 * reading),
            "video_apps_count": count(1.2),
            "game_apps_count": count(1.0 - 0.2 * reading),
            "finance_apps_count": count(0.2 + 0.4 * wealth),
            "education_apps_count": count(0.3 + 0.2 * reading),
            "social_apps_count": count(1.3),
            "subscription_services_count": count(0.3 + 0.35 * wealth + 0.2 * reading),
            "paid_app_purchases_12m": count(0.5 + 0.5 * wealth + 0.3 * reading),
            "interest_fiction": score(0.9 * reading, missing=0.02),
            "interest_romance": score(0.6 * reading),
            "interest_scifi": score(0.4 * reading),
            "interest_sports": score(0.0),
            "interest_finance": score(0.4 * wealth, missing=0.02),
            "interest_games": score(-0.2 * reading),
            "avg_daily_screen_hours": np.clip(4 + 0.3 * reading + noise(1.5), 0.5, 14).round(1),
        }
    )


def _intercept_for_rate(logit: np.ndarray, rate: float) -> float:
    """The shift b0 with mean(sigmoid(logit + b0)) == rate (bisection; the mean rises with b0)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if _sigmoid(logit + middle).mean() < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2
