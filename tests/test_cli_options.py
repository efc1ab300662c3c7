"""The CLI's surface: help on every option, --version, --json accepted everywhere it prints results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from fedlearn import __version__
from fedlearn.cli import _parser, main
from fedlearn.crypto.matvec import kernel_description


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("fedlearn",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_option_and_argument_has_help() -> None:
    missing = [
        (" ".join(path), action.option_strings or action.dest)
        for path, parser in _commands(_parser())
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


def test_every_command_that_prints_results_takes_json() -> None:
    without = [
        " ".join(path)
        for path, parser in _commands(_parser())
        if path != ("fedlearn",)
        and path != ("fedlearn", "datasets")
        and not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert without == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    version = capsys.readouterr().out.strip()
    assert version.startswith(f"fedlearn {__version__}; encryption kernel: ")
    assert version.endswith(kernel_description())


def test_options_before_and_after_a_nested_action() -> None:
    parser = _parser()
    before = parser.parse_args(["jobs", "--config", "x.toml", "--json", "show", "job-1"])
    after = parser.parse_args(["jobs", "show", "job-1", "--config", "x.toml", "--json"])
    for args in (before, after):
        assert (str(args.config), args.json, args.job_id) == ("x.toml", True, "job-1")
    assert parser.parse_args(["jobs"]).handler.__name__ == "_jobs"


def test_config_before_the_command_is_kept() -> None:
    parser = _parser()
    for argv in (
        ["--config", "x.toml", "train", "--job", "j.toml"],
        ["train", "--config", "x.toml", "--job", "j.toml"],
        ["--config", "x.toml", "jobs", "show", "job-1"],
    ):
        assert str(parser.parse_args(argv).config) == "x.toml", argv
    # Not given anywhere: the client falls back to $FEDLEARN_CONFIG, then ./a.toml.
    assert getattr(parser.parse_args(["align", "--dataset", "d"]), "config", None) is None


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """``fedlearn models | head -1``: exit 141 quietly instead of a BrokenPipeError traceback."""
    import subprocess
    import sys

    script = "\n".join(
        [
            "import fedlearn.cli as cli",
            "class Args:",
            "    @staticmethod",
            "    def handler(args):",
            "        for i in range(200_000):",
            "            print('line', i)",
            "        return 0",
            "parser = cli._parser()",
            "parser.parse_args = lambda argv=None: Args()",
            "cli._parser = lambda: parser",
            "cli.main([])",
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()
    error = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, error
    assert b"Traceback" not in error and b"BrokenPipe" not in error


def test_json_output_is_strict_json_without_nan(capsys: pytest.CaptureFixture[str]) -> None:
    """A loss or an ETA not known yet is null: NaN is not JSON (JavaScript and Go refuse it)."""
    from fedlearn.cli import _print_json

    _print_json({"progress": {"loss": float("nan"), "eta_s": float("inf"), "epoch": 3}, "x": [1.5]})
    document = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert document == {"progress": {"loss": None, "eta_s": None, "epoch": 3}, "x": [1.5]}


def test_an_error_under_json_is_a_json_document_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", "--json", "--config", str(tmp_path / "missing.toml")])
    out, err = capsys.readouterr()
    document = json.loads(out, parse_constant=_refuse)
    assert document["error"]["exit_code"] == exited.value.code != 0
    assert "missing.toml" in document["error"]["message"] and "fedlearn: error:" in err


def _refuse(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def test_following_a_job_whose_node_went_away_says_how_to_resume() -> None:
    from fedlearn.cli import _follow
    from fedlearn.errors import PeerUnavailable

    class GoneNode:
        def watch(self, job_id: str, progress: object = None) -> None:
            raise PeerUnavailable("party-a's node at 127.0.0.1:50051 is not reachable")

    args = argparse.Namespace(json=False, cancel_on_interrupt=False)
    with pytest.raises(PeerUnavailable, match=r"fedlearn train --resume job-7"):
        _follow(GoneNode(), "job-7", args)


def test_models_says_once_why_the_partners_shards_were_not_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    import fedlearn.cli as cli
    from fedlearn.client import ModelInfo

    why = "party-b at b:50052 is not reachable: connection refused (a long gRPC text)"
    models = [
        ModelInfo(f"vip-{k}", "2026-12-03T10:00:00Z", {"peer_shard": f"unknown: {why}"})
        for k in range(3)
    ]

    class Fake:
        config = SimpleNamespace(model_dir="models")

        def __enter__(self) -> Fake:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def models(self) -> list[ModelInfo]:
            return models

    monkeypatch.setattr(cli, "_client", lambda args: Fake())
    assert cli._models(argparse.Namespace(json=False)) == 0
    out, err = capsys.readouterr()
    assert why not in out and out.count("vip-") == 3 and err.count(why) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--json"],  # required options missing
        ["train", "--json", "--bogus"],  # an unknown option
        ["--json", "jobs", "show"],  # a missing argument, --json before the command
        ["models", "export", "--json"],  # an unknown action
    ],
)
def test_a_usage_error_under_json_is_a_json_document_on_stdout(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    document = json.loads(out, parse_constant=_refuse)
    assert exited.value.code == 2 == document["error"]["exit_code"]
    assert document["error"]["type"] == "UsageError" and document["error"]["message"] in err
    assert "usage:" in err


def test_a_usage_error_without_json_prints_only_argparse_s_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["score"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert "usage: fedlearn score" in err and "the following arguments are required" in err


def test_json_before_the_command_counts() -> None:
    parser = _parser()
    assert parser.parse_args(["--json", "models"]).json is True
    assert parser.parse_args(["models", "--json"]).json is True
    assert getattr(parser.parse_args(["models"]), "json", False) is False


def test_ctrl_c_under_json_is_a_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    import fedlearn.cli as cli

    parser = cli._parser()
    args = parser.parse_args(["models", "--json"])

    def interrupted(_: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    args.handler = interrupted
    real = cli._parser
    cli._parser = lambda: argparse.Namespace(parse_args=lambda argv=None: args)  # type: ignore[assignment,return-value]
    try:
        with pytest.raises(SystemExit) as exited:
            main(["models", "--json"])
    finally:
        cli._parser = real
    document = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert exited.value.code == 130 == document["error"]["exit_code"]


def test_following_with_json_names_the_job_in_the_error_and_on_ctrl_c(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A script that followed a job learns its id from the JSON, not by parsing a sentence."""
    from fedlearn.cli import _follow
    from fedlearn.errors import PeerUnavailable

    class GoneNode:
        def watch(self, job_id: str, progress: object = None) -> None:
            raise PeerUnavailable("party-a's node at 127.0.0.1:50051 is not reachable")

    class Interrupted:
        def watch(self, job_id: str, progress: object = None) -> None:
            raise KeyboardInterrupt

    args = argparse.Namespace(json=True, cancel_on_interrupt=False)
    with pytest.raises(PeerUnavailable) as caught:
        _follow(GoneNode(), "job-20261203-113619-1a1e", args)
    assert caught.value.job_id == "job-20261203-113619-1a1e"  # type: ignore[attr-defined]
    assert _follow(Interrupted(), "job-20261203-113619-1a1e", args) == 130
    document = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert document["error"]["job_id"] == "job-20261203-113619-1a1e"
    assert document["error"]["exit_code"] == 130 and "runs on" in document["error"]["message"]


