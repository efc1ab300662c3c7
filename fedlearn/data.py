"""Reading one party's table (CSV or Parquet) into IDs, features and labels, with honest errors.

Every party reads only its own files. Cells are read as text first, so that IDs such as ``"007"``
survive; numeric feature columns are then parsed, and each failure is reported with the file, the
column, how many values are wrong, and the first offending row and value.

Rows in messages are **1-based data rows**: the first row after the header is row 1 (in a
spreadsheet that is line 2). Column names have surrounding white space stripped.

Missing values:

* IDs: never allowed (an empty or missing ID is an error).
* Labels: never allowed in a label column that is read (every training row needs a label).
* Numeric features: empty, ``NA``, ``nan``, ``null``, ``None`` and ``?`` (any case) become NaN;
  imputation happens later, in preprocessing. ``true``/``false`` are read as 1/0.
* Categorical features: only an empty cell is missing (None). ``"NA"`` stays a category, since it
  may well be one (North America).
"""

from __future__ import annotations

import difflib
import gzip
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedlearn.atomic import atomic_file, output_mode
from fedlearn.errors import DataError, counted

NUMERIC_MISSING = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "?"})
"""Cell texts (compared in lower case, after stripping) that mean "missing" in a numeric column."""

_LABEL_TEXT = {"1": 1, "1.0": 1, "true": 1, "0": 0, "0.0": 0, "false": 0}
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_READ_ERRORS = (
    EOFError,
    zlib.error,
    OSError,
    ValueError,
    UnicodeDecodeError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    pa.ArrowException,
)


@dataclass
class PartyTable:
    """One party's rows: IDs, feature columns and (on the label party) labels, all in file order."""

    ids: np.ndarray
    """Shape (n,), object array of str: normalised (stripped, case kept) and unique."""
    features: pd.DataFrame
    """n rows, feature columns only: numeric ones float64 (NaN = missing), categorical ones object
    (str, None = missing). Index 0..n-1."""
    numeric_columns: list[str]
    categorical_columns: list[str]
    labels: np.ndarray | None
    """Shape (n,), int8 0/1; None when the table has no label column."""


# ---- files -------------------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(
        f"{path}: unknown file type; name it .csv, .csv.gz, .parquet or .pq (CSV or Parquet)"
    )


