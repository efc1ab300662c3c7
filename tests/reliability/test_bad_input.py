"""An operator's or a peer's mistake gets a clear error and its exit code, never INTERNAL (issue 12)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from fedlearn.config import read_text_file
from fedlearn.crypto.keys import generate_keypair, public_key_from_bytes, public_key_to_bytes
from fedlearn.data import iter_table_chunks, read_table
from fedlearn.errors import ConfigError, DataError, InvalidPeerData, PolicyViolation
from fedlearn.job import parse_job
from fedlearn.protocol import messages as m
from fedlearn.protocol.policy import PeerPolicy, check_train_job
from fedlearn.transport import exit_code_for

JOB = '[data]\ndataset = "d"\n'


@pytest.mark.parametrize(
    ("table", "line", "expected"),
    [
        ("train", "learning_rate = inf", "expected a finite number"),
        ("train", "learning_rate = nan", "expected a finite number"),
        ("train", "learning_rate = 1e308", "must be at most 10.0"),
        ("train", "l2 = nan", "expected a finite number"),
        ("train", "l2 = inf", "expected a finite number"),
        ("train", "l1 = -inf", "expected a finite number"),
        ("train", "batch_size = 1_000_000_000_000", "must be at most"),
        ("early_stopping", "tolerance = nan", "expected a finite number"),
        ("data", "validation_fraction = nan", "expected a finite number"),
        ("preprocess", "clip = inf", "expected a finite number"),
        ("privacy", "gradient_noise = nan", "expected a finite number"),
        ("crypto", "key_bits = 1025", "must be a multiple of 64"),
        ("crypto", "key_bits = 16384", "must be at most 8192"),
    ],
)
def test_absurd_job_values_are_config_errors_naming_the_key(
    table: str, line: str, expected: str
) -> None:
    text = JOB + f"[{table}]\n{line}\n"
    if table == "data":
        text = f'[data]\ndataset = "d"\n{line}\n'
    with pytest.raises(ConfigError, match=expected) as caught:
        parse_job(text, "job.toml")
    key = line.split(" =")[0]
    assert key in str(caught.value)
    assert exit_code_for(caught.value) == 2


def test_sane_job_values_still_parse() -> None:
    spec = parse_job(JOB + "[train]\nlearning_rate = 0.5\nl2 = 0.01\n[crypto]\nkey_bits = 3072\n")
    assert spec.params.learning_rate == 0.5 and spec.params.key_bits == 3072


def test_non_utf8_job_file_is_a_config_error(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_bytes(b'[data]\ndataset = "caf\xe9"\n')
    with pytest.raises(
        ConfigError, match=r"not UTF-8 text \(byte 21 is 0xe9\); save the file as UTF-8"
    ):
        read_text_file(job)
    with pytest.raises(ConfigError, match="no such file"):
        read_text_file(tmp_path / "missing.toml")


def _truncated_gzip(path: Path, rows: int = 20_000) -> Path:
    body = "id,x,y\n" + "".join(f"u{i},{i % 7},{i % 2}\n" for i in range(rows))
    data = gzip.compress(body.encode())
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_csv_gz_is_a_data_error_for_whole_and_chunked_reads(tmp_path: Path) -> None:
    path = _truncated_gzip(tmp_path / "users.csv.gz")
    with pytest.raises(DataError, match=r"damaged or cut off.*download it again") as caught:
        read_table(path)
    assert exit_code_for(caught.value) == 3
    with pytest.raises(DataError, match="damaged or cut off"):
        for _ in iter_table_chunks(path, chunk_rows=1000):
            pass


def test_garbage_gz_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "users.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=str(path.name)):
        read_table(path)


def _params(**changes: object) -> m.TrainParams:
    fields = {"key_bits": 2048, "batch_size": 1024, **changes}
    return m.TrainParams(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"key_bits": 16384}, "key_bits 16384 is above the maximum 4096"),
        ({"key_bits": 2049}, "key_bits: must be a multiple of 64"),
        ({"learning_rate": float("inf")}, "learning_rate: "),
        ({"learning_rate": float("nan")}, "learning_rate: "),
        ({"learning_rate": 1e308}, "learning_rate: "),
        ({"l2": float("nan")}, "l2: "),
        ({"l1": float("inf")}, "l1: "),
    ],
)
def test_b_policy_refuses_absurd_jobs_before_any_work(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(PolicyViolation, match=reason):
        check_train_job("party-b", PeerPolicy(), _params(**changes))


def test_b_policy_accepts_the_defaults() -> None:
    check_train_job("party-b", PeerPolicy(), _params())


def test_oversized_modulus_is_refused_on_its_length_before_any_arithmetic() -> None:
    # An 8 KiB "modulus" (65,536 bits): refused by length, so no primality test runs.
    huge = b"\xff" * 8192
    with pytest.raises(InvalidPeerData, match="more than the 4096-bit limit"):
        public_key_from_bytes(huge, min_bits=2048, max_bits=4096)
    key = generate_keypair(512).public_key
    with pytest.raises(InvalidPeerData, match="has 512 bits, more than the limit of 508"):
        public_key_from_bytes(public_key_to_bytes(key), min_bits=256, max_bits=508)
    assert public_key_from_bytes(public_key_to_bytes(key), min_bits=512, max_bits=512).n == key.n


def test_a_write_sweeps_the_temp_files_a_killed_write_left(tmp_path: Path) -> None:
    import pandas as pd

    from fedlearn.data import write_table_atomic

    output = tmp_path / "scores.csv"
    (tmp_path / ".scores.csv.abc123.tmp").write_text("half")
    (tmp_path / ".other.csv.abc123.tmp").write_text("not ours")
    write_table_atomic(pd.DataFrame({"id": ["u1"], "score": [0.5]}), output)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.abc123.tmp", "scores.csv"]
    assert output.read_text().splitlines() == ["id,score", "u1,0.5"]
