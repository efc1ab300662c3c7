"""The synthetic VIP demo data: determinism, label rate, overlaps, messy IDs, B's added signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fedlearn.data import PartyTable, load_party_table, read_table
from fedlearn.datasets import VipPaths, make_vip

ROWS = 5000


@pytest.fixture(scope="module")
def vip(tmp_path_factory: pytest.TempPathFactory) -> VipPaths:
    return make_vip(tmp_path_factory.mktemp("vip"), rows=ROWS, seed=7)


def _load(vip: VipPaths) -> tuple[PartyTable, PartyTable, PartyTable]:
    a_train = load_party_table(
        vip.a_train_csv,
        id_column=vip.id_column,
        label_column=vip.label_column,
        categorical=vip.a_categorical,
        require_label=True,
    )
    b = load_party_table(vip.b_features_csv, id_column=vip.id_column, categorical=vip.b_categorical)
    a_new = load_party_table(
        vip.a_new_users_csv, id_column=vip.id_column, categorical=vip.a_categorical
    )
    return a_train, b, a_new


def test_same_seed_same_bytes_other_seed_other_data(vip: VipPaths, tmp_path: Path) -> None:
    again = make_vip(tmp_path / "again", rows=ROWS, seed=7)
    other = make_vip(tmp_path / "other", rows=ROWS, seed=8)
    for name in ("a_train_csv", "b_features_csv", "a_new_users_csv", "a_new_users_truth_csv"):
        first: Path = getattr(vip, name)
        assert first.read_bytes() == getattr(again, name).read_bytes(), name
        assert first.read_bytes() != getattr(other, name).read_bytes(), name


def test_files_columns_and_sizes(vip: VipPaths) -> None:
    a_train, b, a_new = _load(vip)
    assert len(a_train.ids) == ROWS and len(a_new.ids) == ROWS // 5
    assert a_train.labels is not None and a_new.labels is None
    assert a_train.categorical_columns == list(vip.a_categorical)
    assert list(a_train.features.columns) == list(vip.a_columns)
    assert list(b.features.columns) == list(vip.b_columns)
    assert 15 <= len(vip.b_columns) <= 30
    assert set(vip.a_columns).isdisjoint(vip.b_columns)
    assert list(read_table(vip.a_new_users_csv).columns) == [vip.id_column, *vip.a_columns]


def test_positive_rate_and_truth(vip: VipPaths) -> None:
    a_train, _, a_new = _load(vip)
    assert a_train.labels is not None
    assert 0.08 <= a_train.labels.mean() <= 0.15
    truth = read_table(vip.a_new_users_truth_csv)
    assert truth[vip.id_column].tolist() == [
        i.strip() for i in read_table(vip.a_new_users_csv)[vip.id_column]
    ]
    assert 0.08 <= truth[vip.label_column].astype(int).mean() <= 0.15
    assert set(truth[vip.id_column]) == set(a_new.ids)


def test_overlaps_and_b_order(vip: VipPaths) -> None:
    a_train, b, a_new = _load(vip)
    train, new, b_ids = set(a_train.ids), set(a_new.ids), set(b.ids)
    assert train.isdisjoint(new)
    assert len(train & b_ids) == round(0.8 * ROWS)
    assert len(new & b_ids) == round(0.75 * (ROWS // 5))
    assert len(b_ids - train - new) == round(0.2 * ROWS)
    common_in_b_order = [i for i in b.ids if i in train]
    assert common_in_b_order != [i for i in a_train.ids if i in b_ids]


def test_ids_are_messy_but_normalise_to_unique(vip: VipPaths) -> None:
    raw = read_table(vip.a_train_csv)[vip.id_column]
    padded = raw != raw.str.strip()
    assert 0.003 < padded.mean() < 0.03
    assert raw.str.strip().str.match(r"^[uU]\d{7,}$").all()
    assert raw.str.strip().str.startswith("U").mean() > 0.01
    assert (
        raw.str.strip().str.match(r"^[uU]0").any()
    )  # leading zeros that a numeric read would lose


def test_missing_values_and_rare_categories(vip: VipPaths) -> None:
    a_train, b, _ = _load(vip)
    assert 0.03 < a_train.features["age"].isna().mean() < 0.07
    assert 0.02 < a_train.features["first_session_minutes"].isna().mean() < 0.06
    assert a_train.features["region"].isna().mean() > 0.01
    shares = a_train.features["signup_channel"].value_counts(normalize=True)
    assert shares.min() < 0.01  # some rare categories
    assert b.features["monthly_online_spend"].isna().mean() > 0.01


def _auc(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> float:
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    x_train, x_test, y_train, y_test = train_test_split(
        frame[numeric + categorical], frame["y"], test_size=0.3, random_state=0, stratify=frame["y"]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def test_b_columns_add_real_signal(vip: VipPaths) -> None:
    a_train, b, _ = _load(vip)
    a_frame = a_train.features.assign(id=a_train.ids, y=a_train.labels)
    joined = a_frame.merge(b.features.assign(id=b.ids), on="id")
    a_only = _auc(joined, a_train.numeric_columns, a_train.categorical_columns)
    both = _auc(
        joined,
        a_train.numeric_columns + b.numeric_columns,
        a_train.categorical_columns + b.categorical_columns,
    )
    assert 0.6 < a_only < 0.75
    assert both - a_only >= 0.05
    assert np.isfinite(both) and both > 0.75


def test_too_few_rows_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 100"):
        make_vip(tmp_path, rows=50)
