"""[node] executor and ray_address in both node configs, and fedlearn without Ray installed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedlearn.config_a import load_config as load_a
from fedlearn.config_b import load_config as load_b
from fedlearn.crypto import ray_executor
from fedlearn.crypto.executor import ProcessExecutor, SerialExecutor, make_executor
from fedlearn.errors import ConfigError
from tests.test_config import certs, write_b

__all__ = ["certs"]  # the module fixture, shared with tests/test_config.py


def b_with(tmp_path: Path, certs: Path, node_lines: str) -> Path:
    path = write_b(tmp_path, certs)
    text = path.read_text().replace("[tls]", f"{node_lines}\n[tls]", 1)
    path.write_text(text)
    return path


def a_with(tmp_path: Path, certs: Path, node_lines: str) -> Path:
    data = tmp_path / "a.csv"
    data.write_text("id,x,y\n1,2,0\n")
    path = tmp_path / "a.toml"
    path.write_text(
        f"""
[node]
name = "party-a"
{node_lines}
[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/party-a.pem"
key = "{certs}/party-a.key"
[peer]
address = "127.0.0.1:50052"
name = "party-b"
[[datasets]]
name = "d"
path = "{data}"
id_column = "id"
label_column = "y"
"""
    )
    return path


def test_the_default_is_the_process_pool(tmp_path: Path, certs: Path) -> None:
    config = load_b(write_b(tmp_path, certs))
    assert (config.executor, config.ray_address) == ("process", None)
    assert isinstance(make_executor(1, config.executor), SerialExecutor)
    pool = make_executor(2, "process")
    try:
        assert isinstance(pool, ProcessExecutor)
    finally:
        pool.close()


@pytest.mark.parametrize("load, write", [(load_a, a_with), (load_b, b_with)])
def test_ray_with_and_without_an_address(
    load: Callable[[Path], Any],
    write: Callable[[Path, Path, str], Path],
    tmp_path: Path,
    certs: Path,
) -> None:
    if not ray_executor.ray_installed():
        pytest.skip("Ray is not installed")
    local = load(write(tmp_path, certs, 'workers = 4\nexecutor = "ray"'))
    assert (local.executor, local.ray_address, local.workers) == ("ray", None, 4)
    remote = load(
        write(tmp_path, certs, 'executor = "ray"\nray_address = "ray://head.internal:10001"')
    )
    assert (remote.executor, remote.ray_address) == ("ray", "ray://head.internal:10001")


def test_unknown_executor_names_the_choices(tmp_path: Path, certs: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[node\] executor.*process.*ray"):
        load_b(b_with(tmp_path, certs, 'executor = "dask"'))
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor(2, "dask")


def test_an_address_without_ray_is_refused(tmp_path: Path, certs: Path) -> None:
    path = a_with(tmp_path, certs, 'ray_address = "ray://head:10001"')
    with pytest.raises(ConfigError, match=r'\[node\] ray_address: only used with executor = "ray"'):
        load_a(path)


def test_an_empty_address_is_refused(tmp_path: Path, certs: Path) -> None:
    path = b_with(tmp_path, certs, 'executor = "ray"\nray_address = " "')
    if not ray_executor.ray_installed():
        pytest.skip("Ray is not installed")
    with pytest.raises(ConfigError, match="is not an address"):
        load_b(path)


def test_ray_asked_for_without_ray_installed_says_how_to_install(
    tmp_path: Path, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_executor, "ray_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'fedlearn\[ray\]'"):
        load_b(b_with(tmp_path, certs, 'executor = "ray"'))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fedlearn\[ray\]'"):
        make_executor(2, "ray")


def test_fedlearn_never_imports_ray_unless_asked() -> None:
    code = (
        "import sys, fedlearn.crypto, fedlearn.config_a, fedlearn.config_b, party_a.node, "
        "party_b.node\nprint('ray' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
