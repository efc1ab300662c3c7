"""Reading one party's table: text-first reading, ID rules, numeric and label parsing, messages."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.data import (
    iter_table_chunks,
    load_features_frame,
    load_party_table,
    normalise_ids,
    read_table,
    write_table_atomic,
)
from fedlearn.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- read_table / write_table_atomic ------------------------------------------------------------


def test_csv_cells_are_text_and_ids_keep_leading_zeros(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "\ufeffid , x,y\n007,1.50,NA\n08,,b\n9,2\n")
    frame = read_table(path)
    assert list(frame.columns) == ["id", "x", "y"]  # BOM and white space around names gone
    assert frame["id"].tolist() == ["007", "08", "9"]
    assert frame["x"].tolist() == ["1.50", "", "2"]
    assert frame["y"].tolist() == ["NA", "b", ""]  # "NA" not turned into NaN; short row -> ""


def test_columns_are_returned_in_the_asked_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "id,x,y\n1,2,3\n")
    assert list(read_table(path, columns=["y", "id"]).iloc[0]) == ["3", "1"]
    with pytest.raises(DataError, match=r"no column 'z'; the columns are: id, x, y"):
        read_table(path, columns=["z"])


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet", "t.PQ"])
def test_write_then_read_round_trips_as_text(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"id": ["007", "x"], "v": [1.5, np.nan], "c": ["a", None]})
    path = tmp_path / name
    write_table_atomic(frame, path)
    back = read_table(path)
    assert back["id"].tolist() == ["007", "x"]
    assert float(back["v"][0]) == 1.5 and back["v"][1] in ("", "nan")
    assert back["c"].tolist() == ["a", ""]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as handle:
            assert handle.readline().startswith("id,")


def test_parquet_numbers_dictionaries_and_nulls_become_text(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([7, 8]),
            "f": pa.array([0.1, None]),
            "cat": pa.array(["x", None]).dictionary_encode(),
            "flag": pa.array([True, False]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    frame = read_table(tmp_path / "t.parquet", columns=["cat", "id"])
    assert list(frame.columns) == ["cat", "id"]
    assert frame["cat"].tolist() == ["x", ""] and frame["id"].tolist() == ["7", "8"]
    loaded = load_party_table(tmp_path / "t.parquet", id_column="id", categorical=["cat"])
    np.testing.assert_array_equal(loaded.features["f"], [0.1, np.nan])
    np.testing.assert_array_equal(loaded.features["flag"], [1.0, 0.0])
    assert list(loaded.ids) == ["7", "8"]


def test_nested_parquet_column_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a"], "l": [[1, 2]]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match="column 'l' has type list"):
        read_table(tmp_path / "t.parquet")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown file type"):
        read_table(tmp_path / "a.xlsx")
    with pytest.raises(DataError, match="no such CSV file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="empty; expected a header"):
        read_table(_write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="cannot read as PARQUET"):
        read_table(_write(tmp_path / "bad.parquet", "not parquet"))
    (tmp_path / "latin.csv").write_bytes("id,x\nZo\xeb,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(it holds the byte 0xeb\); save"):
        read_table(tmp_path / "latin.csv")
    # a header in another encoding (the header is read on its own first)
    (tmp_path / "latin_header.csv").write_bytes("id,r\xe9gion\n1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(it holds the byte 0xe9\)"):
        load_party_table(tmp_path / "latin_header.csv", id_column="id")
    with pytest.raises(DataError, match="column 'x' appears twice"):
        read_table(_write(tmp_path / "dup.csv", "id,x, x\n1,2,3\n"))
    with pytest.raises(DataError, match="header column 3 has no name"):
        read_table(_write(tmp_path / "trail.csv", "id,x,\n1,2,\n"))
    with pytest.raises(DataError, match="cannot read as CSV"):
        read_table(_write(tmp_path / "ragged.csv", "id,x\n1,2\n3,4,5,6\n"))


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_chunks_cover_the_file_and_number_rows(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"id": [f"{i:03d}" for i in range(10)], "v": [str(i) for i in range(10)]})
    write_table_atomic(frame, tmp_path / name)
    chunks = list(iter_table_chunks(tmp_path / name, chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [int(c.index[0]) for c in chunks] == [0, 4, 8]
    assert pd.concat(chunks)["id"].tolist() == frame["id"].tolist()
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_table_chunks(tmp_path / name, chunk_rows=0))


def test_chunk_errors_name_the_file_row(tmp_path: Path) -> None:
    rows = "".join(f"u{i},{'oops' if i == 6 else i}\n" for i in range(9))
    path = _write(tmp_path / "s.csv", "id,v\n" + rows)
    with pytest.raises(DataError, match=r"1 non-numeric value, first at row 7 \('oops'\)"):
        for chunk in iter_table_chunks(path, chunk_rows=4):
            load_features_frame(chunk, id_column="id", first_row=int(chunk.index[0]) + 1)


# ---- IDs -------------------------------------------------------------------------------------


def test_ids_are_stripped_case_kept_and_leading_zeros_kept() -> None:
    ids = normalise_ids(["  u1 ", "U1", "007", "7", "\tZoë\u3000", 12], column="id", source="s")
    assert ids.dtype == object
    assert list(ids) == ["u1", "U1", "007", "7", "Zoë", "12"]


def test_empty_and_missing_ids_name_the_row() -> None:
    with pytest.raises(
        DataError, match=r"s: ID column 'id' has 2 empty or missing IDs, first at row 2"
    ):
        normalise_ids(["a", "  ", None], column="id", source="s")
    with pytest.raises(DataError, match="at row 4"):
        normalise_ids(["a", np.nan], column="id", source="s", first_row=3)
    with pytest.raises(DataError, match=r"holds a float \(7.0\) at row 1"):
        normalise_ids([7.0], column="id", source="s")


def test_duplicate_ids_name_the_first_duplicate_and_both_rows() -> None:
    with pytest.raises(
        DataError,
        match=r"2 duplicate IDs; the first is 'b' at rows 2 and 4; each ID must appear once",
    ):
        normalise_ids(["a", "b", "c", " b", "a"], column="id", source="s")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.text(min_size=1, max_size=6), max_size=30))
def test_normalise_ids_agrees_with_a_plain_python_model(values: list[str]) -> None:
    stripped = [v.strip() for v in values]
    if any(not v for v in stripped) or len(set(stripped)) != len(stripped):
        with pytest.raises(DataError):
            normalise_ids(values, column="id", source="s")
    else:
        assert list(normalise_ids(values, column="id", source="s")) == stripped


# ---- party tables ------------------------------------------------------------------------------

TABLE = (
    "user_id,age,income,channel,y\n"
    " u01 ,31,1200.5,ads,1\n"
    "u02,,n/a,,0\n"
    "U01,NA,?,organic,true\n"
    "u03,null,3e3,NA,0.0\n"
)


def test_party_table_parses_numbers_categoricals_and_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", TABLE.replace("n/a", "None"))
    table = load_party_table(
        path, id_column="user_id", label_column="y", categorical=["channel"], require_label=True
    )
    assert list(table.ids) == ["u01", "u02", "U01", "u03"]
    assert table.numeric_columns == ["age", "income"]
    assert table.categorical_columns == ["channel"]
    assert list(table.features.columns) == ["age", "income", "channel"]
    assert table.features["age"].dtype == np.float64
    np.testing.assert_array_equal(table.features["age"], [31, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(table.features["income"], [1200.5, np.nan, np.nan, 3000.0])
    assert table.features["channel"].tolist() == ["ads", None, "organic", "NA"]
    assert table.labels is not None and table.labels.dtype == np.int8
    assert table.labels.tolist() == [1, 0, 1, 0]


def test_non_numeric_values_are_counted_and_the_first_is_shown(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", TABLE.replace("n/a", "unknown") + "u04,40,unknown,ads,1\n")
    with pytest.raises(
        DataError,
        match=r"a.csv: column 'income' has 2 non-numeric values, first at row 2 \('unknown'\)",
    ):
        load_party_table(path, id_column="user_id", label_column="y", categorical=["channel"])


def test_infinite_values_are_refused() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "v": ["1", "-inf"]})
    with pytest.raises(DataError, match=r"1 infinite value, first at row 2"):
        load_features_frame(frame, id_column="id")


def test_missing_columns_list_the_columns_and_the_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", TABLE)
    with pytest.raises(
        DataError,
        match=r"no column 'Income'; the columns are: user_id, age, income, channel, y\. "
        r"Did you mean 'income'\? \(set id_column",
    ):
        load_party_table(path, id_column="user_id", features=["age", "Income"])
    with pytest.raises(DataError, match="no column 'id'"):
        load_party_table(path, id_column="id")
    with pytest.raises(DataError, match="no column 'label'"):
        load_party_table(path, id_column="user_id", label_column="label", require_label=True)
    with pytest.raises(DataError, match="a label column is required"):
        load_party_table(path, id_column="user_id", require_label=True)
    with pytest.raises(DataError, match="categorical column 'region' is not among the features"):
        load_party_table(path, id_column="user_id", label_column="y", categorical=["region"])
    with pytest.raises(DataError, match="includes the label column 'y'"):
        load_party_table(path, id_column="user_id", label_column="y", features=["age", "y"])
    # A job that picks a categorical column as its label: the message names the conflict.
    with pytest.raises(
        DataError, match="'channel' is the label column and is also listed as categ"
    ):
        load_party_table(path, id_column="user_id", label_column="channel", categorical=["channel"])


def test_label_optional_when_not_required(tmp_path: Path) -> None:
    path = _write(tmp_path / "new.csv", "user_id,age\nu1,3\n")
    table = load_party_table(path, id_column="user_id", label_column="y")
    assert table.labels is None
    assert table.numeric_columns == ["age"]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            ["0", "2", "1", "3", "2"],
            r"must hold 0/1 \(or true/false\); found values '2', '3' \(first at row 2\)",
        ),
        (["1", "", "0", "NA", "0"], r"has 2 missing values, first at row 2"),
        (["yes", "0", "1", "0", "1"], r"found values 'yes' \(first at row 1\)"),
    ],
)
def test_bad_labels(labels: list[str], message: str) -> None:
    frame = pd.DataFrame({"id": list("abcde"), "y": labels})
    with pytest.raises(DataError, match=message):
        load_features_frame(frame, id_column="id", label_column="y", source="f")


def test_label_spellings_accepted() -> None:
    frame = pd.DataFrame({"id": list("abcdef"), "y": ["0", "1", "0.0", "1.0", "TRUE", "False"]})
    table = load_features_frame(frame, id_column="id", label_column="y")
    assert table.labels is not None and table.labels.tolist() == [0, 1, 0, 1, 1, 0]


def test_in_memory_frame_with_numbers_and_duplicate_ids() -> None:
    frame = pd.DataFrame({"id": [1, 2], "v": [0.5, np.nan], "y": [1, 0]})
    table = load_features_frame(frame, id_column="id", label_column="y")
    assert list(table.ids) == ["1", "2"]
    np.testing.assert_array_equal(table.features["v"], [0.5, np.nan])
    with pytest.raises(DataError, match="the first is 'a' at rows 11 and 12"):
        load_features_frame(
            pd.DataFrame({"id": ["a", "a "]}), id_column="id", source="chunk", first_row=11
        )


def test_header_only_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        load_party_table(_write(tmp_path / "h.csv", "id,x\n"), id_column="id")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id;y;x\n1;0;2\n", r"no column 'id': the header is one column separated by ';'"),
        ("id\ty\tx\n1\t0\t2\n", r"separated by a tab"),
    ],
)
def test_a_file_with_another_separator_says_so(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "s.csv", text)
    with pytest.raises(DataError, match=expected):
        load_party_table(path, id_column="id", label_column="y")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", "it looks like a date"),
        ("2024-01-31 12:30:00", "it looks like a date"),
        ("31/01/2024", "it looks like a date"),
        ("12.5%", "write percentages as plain numbers"),
        ("1,234.5", "remove the thousands separators"),
        ("many", "fix them, or list the column as categorical"),
    ],
)
def test_a_non_numeric_value_gets_the_fix_its_kind_needs(
    tmp_path: Path, value: str, expected: str
) -> None:
    path = _write(tmp_path / "s.csv", f'id,x\nu1,1\nu2,"{value}"\n')
    with pytest.raises(DataError, match=rf"first at row 2 .*; {expected}"):
        load_party_table(path, id_column="id")


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["123.0", "45.0"], "numbers written as decimals (e.g. '123.0')"),
        (["7", "1.2345678901234568e+18"], "scientific notation (e.g. '1.2345678901234568e+18')"),
        (["007", "12"], "digits, 1 of 2 with leading zeros"),
        (["1", "2"], "whole numbers"),
        (["ab" * 32, "cd" * 32], "hex digests of 256 bits"),
        (["User@x.com", "b@y.org"], "e-mail addresses in mixed case"),
        (["u1", "v2"], "text IDs in lower case"),
        (["Jose\u0301-12", "ana-3"], "1 ID not in Unicode NFC form"),
    ],
)
def test_a_party_describes_its_own_ids_when_none_match(ids: list[str], expected: str) -> None:
    from fedlearn.data import describe_ids

    assert expected in describe_ids(np.array(ids, dtype=object))


def test_a_dataset_s_columns_are_checked_from_its_header(tmp_path: Path) -> None:
    from fedlearn.data import dataset_problems

    path = _write(tmp_path / "b.csv", "email_hash,b0,segment\nx,1,A\n")
    assert (
        dataset_problems(
            path, id_column="email_hash", label_column=None, features=None, categorical=["segment"]
        )
        == []
    )
    problems = dataset_problems(
        path, id_column="email", label_column="y", features=["b0", "bx"], categorical=["segmnt"]
    )
    assert problems == [
        "id_column 'email' is not in b.csv's header (did you mean 'email_hash'?)",
        "label_column 'y' is not in b.csv's header",
        "features 'bx' is not in b.csv's header",
        "categorical 'segmnt' is not in b.csv's header (did you mean 'segment'?)",
        "categorical ['segmnt'] are not among the listed features",
    ]
    missing = dataset_problems(
        tmp_path / "later.csv", id_column="id", label_column=None, features=None, categorical=[]
    )
    assert missing == [
        f"{tmp_path / 'later.csv'} does not exist (yet): sessions on it will fail until it does"
    ]


def test_ids_in_another_unicode_form_are_named_even_when_others_match(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A partner writing the same IDs in NFC matches none of these, silently when the rest match:
    the node logs it when it loads the file, the CLI says it in training notes and score warnings."""
    import logging

    from fedlearn.config import DatasetSpec
    from fedlearn.data import unicode_form_note
    from fedlearn.tables import TableCache

    assert unicode_form_note(["José-12", "ana-3", "u1"]) is None  # NFC (composed), ASCII
    note = unicode_form_note(["Jose\u0301-12", "Zoe\u0308-4", "u1"], "A's IDs")
    assert note is not None and note.startswith("A's IDs: 2 IDs not in Unicode NFC form")
    path = tmp_path / "b.csv"
    path.write_text("id,x\nJose\u0301-12,1\nana-3,2\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="fedlearn.tables"):
        TableCache("B's").get(DatasetSpec("users", path, "id", None, None, []))
    assert "B's dataset users: 1 ID not in Unicode NFC form" in caplog.text
