"""Parameter constraints, declared once per parameter type and checked by one function.

In the style of scikit-learn's ``_parameter_constraints``: each parameter type (``TrainParams``,
``PreprocessParams``, ``PeerPolicy``, the job's own settings) carries a class-level table
``{name: Interval(...) | Options(...)}``. The job parser, B's policy check and the preprocessing all
read the same table, so a range is written in one place and the three cannot disagree.

``constraint.problem(value)`` says what is wrong with one value, in the words config errors use
("must be at most 16, got 32"); ``violations(table, values)`` lists every problem of a set of values;
callers wrap them in their own error type (``ConfigError`` for files, ``PolicyViolation`` at B).
``Section.get_constrained`` (fedlearn.config) reads one key of a TOML table against its constraint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """A number in a range. ``kind`` int takes whole numbers only; float takes any finite real.

    ``left``/``right`` are the bounds (None: unbounded); ``closed`` says which bounds are included;
    ``step``, when set, is a number the value must be a multiple of (key sizes).
    """

    kind: type[int] | type[float]
    left: float | None
    right: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"
    step: int | None = None

    def problem(self, value: object) -> str | None:
        if self.kind is int and not _is_whole(value):
            return f"expected a whole number, got {value!r}"
        if not _is_real(value):
            return f"expected a number, got {value!r}"
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number) or (self.kind is float and math.isinf(number)):
            return f"expected a finite number, got {value!r}"
        if self.left is not None:
            if self.closed in ("both", "left") and number < self.left:
                return f"must be at least {self.left}, got {value}"
            if self.closed in ("right", "neither") and number <= self.left:
                return f"must be more than {self.left}, got {value}"
        if self.right is not None:
            if self.closed in ("both", "right") and number > self.right:
                return f"must be at most {self.right}, got {value}"
            if self.closed in ("left", "neither") and number >= self.right:
                return f"must be less than {self.right}, got {value}"
        if self.step is not None and number % self.step:
            return f"must be a multiple of {self.step}, got {value}"
        return None

    def convert(self, value: Any) -> Any:
        """The value as its kind (a whole number given for a float becomes a float)."""
        return float(value) if self.kind is float else int(value)

    def __str__(self) -> str:
        left = "-inf" if self.left is None else f"{self.left}"
        right = "inf" if self.right is None else f"{self.right}"
        opening = "[" if self.closed in ("both", "left") and self.left is not None else "("
        closing = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        noun = "a whole number" if self.kind is int else "a number"
        return f"{noun} in {opening}{left}, {right}{closing}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str) or value not in self.values:
            return f"expected one of {', '.join(self.values)}, got {value!r}"
        return None

    def convert(self, value: Any) -> Any:
        return value

    def __str__(self) -> str:
        return f"one of {', '.join(self.values)}"


Constraint = Interval | Options

#: A parameter type's table: parameter name -> its constraint.
Constraints = Mapping[str, Constraint]


def violations(constraints: Constraints, values: Mapping[str, Any]) -> list[str]:
    """Every problem of ``values`` against ``constraints``, as "name: problem", in table order.

    Names in ``values`` that the table does not list are not checked here (callers refuse unknown
    keys themselves); names the table lists but ``values`` lacks are skipped.
    """
    found = []
    for name, constraint in constraints.items():
        if name in values:
            issue = constraint.problem(values[name])
            if issue is not None:
                found.append(f"{name}: {issue}")
    return found