def _info(model_id: str, created_at: str, dataset: str) -> Any:
    from fedlearn.client import ModelInfo

    return ModelInfo(model_id, created_at, {"dataset": dataset} if created_at else {"damaged": "x"})


def test_prune_keeps_each_dataset_s_newest_models(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fedlearn models prune --keep N`: a nightly pipeline's models do not pile up. B's shard goes
    first for each (`delete_model`), and a damaged model is left for `models delete ID`."""
    import contextlib

    import fedlearn.cli as cli
    from fedlearn.client import DeleteResult

    models = [
        _info("vip-20261201-010000-aaaa", "2026-12-01T01:00:00Z", "vip"),
        _info("vip-20261203-010000-cccc", "2026-12-03T01:00:00Z", "vip"),
        _info("vip-20261202-010000-bbbb", "2026-12-02T01:00:00Z", "vip"),
        _info("growth-20261130-010000-dddd", "2026-11-30T01:00:00Z", "growth"),
        _info("broken-1", "", ""),
    ]
    deleted: list[str] = []

    class FakeClient:
        def models(self) -> list[Any]:
            return models

        def delete_model(self, model_id: str, local_only: bool = False) -> DeleteResult:
            deleted.append(model_id)
            return DeleteResult(model_id, peer_deleted=True)

    monkeypatch.setattr(cli, "_client", lambda args: contextlib.nullcontext(FakeClient()))
    with pytest.raises(SystemExit) as exited:
        main(["models", "prune", "--keep", "2", "--dry-run"])
    assert exited.value.code == 0 and deleted == []
    assert "would delete vip-20261201-010000-aaaa" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["models", "prune", "--keep", "1", "--dataset", "vip", "--json"])
    document = json.loads(capsys.readouterr().out, parse_constant=_refuse)
    assert deleted == ["vip-20261202-010000-bbbb", "vip-20261201-010000-aaaa"]
    assert document["kept"] == ["vip-20261203-010000-cccc"]
    assert [d["model_id"] for d in document["deleted"]] == deleted
    with pytest.raises(SystemExit) as exited:
        main(["models", "prune", "--keep", "0"])
    assert exited.value.code == 2
