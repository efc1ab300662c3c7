"""Node configs and job files: errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedlearn.certs import make_dev_certs
from fedlearn.config_a import load_config as load_a
from fedlearn.config_b import load_config as load_b
from fedlearn.data import dataset_problems, read_table
from fedlearn.errors import ConfigError, DataError
from fedlearn.job import parse_job
from fedlearn.protocol.policy import PeerPolicy


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out, ["party-a", "party-b"])
    return out


B_TEMPLATE = """
[node]
name = "party-b"
listen = "{listen}"
[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/party-b.pem"
key = "{certs}/party-b.key"
{tls_extra}
[partners]
allowed = ["party-a"]
[policy]
min_key_bits = 2048
{policy_extra}
[[datasets]]
name = "vip"
path = "{data}"
id_column = "id"
"""


def write_b(tmp_path: Path, certs: Path, **changes: str) -> Path:
    data = tmp_path / "b.csv"
    data.write_text("id,x\n1,2\n")
    values = {
        "listen": "127.0.0.1:0",
        "certs": str(certs),
        "tls_extra": "",
        "policy_extra": "",
        "data": str(data),
    }
    values.update(changes)
    path = tmp_path / "b.toml"
    path.write_text(B_TEMPLATE.format(**values))
    return path


def test_valid_b_config_loads(tmp_path: Path, certs: Path) -> None:
    config = load_b(write_b(tmp_path, certs))
    assert config.name == "party-b"
    assert config.allowed_partners == {"party-a"}
    assert config.policy.min_key_bits == 2048
    assert config.datasets["vip"].features is None


def test_unknown_key_is_an_error_naming_file_and_table(tmp_path: Path, certs: Path) -> None:
    path = write_b(tmp_path, certs, policy_extra="min_batch = 3")
    with pytest.raises(ConfigError, match=r"b\.toml: \[policy\] unknown key\(s\) min_batch"):
        load_b(path)


def test_wrong_type_names_key_and_expectation(tmp_path: Path, certs: Path) -> None:
    path = write_b(tmp_path, certs, policy_extra='max_epochs = "ten"')
    with pytest.raises(ConfigError, match=r"\[policy\] max_epochs: expected a whole number"):
        load_b(path)


def test_insecure_on_public_address_stops_start_up(tmp_path: Path, certs: Path) -> None:
    path = write_b(tmp_path, certs, listen="0.0.0.0:50052", tls_extra="insecure = true")
    with pytest.raises(ConfigError, match="insecure"):
        load_b(path)


def test_missing_dataset_file_does_not_stop_the_node(tmp_path: Path, certs: Path) -> None:
    """One stale dataset entry must not take the node's other datasets offline: the config loads
    (start-up logs ``dataset_problems``' warning) and a session on it fails with the path named."""
    path = write_b(tmp_path, certs, data=str(tmp_path / "nope.csv"))
    config = load_b(path)
    spec = config.datasets["vip"]
    assert spec.path == tmp_path / "nope.csv"
    assert dataset_problems(
        spec.path, id_column="id", label_column=None, features=None, categorical=[]
    ) == [f"{tmp_path / 'nope.csv'} does not exist (yet): sessions on it will fail until it does"]
    with pytest.raises(DataError, match=r"nope\.csv: no such CSV file"):
        read_table(spec.path)


def test_name_must_match_certificate(tmp_path: Path, certs: Path) -> None:
    path = write_b(tmp_path, certs)
    path.write_text(path.read_text().replace('name = "party-b"', 'name = "party-x"', 1))
    with pytest.raises(ConfigError, match="certificate"):
        load_b(path)


def test_the_other_partys_config_is_named_as_such(tmp_path: Path, certs: Path) -> None:
    b_config = write_b(tmp_path, certs)
    with pytest.raises(ConfigError, match=r"config of party B's node.*A's node config"):
        load_a(b_config)
    a_config = tmp_path / "a.toml"
    a_config.write_text('[node]\nname = "party-a"\n[peer]\naddress = "b:1"\nname = "party-b"\n')
    with pytest.raises(ConfigError, match=r"config of party A's node.*B's\s+node config"):
        load_b(a_config)


def test_a_config_requires_peer(tmp_path: Path, certs: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text("id,y,x\n1,0,2\n")
    path = tmp_path / "a.toml"
    path.write_text(f"""
[node]
name = "party-a"
[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/party-a.pem"
key = "{certs}/party-a.key"
[[datasets]]
name = "vip"
path = "{data}"
label_column = "y"
""")
    with pytest.raises(ConfigError, match=r"\[peer\]"):
        load_a(path)


def test_job_defaults_and_errors() -> None:
    job = parse_job('[data]\ndataset = "vip"\n')
    assert job.params.key_bits == 2048
    assert job.params.optimizer == "adam"
    # "auto" epochs: the budget B checks is max_epochs, which B's default policy accepts.
    assert job.epochs_auto and job.params.epochs == PeerPolicy().max_epochs
    assert job.monitor == "score_change" and job.tolerance == 0.02
    assert job.params.l2 == 1.0  # scikit-learn's default strength (C = 1)
    with pytest.raises(
        ConfigError, match=r"\[train\] optimizer: expected one of sgd, momentum, adam"
    ):
        parse_job('[data]\ndataset = "vip"\n[train]\noptimizer = "lbfgs"\n')
    with pytest.raises(ConfigError, match=r"the \[data\] table is missing"):
        parse_job("[train]\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_job("[data\n")


def test_job_batch_size_auto_or_a_number() -> None:
    default = parse_job('[data]\ndataset = "vip"\n')
    assert default.batch_auto and default.params.batch_size == 1024
    auto = parse_job('[data]\ndataset = "vip"\n[train]\nbatch_size = "auto"\n')
    assert auto.batch_auto and auto.params.batch_size == 1024
    fixed = parse_job('[data]\ndataset = "vip"\n[train]\nbatch_size = 512\n')
    assert not fixed.batch_auto and fixed.params.batch_size == 512
    with pytest.raises(ConfigError, match=r'\[train\] batch_size: expected "auto" or a whole'):
        parse_job('[data]\ndataset = "vip"\n[train]\nbatch_size = "big"\n')
    with pytest.raises(ConfigError, match=r"\[train\] batch_size"):
        parse_job('[data]\ndataset = "vip"\n[train]\nbatch_size = 0\n')


def test_job_epochs_auto_or_a_number() -> None:
    fixed = parse_job('[data]\ndataset = "vip"\n[train]\nepochs = 7\n')
    assert not fixed.epochs_auto and fixed.params.epochs == 7
    auto = parse_job('[data]\ndataset = "vip"\n[train]\nepochs = "auto"\nmax_epochs = 30\n')
    assert auto.epochs_auto and auto.params.epochs == 30
    with pytest.raises(ConfigError, match=r'\[train\] epochs: expected "auto" or a whole number'):
        parse_job('[data]\ndataset = "vip"\n[train]\nepochs = "many"\n')
    with pytest.raises(ConfigError, match=r"\[train\] max_epochs: only used with epochs"):
        parse_job('[data]\ndataset = "vip"\n[train]\nepochs = 5\nmax_epochs = 9\n')
