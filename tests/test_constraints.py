"""One table of constraints per parameter type: the job parser, B's policy and the preprocessing agree."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import pytest

from fedlearn.constraints import Interval, Options, violations
from fedlearn.errors import ConfigError, PolicyViolation
from fedlearn.job import parse_job
from fedlearn.preprocess import Preprocessor, PreprocessParams
from fedlearn.protocol import messages as m
from fedlearn.protocol.policy import PeerPolicy, check_train_job

#: Where each TrainParams / PreprocessParams key lives in a job file.
SECTION = {
    "validation_fraction": "data",
    "seed": "data",
    "epochs": "train",
    "batch_size": "train",
    "learning_rate": "train",
    "optimizer": "train",
    "l2": "train",
    "l1": "train",
    "key_bits": "crypto",
    "score_frac_bits": "crypto",
    "engine": "crypto",
    **{key: "preprocess" for key in PreprocessParams._parameter_constraints},
}
CONSTRAINTS = {**m.TrainParams._parameter_constraints, **PreprocessParams._parameter_constraints}
#: B's policy limits out of the way, so only the tables decide.
OPEN_POLICY = PeerPolicy(min_key_bits=256, min_batch_size=1, max_epochs=10_000)


def _outside(constraint: Interval | Options) -> list[object]:
    """Values just outside ``constraint`` (and one of the wrong type)."""
    if isinstance(constraint, Options):
        return ["no-such-option", 3]
    values: list[object] = ["4"]
    step = 1 if constraint.kind is int else 1e-6
    if constraint.left is not None:
        values.append(
            constraint.left - step if constraint.closed in ("both", "left") else constraint.left
        )
    if constraint.right is not None:
        values.append(
            constraint.right + step if constraint.closed in ("both", "right") else constraint.right
        )
    if constraint.kind is int:
        values.append(2.5)
    return values


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _cases() -> list[tuple[str, object]]:
    return [(key, value) for key, c in CONSTRAINTS.items() for value in _outside(c)]


@pytest.mark.parametrize(("key", "value"), _cases())
def test_job_parser_and_peer_policy_refuse_the_same_values(key: str, value: Any) -> None:
    section = SECTION[key]
    text = '[data]\ndataset = "d"\n'
    if section == "data":
        text += f"{key} = {_toml(value)}\n"
    else:
        text += f"[{section}]\n{key} = {_toml(value)}\n"
    with pytest.raises(ConfigError, match=rf"\[{section}\] {key}: "):
        parse_job(text)
    if isinstance(value, str) != isinstance(CONSTRAINTS[key], Options):
        return  # protobuf fixes each field's type on the wire: B never sees a wrong-typed value
    params = parse_job('[data]\ndataset = "d"\n').params
    if key in PreprocessParams._parameter_constraints:
        params = dataclasses.replace(
            params, preprocess=dataclasses.replace(params.preprocess, **{key: value})
        )
    else:
        params = dataclasses.replace(params, **{key: value})
    with pytest.raises(PolicyViolation, match=rf"{key}: "):
        check_train_job("party-b", OPEN_POLICY, params)


def test_the_bounds_themselves_are_accepted_by_both() -> None:
    """feature_bits 16 and validation_fraction 0.9 (the limits the two used to disagree on)."""
    text = '[data]\ndataset = "d"\nvalidation_fraction = 0.9\n[preprocess]\nfeature_bits = 16\n'
    params = parse_job(text).params
    assert params.preprocess.feature_bits == 16
    check_train_job("party-b", OPEN_POLICY, params)


def test_preprocessing_refuses_what_the_table_refuses() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match=r"feature_bits: must be at most 16, got 32"):
        Preprocessor(numeric=["x"], categorical=[], config=PreprocessParams(feature_bits=32)).fit(
            frame
        )


def test_policy_lists_every_reason() -> None:
    params = dataclasses.replace(m.TrainParams(), epochs=0, score_frac_bits=40)
    with pytest.raises(PolicyViolation) as caught:
        check_train_job("party-b", OPEN_POLICY, params)
    assert "epochs: must be at least 1" in str(caught.value)
    assert "score_frac_bits: must be at most 24" in str(caught.value)


@pytest.mark.parametrize(
    ("interval", "value", "problem"),
    [
        (Interval(int, 1, 3), 0, "must be at least 1, got 0"),
        (Interval(int, 1, 3), 4, "must be at most 3, got 4"),
        (Interval(int, 1, 3), True, "expected a whole number, got True"),
        (Interval(float, 0.0, 1.0, closed="left"), 1.0, "must be less than 1.0, got 1.0"),
        (Interval(float, 0.0, None, closed="neither"), 0.0, "must be more than 0.0, got 0.0"),
        (Interval(float, None, None), math.inf, "expected a finite number, got inf"),
        (Interval(float, None, None), math.nan, "expected a finite number, got nan"),
        (Interval(float, 0.0, 1.0), "0.5", "expected a number, got '0.5'"),
    ],
)
def test_interval_problems(interval: Interval, value: object, problem: str) -> None:
    assert interval.problem(value) == problem


def test_interval_and_options_accept_what_they_describe() -> None:
    assert Interval(int, 1, 3).problem(3) is None
    assert Interval(float, 0.0, 1.0, closed="left").problem(0.0) is None
    assert Interval(float, 0.0, 1.0).convert(1) == 1.0
    assert str(Interval(float, 0.0, 1.0, closed="left")) == "a number in [0.0, 1.0)"
    assert Options(("a", "b")).problem("b") is None
    assert violations({"k": Options(("a",))}, {"k": "z", "other": 1}) == [
        "k: expected one of a, got 'z'"
    ]


def test_a_refusal_of_the_batch_size_alone_names_the_size_that_passes() -> None:
    params = parse_job('[data]\ndataset = "d"\n').params  # batch_size "auto": 1024
    strict = PeerPolicy(min_batch_size=2048)
    with pytest.raises(PolicyViolation, match="batch_size 1024 is below the minimum 2048") as only:
        check_train_job("party-b", strict, params)
    assert only.value.min_batch_size == 2048
    # With another reason too, a larger batch alone would not pass: no size is named.
    strict = PeerPolicy(min_batch_size=2048, min_key_bits=4096)
    with pytest.raises(PolicyViolation, match="key_bits 2048 is below") as several:
        check_train_job("party-b", strict, params)
    assert several.value.min_batch_size == 0
