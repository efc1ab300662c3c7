"""Unit tests for fedlearn.preprocess: each party's own column preprocessing and quantisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedlearn.errors import ConfigError, DataError, EncodingOverflow
from fedlearn.preprocess import Preprocessor, PreprocessParams


def _frame(rows: int = 200, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(8.0, 1.0, rows)
    income[rng.random(rows) < 0.1] = np.nan
    age = rng.normal(35.0, 10.0, rows)
    channel = rng.choice(["ads", "organic", "referral", "tiny"], rows, p=[0.5, 0.3, 0.195, 0.005])
    device = rng.choice(["ios", "android"], rows).astype(object)
    device[rng.random(rows) < 0.2] = None
    return pd.DataFrame(
        {
            "income": income,
            "age": age,
            "channel": pd.array(channel, dtype="str"),
            "device": device,
            "user_id": np.arange(rows),
        }
    )


def _fitted(config: PreprocessParams | None = None, rows: int = 200) -> Preprocessor:
    pre = Preprocessor(
        numeric=["income", "age"],
        categorical=["channel", "device"],
        config=config or PreprocessParams(),
    )
    return pre.fit(_frame(rows))


# ------------------------------------------------------------------------------------- config
def test_config_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['bogus', 'clipp'\]"):
        PreprocessParams.from_dict({"clip": 3.0, "clipp": 3.0, "bogus": 1})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("clip", 0),
        ("clip", float("inf")),
        ("clip", "4"),
        ("rare_min_fraction", 1.0),
        ("rare_min_fraction", -0.1),
        ("max_categories", 0),
        ("max_categories", 2.5),
        ("binning", "kmeans"),
        ("bins", 1),
        ("bins", True),
        ("feature_bits", 1),
        ("feature_bits", 64),
    ],
)
def test_config_rejects_bad_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        PreprocessParams.from_dict({key: value})


def test_config_from_dict_roundtrip() -> None:
    config = PreprocessParams.from_dict({"clip": 3.0, "binning": "quantile", "bins": 5})
    assert config == PreprocessParams(clip=3.0, binning="quantile", bins=5)
    assert PreprocessParams.from_dict(config.to_dict()) == config


# ------------------------------------------------------------------------------------- numeric
def test_numeric_matches_sklearn_impute_then_scale() -> None:
    frame = _frame()
    pre = Preprocessor(
        numeric=["income", "age"], categorical=[], config=PreprocessParams(clip=100.0)
    )
    out = pre.fit(frame).transform(frame)
    assert pre.output_names_ == ["income", "income=<missing>", "age"]
    reference = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    expected = reference.fit_transform(frame[["income", "age"]].to_numpy())
    np.testing.assert_allclose(out[:, [0, 2]], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[:, 1], frame["income"].isna().to_numpy(dtype=float))


def test_numeric_clipped_to_clip() -> None:
    frame = pd.DataFrame({"x": np.r_[np.zeros(99), 1000.0]})
    pre = Preprocessor(numeric=["x"], categorical=[], config=PreprocessParams(clip=2.5))
    out = pre.fit(frame).transform(frame)
    assert out.max() == 2.5
    assert out.min() > -2.5


def test_indicator_only_for_columns_missing_in_training() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 10.0], "y": [1.0, np.nan, 3.0, 4.0]})
    pre = Preprocessor(numeric=["x", "y"], categorical=[]).fit(train)
    assert pre.output_names_ == ["x", "y", "y=<missing>"]
    # At transform time a missing x (no indicator) is still imputed with the training median 2.5.
    out = pre.transform(pd.DataFrame({"x": [np.nan, 2.5], "y": [np.nan, 3.0]}))
    assert out[0, 0] == out[1, 0]
    assert out[:, 2].tolist() == [1.0, 0.0]
    assert out[0, 1] == out[1, 1]  # y imputed with its median, 3.0


def test_constant_column_is_zeros_not_nan() -> None:
    train = pd.DataFrame({"c": [0.1] * 7, "x": np.arange(7.0)})
    pre = Preprocessor(numeric=["c", "x"], categorical=[]).fit(train)
    out = pre.transform(pd.DataFrame({"c": [0.1, 5.0], "x": [1.0, 2.0]}))
    assert np.isfinite(out).all()
    assert out[:, 0].tolist() == [0.0, 0.0]


def test_all_missing_training_column_does_not_produce_nan() -> None:
    train = pd.DataFrame({"x": [np.nan] * 4, "y": [1.0, 2.0, 3.0, 4.0]})
    pre = Preprocessor(numeric=["x", "y"], categorical=[]).fit(train)
    assert np.isfinite(pre.transform(train)).all()


def test_numeric_text_value_is_named() -> None:
    frame = pd.DataFrame({"income": ["1.5", "2", None, "n/a", "oops"]})
    pre = Preprocessor(numeric=["income"], categorical=[])
    with pytest.raises(
        DataError, match=r"'income' has 2 non-numeric values, first at row 3 \('n/a'\)"
    ):
        pre.fit(frame)


def test_numeric_infinite_value_is_refused() -> None:
    with pytest.raises(DataError, match="'x' has 1 infinite"):
        Preprocessor(numeric=["x"], categorical=[]).fit(pd.DataFrame({"x": [1.0, np.inf]}))


# --------------------------------------------------------------------------------- categorical
def test_categorical_rare_unseen_and_missing() -> None:
    pre = _fitted()
    names = [n for n in pre.output_names_ if n.startswith(("channel=", "device="))]
    # "tiny" is under 1% of training rows: folded into <other>; most frequent first.
    assert names[:4] == ["channel=ads", "channel=organic", "channel=referral", "channel=<other>"]
    assert set(names[4:]) == {"device=ios", "device=android", "device=<missing>", "device=<other>"}
    assert names[-1] == "device=<other>"
    new = _frame(4).assign(
        channel=pd.array(["tiny", "brand-new", None, "ads"], dtype="str"),
        device=["ios", None, "windows", "android"],
    )
    out = pd.DataFrame(pre.transform(new), columns=pre.output_names_)
    assert out["channel=<other>"].tolist() == [1.0, 1.0, 1.0, 0.0]  # rare, unseen, unseen missing
    assert out["channel=ads"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert out["device=<missing>"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert out["device=<other>"].tolist() == [0.0, 0.0, 1.0, 0.0]
    one_hot_blocks = [c for c in out.columns if c.startswith("channel=")]
    assert (out[one_hot_blocks].sum(axis=1) == 1.0).all()


def test_max_categories_keeps_most_frequent_with_name_tiebreak() -> None:
    frame = pd.DataFrame({"c": ["b", "b", "a", "a", "c", "c", "d", "d", "d", "e"]})
    config = PreprocessParams(max_categories=3, rare_min_fraction=0.0)
    pre = Preprocessor(numeric=[], categorical=["c"], config=config).fit(frame)
    assert pre.output_names_ == ["c=d", "c=a", "c=b", "c=<other>"]


def test_categorical_numbers_compared_as_text() -> None:
    frame = pd.DataFrame({"region": [1, 2, 2, 1]})
    pre = Preprocessor(numeric=[], categorical=["region"]).fit(frame)
    assert pre.output_names_ == ["region=1", "region=2", "region=<other>"]


def test_categorical_mixed_object_values() -> None:
    # 1 and "1" are one category; None and NaN are both missing.
    frame = pd.DataFrame({"c": pd.Series([1, "1", "2", None, np.nan, "1"], dtype=object)})
    pre = Preprocessor(numeric=[], categorical=["c"]).fit(frame)
    assert pre.output_names_ == ["c=1", "c=<missing>", "c=2", "c=<other>"]
    out = pre.transform(frame)
    assert out.argmax(axis=1).tolist() == [0, 0, 2, 1, 1, 0]


def test_output_name_collision_is_an_error() -> None:
    frame = pd.DataFrame({"x=<missing>": [1.0, 2.0], "x": ["a", None]})
    with pytest.raises(DataError, match="collide"):
        Preprocessor(numeric=["x=<missing>"], categorical=["x"]).fit(frame)


# ------------------------------------------------------------------------------------ binning
def test_quantile_binning_one_hot() -> None:
    frame = pd.DataFrame({"x": np.arange(1.0, 11.0), "y": [0.0] * 6 + [1.0] * 4})
    config = PreprocessParams(binning="quantile", bins=4)
    # Cut points are training values (quantile method "lower"): 3, 5 and 7 for x.
    pre = Preprocessor(numeric=["x", "y"], categorical=[], config=config).fit(frame)
    x_bins = [n for n in pre.output_names_ if n.startswith("x:")]
    assert x_bins == ["x:bin0[-inf,3)", "x:bin1[3,5)", "x:bin2[5,7)", "x:bin3[7,inf)"]
    assert [n for n in pre.output_names_ if n.startswith("y:")] == [
        "y:bin0[-inf,1)",
        "y:bin1[1,inf)",
    ]
    out = pre.transform(frame)
    assert pre.binary_columns_.all()
    assert (out.sum(axis=0) > 0).all()  # no empty bin in training
    assert np.argmax(out[:, :4], axis=1).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    unseen = pre.transform(pd.DataFrame({"x": [-100.0, 100.0, np.nan], "y": [0.5, 2.0, 1.0]}))
    assert np.argmax(unseen[:, :4], axis=1).tolist() == [0, 3, 2]  # NaN -> median 5.5 -> bin2


# ----------------------------------------------------------------------------------- quantize
def test_scales_and_binary_columns() -> None:
    pre = _fitted(PreprocessParams(clip=4.0, feature_bits=8))
    dense = ~pre.binary_columns_
    assert [n for n, d in zip(pre.output_names_, dense, strict=True) if d] == ["income", "age"]
    np.testing.assert_array_equal(pre.scales_[dense], 127 / 4.0)
    np.testing.assert_array_equal(pre.scales_[~dense], 1.0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    clip=st.floats(0.5, 8.0),
    bits=st.integers(2, 16),
)
def test_quantize_error_bound(seed: int, clip: float, bits: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x": rng.standard_cauchy(50), "y": rng.normal(size=50), "c": rng.choice(["p", "q"], 50)}
    )
    config = PreprocessParams(clip=clip, feature_bits=bits)
    pre = Preprocessor(numeric=["x", "y"], categorical=["c"], config=config).fit(frame)
    matrix = pre.transform(frame)
    quantized = pre.quantize(matrix)
    assert quantized.dtype == np.int64 and quantized.shape == matrix.shape
    assert np.abs(quantized).max() <= 2 ** (bits - 1) - 1
    dense = ~pre.binary_columns_
    error = np.abs(quantized / pre.scales_ - matrix)
    assert error[:, dense].max() <= clip / (2 ** (bits - 1) - 1) / 2 * (1 + 1e-12)
    np.testing.assert_array_equal(quantized[:, ~dense], matrix[:, ~dense])


def test_quantize_rejects_bad_matrices() -> None:
    pre = _fitted()
    matrix = pre.transform(_frame(10))
    with pytest.raises(DataError, match="produces 11 columns"):
        pre.quantize(matrix[:, :-1])
    not_binary = matrix.copy()
    not_binary[0, -1] = 0.5
    with pytest.raises(DataError, match=r"device=<other>"):
        pre.quantize(not_binary)
    too_big = matrix.copy()
    too_big[0, 0] = 4.1
    with pytest.raises(EncodingOverflow):
        pre.quantize(too_big)


# ----------------------------------------------------------------------- columns, persistence
def test_transform_names_missing_columns() -> None:
    pre = _fitted()
    with pytest.raises(DataError, match=r"\['age', 'device'\]"):
        pre.transform(_frame(5).drop(columns=["age", "device"]))


def test_bad_column_lists() -> None:
    with pytest.raises(ConfigError, match="more than once"):
        Preprocessor(numeric=["age"], categorical=["age"]).fit(_frame(5))
    with pytest.raises(ConfigError, match="no feature columns"):
        Preprocessor(numeric=[], categorical=[]).fit(_frame(5))
    with pytest.raises(DataError, match="0 rows"):
        Preprocessor(numeric=["age"], categorical=[]).fit(_frame(5).iloc[:0])


def test_transform_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Preprocessor(numeric=["age"], categorical=[]).transform(_frame(5))


@pytest.mark.parametrize("binning", ["none", "quantile"])
def test_json_roundtrip_is_exact(binning: str) -> None:
    pre = _fitted(PreprocessParams(binning=binning, bins=7, clip=3.0))
    saved = json.loads(json.dumps(pre.to_dict()))
    loaded = Preprocessor.from_dict(saved)
    assert loaded.to_dict() == pre.to_dict()
    assert loaded.output_names_ == pre.output_names_
    other_rows = _frame(100, seed=99)
    np.testing.assert_array_equal(loaded.transform(other_rows), pre.transform(other_rows))
    np.testing.assert_array_equal(loaded.scales_, pre.scales_)


def test_from_dict_rejects_malformed_state() -> None:
    state = _fitted().to_dict()
    with pytest.raises(DataError, match="format"):
        Preprocessor.from_dict({**state, "format": "something-else"})
    with pytest.raises(DataError, match="malformed"):
        Preprocessor.from_dict({k: v for k, v in state.items() if k != "numeric_state"})


def test_fit_uses_only_the_rows_given() -> None:
    frame = _frame(200)
    pre = Preprocessor(numeric=["income", "age"], categorical=["channel", "device"])
    before = pre.fit(frame.iloc[:100]).to_dict()
    pre.transform(frame.iloc[100:])
    assert pre.to_dict() == before
    again = Preprocessor(numeric=["income", "age"], categorical=["channel", "device"])
    assert again.fit(frame.iloc[:100]).to_dict() == before
    assert before != again.fit(frame).to_dict()


def test_columns_with_one_value_on_every_training_row_are_named() -> None:
    frame = _frame()
    frame["const"] = 3.0
    frame["empty"] = np.nan
    frame["const_or_missing"] = np.where(np.arange(len(frame)) % 5 == 0, np.nan, 1.0)
    frame["one_level"] = "ios"
    pre = Preprocessor(
        numeric=["income", "age", "const", "empty", "const_or_missing"],
        categorical=["channel", "device", "one_level"],
    ).fit(frame)
    # Missing or not is information: const_or_missing is kept out of the list.
    assert pre.uninformative_columns_ == ["const", "empty", "one_level"]
    assert _fitted().uninformative_columns_ == []


def test_separating_columns_name_a_leak_in_either_direction_and_only_with_enough_rows() -> None:
    from fedlearn.preprocess import separating_columns

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100), np.ones(40)]
    x = np.c_[y * 2 + rng.normal(0, 0.01, 140), -y, rng.normal(size=140), y + rng.normal(0, 1, 140)]
    rows = np.arange(140)
    found = separating_columns(x, rows, y, ["leak", "flag_inverted", "noise", "strong"])
    assert [name for name, _ in found] == ["leak", "flag_inverted"]
    assert found[0][1] == 1.0 and found[1][1] == 0.0
    # 19 positives: a column could separate them by chance, so nothing is named
    few = np.r_[np.zeros(100), np.ones(19)]
    assert separating_columns(np.c_[few], np.arange(119), few, ["leak"]) == []