def _existing(path: Path | str) -> Path:
    path = Path(path)
    fmt = _format_of(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {fmt.upper()} file (check the path in the config)")
    return path


def _unreadable(path: Path, fmt: str, exc: BaseException) -> DataError:
    """The DataError for a file that cannot be read to its end; a cut-off download and a file in
    another encoding than UTF-8 say so."""
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return DataError(
            f"{path}: the compressed file is damaged or cut off ({exc or type(exc).__name__}); "
            "copy or download it again"
        )
    if isinstance(exc, UnicodeDecodeError):
        return DataError(
            f"{path}: not UTF-8 text (it holds the byte 0x{exc.object[exc.start]:02x}); "
            "save the file as UTF-8 (in Excel: 'CSV UTF-8'; or iconv -f latin1 -t utf-8)"
        )
    return DataError(f"{path}: cannot read as {fmt.upper()}: {exc}")


def _header(path: Path, fmt: str) -> list[str]:
    """The file's column names as written (not stripped)."""
    try:
        if fmt == "csv":
            row = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
            return [str(name) for name in row.iloc[0].tolist()] if len(row) else []
        return list(pq.read_schema(path).names)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty; expected a header row") from exc
    except _READ_ERRORS as exc:
        raise _unreadable(path, fmt, exc) from exc


def _checked_names(path: Path, raw_names: list[str]) -> list[str]:
    names = [name.strip() for name in raw_names]
    if not names:
        raise DataError(f"{path}: the file is empty; expected a header row")
    for position, name in enumerate(names, start=1):
        if not name:
            raise DataError(
                f"{path}: header column {position} has no name; name every column "
                "(or remove the trailing separator)"
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: column '{name}' appears twice in the header; rename one")
        seen.add(name)
    return names


def dataset_problems(
    path: Path,
    *,
    id_column: str,
    label_column: str | None,
    features: Sequence[str] | None,
    categorical: Sequence[str],
) -> list[str]:
    """What is wrong with a dataset's columns as a node config names them, read from the file's
    header only (cheap: a node checks every dataset when it starts). Empty when nothing is."""
    path = Path(path)
    if not path.is_file():
        return [f"{path} does not exist (yet): sessions on it will fail until it does"]
    try:
        names = _checked_names(path, _header(path, _format_of(path)))
    except DataError as exc:
        return [str(exc)]
    problems = []
    named = {"id_column": [id_column], "label_column": [label_column] if label_column else []}
    named["features"] = list(features or [])
    named["categorical"] = list(categorical)
    for key, columns in named.items():
        for column in columns:
            if column not in names:
                close = difflib.get_close_matches(column, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"{key} '{column}' is not in {path.name}'s header{hint}")
    if features is not None:
        outside = [c for c in categorical if c not in features]
        if outside:
            problems.append(f"categorical {outside} are not among the listed features")
    return problems


def missing_column_error(source: str, column: str, available: Sequence[str], fix: str) -> DataError:
    """A ``DataError`` for a column that is not there, listing the columns that are."""
    shown = ", ".join(available[:30])
    if len(available) > 30:
        shown += f", ... ({len(available)} in all)"
    close = difflib.get_close_matches(column, list(available), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    if len(available) == 1:
        separator = next((sep for sep in (";", "\t", "|") if sep in available[0]), None)
        if separator is not None:
            shown_sep = "a tab" if separator == "\t" else f"'{separator}'"
            return DataError(
                f"{source}: no column '{column}': the header is one column separated by "
                f"{shown_sep} ({available[0][:80]!r}); the file is read as comma-separated: "
                "save it with commas (or as Parquet)"
            )
    return DataError(f"{source}: no column '{column}'; the columns are: {shown}.{hint} ({fix})")


def _select(path: Path, names: list[str], columns: list[str] | None) -> list[int] | None:
    if columns is None:
        return None
    for column in columns:
        if column not in names:
            raise missing_column_error(str(path), column, names, "check the column list")
    return [names.index(column) for column in columns]


def _arrow_to_text(table: pa.Table, names: list[str], path: Path) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name, column in zip(names, table.columns, strict=True):
        try:
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if not pa.types.is_string(column.type):
                column = pc.cast(column, pa.string())
        except pa.ArrowException as exc:
            raise DataError(
                f"{path}: column '{name}' has type {column.type}, which cannot be read as a table "
                "column; store plain numbers or text"
            ) from exc
        columns[name] = column.fill_null("").to_pandas().astype(str)
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def read_table(path: Path | str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file, cells as text.

    Returns a frame with one text column per file column (or per name in ``columns``, in that
    order); column names stripped of surrounding white space; missing cells as ``""``. Parquet
    numbers come back as their text (``1.5`` -> ``"1.5"``).

    Raises ``DataError`` for an unknown extension, a missing, empty or unreadable file, a header
    with an empty or repeated column name, or a name in ``columns`` that the file lacks.
    """
    path = _existing(path)
    fmt = _format_of(path)
    names = _checked_names(path, _header(path, fmt))
    positions = _select(path, names, columns)
    try:
        if fmt == "csv":
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, usecols=positions, encoding="utf-8"
            )
            # usecols keeps the file's column order; name them, then put them in the asked order.
            frame.columns = (
                [names[i] for i in sorted(positions)] if positions is not None else names
            )
            if columns is not None:
                frame = frame[columns]
            return frame.fillna("")
        wanted = (
            [pq.read_schema(path).names[i] for i in positions] if positions is not None else None
        )
        table = pq.read_table(path, columns=wanted)
        return _arrow_to_text(table, columns if columns is not None else names, path)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(path, fmt, exc) from exc


def iter_table_chunks(path: Path | str, *, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Read a table in chunks of at most ``chunk_rows`` rows, cells as text (as ``read_table``).

    Each chunk's index continues the row count (0-based), so ``chunk.index[0] + 1`` is the 1-based
    data row of its first row: pass it as ``first_row`` to ``load_features_frame``. CSV is read with
    pandas' ``chunksize``, Parquet with pyarrow's ``iter_batches``. Raises ``DataError`` as
    ``read_table`` does, also for a problem found part-way through the file.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1; got {chunk_rows}")
    path = _existing(path)
    fmt = _format_of(path)
    names = _checked_names(path, _header(path, fmt))
    try:
        if fmt == "csv":
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, chunksize=chunk_rows, encoding="utf-8"
            )
            with reader:
                for chunk in reader:
                    chunk.columns = names
                    yield chunk.fillna("")
            return
        start = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            chunk = _arrow_to_text(pa.Table.from_batches([batch]), names, path)
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(path, fmt, exc) from exc


def write_table_atomic(frame: pd.DataFrame, path: Path | str) -> None:
    """Write ``frame`` (without its index) as CSV or Parquet, chosen by the extension, atomically.

    The data goes to a temporary file in the same directory, is flushed to disk (fsync) and then
    renamed over ``path``, so a reader sees the old file or the whole new one, never a part.
    ``.csv.gz`` is gzip-compressed. Raises ``DataError`` for an unknown extension. Temporary files
    that an earlier, killed write to the same ``path`` left behind are removed first
    (``atomic.sweep_temp_files``); this one is removed on every error path.
    """
    path = Path(path)
    fmt = _format_of(path)
    with atomic_file(path, mode=output_mode(path)) as temp:
        if fmt == "csv":
            compression = "gzip" if path.name.lower().endswith(".gz") else None
            frame.to_csv(temp, index=False, compression=compression)
        else:
            frame.to_parquet(temp, index=False)


def write_table_chunks_atomic(chunks: Iterable[pd.DataFrame], path: Path | str) -> int:
    """Write consecutive frames (same columns and dtypes) as one CSV or Parquet file, atomically.

    As ``write_table_atomic``, but one chunk at a time: CSV gets the header once and each chunk
    appended (gzip-compressed for ``.csv.gz``); Parquet gets one row group per chunk. Only one chunk
    is in memory at a time; nothing appears at ``path`` until the last chunk is written (an error
    in any chunk leaves ``path`` as it was). Returns the rows written. Raises ``DataError`` for an
    unknown extension or when ``chunks`` is empty.
    """
    path = Path(path)
    fmt = _format_of(path)
    rows, written = 0, 0
    with atomic_file(path, mode=output_mode(path)) as temp:
        if fmt == "csv":
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(temp, "wt", encoding="utf-8", newline="") as out:
                for chunk in chunks:
                    chunk.to_csv(out, index=False, header=written == 0)
                    rows, written = rows + len(chunk), written + 1
        else:
            writer: pq.ParquetWriter | None = None
            try:
                for chunk in chunks:
                    batch = pa.Table.from_pandas(chunk, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(temp, batch.schema)
                    writer.write_table(batch)
                    rows, written = rows + len(chunk), written + 1
            finally:
                if writer is not None:
                    writer.close()
        if written == 0:
            raise DataError(f"{path}: nothing to write (no chunks)")
    return rows


# ---- values ------------------------------------------------------------------------------------


def _prefix(source: str) -> str:
    return f"{source}: " if source else ""


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


_DECIMAL_ID = re.compile(r"-?\d+\.0+")
_SCIENTIFIC_ID = re.compile(r"-?\d+(\.\d+)?[eE][+-]?\d+")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")


def describe_ids(
    ids: Sequence[str] | np.ndarray, whose: str = "the IDs here", sample: int = 10_000
) -> str:
    """How this party's IDs are written, for the message when none match the partner's.

    Each party sees only its own IDs, so this is the one hint it can give: the forms that most
    often differ between two exports of the same IDs (decimal numbers, leading zeros, case, hex
    digests), with one example. ``whose`` starts the sentence. Looks at up to ``sample`` IDs.
    """
    if not len(ids):
        return f"{whose}: none"
    seen = [str(i) for i in ids[:sample]]
    example = f"e.g. {seen[0]!r}"
    if all(_DECIMAL_ID.fullmatch(i) for i in seen):
        return (
            f"{whose} are numbers written as decimals ({example}): an export of an integer "
            "column with missing values does this; write them as whole numbers if the partner's "
            "are"
        )
    scientific = next((i for i in seen if _SCIENTIFIC_ID.fullmatch(i)), None)
    if scientific is not None:
        return (
            f"{whose} include numbers in scientific notation (e.g. {scientific!r}): a float export of "
            "long numeric IDs loses their last digits; write the IDs as text"
        )
    if all(i.isdigit() for i in seen):
        zeros = sum(1 for i in seen if len(i) > 1 and i.startswith("0"))
        if zeros:
            return (
                f"{whose} are digits, {zeros} of {len(seen)} with leading zeros ({example}); "
                "'007' and '7' differ"
            )
        return f"{whose} are whole numbers ({example})"
    if all(_HEX_DIGEST.fullmatch(i) for i in seen):
        upper = any(c.isupper() for i in seen for c in i)
        return (
            f"{whose} are hex digests of {len(seen[0]) * 4} bits ({example}, "
            f"{'upper' if upper else 'lower'} case): both parties must hash the same normalised "
            "text with the same function, and write the digest in the same case"
        )
    forms = unicode_form_note(seen, whose)
    if forms is not None:
        return forms
    upper = any(any(c.isupper() for c in i) for i in seen)
    lower = any(any(c.islower() for c in i) for i in seen)
    case = "mixed case" if upper and lower else "upper case" if upper else "lower case"
    kind = "e-mail addresses" if all("@" in i for i in seen) else "text IDs"
    return f"{whose} are {kind} in {case} ({example}); case is kept: 'U1' and 'u1' differ"


def unicode_form_note(ids: Sequence[str] | np.ndarray, whose: str = "the IDs here") -> str | None:
    """A warning when some IDs are not in Unicode NFC form (decomposed accents: 'Jose' + U+0301),
    else None. IDs are compared as text, byte for byte: a partner that writes the same IDs in
    NFC (most systems do) will not match these, and nothing else says so when others match."""
    odd = [
        str(i) for i in ids if not str(i).isascii() and not unicodedata.is_normalized("NFC", str(i))
    ]
    if not odd:
        return None
    return (
        f"{whose}: {counted(len(odd), 'ID')} not in Unicode NFC form (e.g. {odd[0]!r}, "
        "accents written as separate characters); the partner's copies of them match only if "
        "written the same way: normalise the IDs to NFC (unicodedata.normalize('NFC', id)) on "
        "both sides"
    )


def normalise_ids(
    values: Sequence[Any], *, column: str, source: str, first_row: int = 1
) -> np.ndarray:
    """IDs as an object array of str: surrounding white space stripped, case kept, unique.

    ``values``: n IDs in row order (text; Python or numpy integers are taken as their decimal
    text). ``first_row``: the 1-based data row of ``values[0]``, for messages.

    Raises ``DataError`` naming the row of the first empty or missing ID, and for duplicates the
    first ID that repeats and both its rows. Leading zeros are kept: ``"007"`` and ``"7"`` differ.
    """
    out = np.empty(len(values), dtype=object)
    for position, value in enumerate(values):
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            text = str(value)
        elif _is_missing(value):
            text = ""
        else:
            raise DataError(
                f"{_prefix(source)}ID column '{column}' holds a {type(value).__name__} "
                f"({value!r}) at row {first_row + position}; IDs must be text (read the table "
                "with fedlearn.data.read_table so IDs such as '007' stay text)"
            )
        if not text:
            empty = sum(
                1 for v in values if _is_missing(v) or (isinstance(v, str) and not v.strip())
            )
            raise DataError(
                f"{_prefix(source)}ID column '{column}' has {counted(empty, 'empty or missing ID')}, first at "
                f"row {first_row + position}; every row needs an ID"
            )
        out[position] = text
    duplicated = pd.Series(out, dtype=object).duplicated(keep="first").to_numpy()
    if duplicated.any():
        second = int(np.argmax(duplicated))
        first = int(np.flatnonzero(out[:second] == out[second])[0])
        raise DataError(
            f"{_prefix(source)}ID column '{column}' has {counted(int(duplicated.sum()), 'duplicate ID')}; the "
            f"first is '{out[second]}' at rows {first_row + first} and {first_row + second}; "
            "each ID must appear once"
        )
    return out


def _text(series: pd.Series) -> pd.Series:
    """Stripped text of each cell; missing cells as ""."""
    missing = series.isna().to_numpy()
    return series.astype(object).where(~missing, "").astype(str).str.strip().fillna("")


def _examples(values: pd.Series, limit: int = 5) -> str:
    distinct = list(dict.fromkeys(values.tolist()))
    shown = ", ".join(repr(v) for v in distinct[:limit])
    return shown + (", ..." if len(distinct) > limit else "")


_DATE = re.compile(
    r"\s*\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*$|"
    r"\s*\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\s*$"
)
_THOUSANDS = re.compile(r"\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")


def _numeric_fix(value: str, trained: bool = False) -> str:
    """What to do about a cell that is not a number, for the values new users' files hold.

    ``trained``: the column belongs to a trained model (scoring), which takes it as numbers
    whatever the config now says."""
    if _DATE.match(value):
        return (
            "it looks like a date: a date is not a feature; turn it into a number (e.g. days "
            "since sign-up) or leave the column out of the features"
        )
    if value.strip().endswith("%"):
        return "write percentages as plain numbers (12.5, not 12.5%)"
    if _THOUSANDS.match(value):
        return "remove the thousands separators (1234.5, not 1,234.5)"
    if trained:
        return (
            "the model was trained with this column as numbers: fix the values (empty for "
            "unknown), or train a model that lists the column as categorical"
        )
    return "fix them, or list the column as categorical in the config"


def parse_numeric(
    series: pd.Series, *, column: str, source: str, first_row: int = 1, trained: bool = False
) -> np.ndarray:
    """A numeric feature column as float64, NaN for missing cells (see ``NUMERIC_MISSING``).

    ``true`` / ``false`` (any case) are read as 1 and 0, so boolean columns are numeric.
    ``trained``: the column is a trained model's (scoring), for the message's advice.

    Raises ``DataError`` with the number of non-numeric (or infinite) values and the first row.
    """
    text = _text(series)
    lower = text.str.lower()
    missing = lower.isin(NUMERIC_MISSING).to_numpy()
    # Booleans (Parquet's true/false, pandas' True/False) are numbers 1 and 0.
    text = text.where(lower != "true", "1").where(lower != "false", "0")
    cells = pa.array(text.to_numpy(dtype=object), type=pa.string(), mask=missing)
    try:  # fast path: Arrow's strict parser; missing cells are null, so NaN
        numbers = pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.zeros(len(numbers), dtype=bool)
    except pa.ArrowInvalid:  # some cell is not a number: find which, for the message
        numbers = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(numbers) & ~missing
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{_prefix(source)}column '{column}' has {counted(int(bad.sum()), 'non-numeric value')}, first at "
            f"row {first_row + first} ({text.iloc[first]!r}); {_numeric_fix(text.iloc[first], trained)}"
        )
    infinite = np.isinf(numbers)
    if infinite.any():
        first = int(np.argmax(infinite))
        raise DataError(
            f"{_prefix(source)}column '{column}' has {counted(int(infinite.sum()), 'infinite value')}, first "
            f"at row {first_row + first} ({text.iloc[first]!r}); leave the cell empty if unknown"
        )
    return numbers


def parse_labels(series: pd.Series, *, column: str, source: str, first_row: int = 1) -> np.ndarray:
    """A label column as int8 0/1. Accepts 0/1, 0.0/1.0 and true/false (any case).

    Raises ``DataError`` for missing labels and for any other value (naming up to five of them and
    the first row).
    """
    text = _text(series).str.lower()
    missing = text.isin(NUMERIC_MISSING).to_numpy()
    if missing.any():
        first = int(np.argmax(missing))
        raise DataError(
            f"{_prefix(source)}label column '{column}' has {counted(int(missing.sum()), 'missing value')}, "
            f"first at row {first_row + first}; every training row needs a 0/1 label"
        )
    mapped = text.map(_LABEL_TEXT)
    bad = mapped.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{_prefix(source)}label column '{column}' must hold 0/1 (or true/false); found values "
            f"{_examples(_text(series)[bad])} (first at row {first_row + first})"
        )
    return mapped.to_numpy(dtype=np.int8)


def _categorical(series: pd.Series) -> pd.Series:
    text = _text(series)
    return text.astype(object).where(text != "", None).reset_index(drop=True)


# ---- tables ------------------------------------------------------------------------------------


def _feature_columns(
    available: list[str],
    *,
    id_column: str,
    label_column: str | None,
    features: list[str] | None,
    categorical: Sequence[str],
    source: str,
) -> list[str]:
    fix = "set id_column / label_column / features in the config"
    if id_column not in available:
        raise missing_column_error(source, id_column, available, fix)
    reserved = {id_column, label_column}
    if features is None:
        chosen = [name for name in available if name not in reserved]
    else:
        chosen = list(features)
        for name in chosen:
            if name not in available:
                raise missing_column_error(source, name, available, fix)
            if name in reserved:
                kind = "ID" if name == id_column else "label"
                raise DataError(f"{source}: feature list includes the {kind} column '{name}'")
        repeated = [name for name in dict.fromkeys(chosen) if chosen.count(name) > 1]
        if repeated:
            raise DataError(f"{source}: feature list names '{repeated[0]}' more than once")
    for name in categorical:
        if name in reserved:
            kind = "ID" if name == id_column else "label"
            raise DataError(
                f"{source}: column '{name}' is the {kind} column and is also listed as "
                "categorical; a column is either the label, the ID or a feature: fix "
                "label_column or the categorical list"
            )
        if name not in chosen:
            raise DataError(
                f"{source}: categorical column '{name}' is not among the features "
                f"({', '.join(chosen[:30])}); fix the categorical list in the config"
            )
    return chosen


def load_features_frame(
    frame: pd.DataFrame,
    *,
    id_column: str,
    label_column: str | None = None,
    features: list[str] | None = None,
    categorical: Sequence[str] = (),
    source: str = "",
    require_label: bool = False,
    first_row: int = 1,
    trained: bool = False,
) -> PartyTable:
    """Check and parse an in-memory frame (e.g. a scoring chunk) into a ``PartyTable``.

    ``trained``: the columns are a trained model's (scoring): a message's advice says so.

    ``frame``: one column per file column, cells as text (as ``read_table`` returns them; numbers
    and missing values in other frames are taken as their text / as missing). ``features=None``
    means every column but the ID and label columns. ``label_column`` is read when the frame has
    it; with ``require_label`` it must be there. ``source`` names the data in messages;
    ``first_row`` is the 1-based data row of the frame's first row.

    Raises ``DataError`` naming the problem and the fix (see the module docstring for the rules).
    """
    source = source or "data"
    available = [str(name) for name in frame.columns]
    if require_label:
        if label_column is None:
            raise DataError(
                f"{source}: a label column is required; set label_column in the dataset's entry in "
                "a.toml or in the job file's [data]"
            )
        if label_column not in available:
            raise missing_column_error(
                source,
                label_column,
                available,
                "set label_column in the dataset's entry in a.toml or in the job file's [data]",
            )
    chosen = _feature_columns(
        available,
        id_column=id_column,
        label_column=label_column,
        features=features,
        categorical=categorical,
        source=source,
    )
    ids = normalise_ids(
        frame[id_column].to_numpy(dtype=object),
        column=id_column,
        source=source,
        first_row=first_row,
    )
    categorical_set = set(categorical)
    parsed: dict[str, Any] = {}
    for name in chosen:
        if name in categorical_set:
            parsed[name] = _categorical(frame[name])
        else:
            parsed[name] = parse_numeric(
                frame[name], column=name, source=source, first_row=first_row, trained=trained
            )
    labels = None
    if label_column is not None and label_column in available:
        labels = parse_labels(
            frame[label_column], column=label_column, source=source, first_row=first_row
        )
    return PartyTable(
        ids=ids,
        features=pd.DataFrame(parsed, index=pd.RangeIndex(len(frame)), columns=chosen),
        numeric_columns=[name for name in chosen if name not in categorical_set],
        categorical_columns=[name for name in chosen if name in categorical_set],
        labels=labels,
    )


DEFAULT_CHUNK_ROWS = 100_000
"""Rows read and parsed at a time by ``load_party_table``: the file's text never sits in memory
whole, only one chunk's text and the parsed columns (8 bytes per numeric cell)."""


def load_party_table(
    path: Path | str,
    *,
    id_column: str,
    label_column: str | None = None,
    features: list[str] | None = None,
    categorical: Sequence[str] = (),
    source: str = "",
    require_label: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> PartyTable:
    """Read one party's CSV or Parquet file and check it (see ``load_features_frame``).

    The file is read ``chunk_rows`` rows at a time (``iter_table_chunks``) and each chunk parsed
    before the next is read, so peak memory is one chunk's text plus the parsed table; the result
    does not depend on ``chunk_rows``. A problem in a chunk is reported with its 1-based file row;
    counts in such a message cover the rows read so far (the message says so when the file is
    longer than one chunk). Duplicate IDs are found across chunks.

    ``source`` names the data in messages (default: the path). Raises ``DataError`` also for a
    table with no data rows.
    """
    source = source or str(path)
    parts: list[PartyTable] = []
    for chunk in iter_table_chunks(path, chunk_rows=chunk_rows):
        if chunk.empty:
            continue
        first_row = int(chunk.index[0]) + 1
        try:
            parts.append(
                load_features_frame(
                    chunk,
                    id_column=id_column,
                    label_column=label_column,
                    features=features,
                    categorical=categorical,
                    source=source,
                    require_label=require_label,
                    first_row=first_row,
                )
            )
        except DataError as exc:
            if first_row == 1 and len(chunk) < chunk_rows:
                raise  # the whole file was one chunk: counts cover the whole file
            last_row = first_row + len(chunk) - 1
            raise DataError(
                f"{exc} [counted in rows 1-{last_row}; the file is read {chunk_rows} rows at a "
                "time and later rows were not read]"
            ) from exc
    if not parts:
        raise DataError(f"{source}: the table has a header but no data rows")
    if len(parts) == 1:
        return parts[0]
    return _joined(parts, id_column=id_column, source=source)


def _joined(parts: list[PartyTable], *, id_column: str, source: str) -> PartyTable:
    """One table from consecutive chunks' tables; ``DataError`` for an ID repeated across chunks."""
    ids = np.concatenate([part.ids for part in parts])
    if pd.Series(ids, dtype=object).duplicated().any():
        normalise_ids(ids.tolist(), column=id_column, source=source)  # raises, naming both rows
    labels = parts[0].labels
    if labels is not None:
        labels = np.concatenate([part.labels for part in parts if part.labels is not None])
    numeric, categorical = parts[0].numeric_columns, parts[0].categorical_columns
    features = pd.concat([part.features for part in parts], ignore_index=True)
    parts.clear()  # the chunks' frames can go as soon as the joined one exists
    return PartyTable(ids, features, numeric, categorical, labels)
