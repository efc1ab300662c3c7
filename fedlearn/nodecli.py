"""What both node commands share: argument parsing, logging, and turning errors into exit codes.

    party-a serve --config a.toml [--log-level INFO] [--log-file FILE] [--log-format text|json]

Logs go to stderr, or to ``--log-file`` (appended). ``--log-format json`` writes one JSON object a
line (``time``, ``level``, ``node``, ``logger``, ``message``; ``error`` with the traceback when
there is one), for log collectors.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from fedlearn import __version__
from fedlearn.cli import VersionAction
from fedlearn.config import DatasetSpec
from fedlearn.crypto.matvec import kernel_description
from fedlearn.data import dataset_problems
from fedlearn.errors import FedlearnError
from fedlearn.transport import exit_code_for

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO 8601), level, node, logger, message[, error]."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "node": self.node,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document)


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def setup_logging(prog: str, level: str, log_file: Path | None, log_format: str) -> None:
    """Configure the root logger: ``level``, to ``log_file`` (appended) or stderr, text or JSON."""
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file is not None
        else logging.StreamHandler(sys.stderr)
    )
    if log_format == "json":
        handler.setFormatter(JsonFormatter(prog))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prog} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def check_datasets(datasets: dict[str, DatasetSpec], log: logging.Logger) -> int:
    """Log a warning for each problem of each dataset's file and columns (headers only), when a
    node starts, so that its operator sees a typo at once rather than in a failed session; the node
    starts anyway (a file may arrive later). Returns the number of problems."""
    count = 0
    for spec in datasets.values():
        for problem in dataset_problems(
            spec.path,
            id_column=spec.id_column,
            label_column=spec.label_column,
            features=spec.features,
            categorical=spec.categorical,
        ):
            log.warning("dataset %r: %s", spec.name, problem)
            count += 1
    return count


def node_main(
    prog: str,
    description: str,
    serve: Callable[[argparse.Namespace], signal.Signals | None],
    argv: list[str] | None = None,
) -> int:
    """``<prog> serve --config FILE``: run ``serve`` and map what it raises to an exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action=VersionAction, prog_name=f"{prog} (fedlearn)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="run the node until SIGTERM or SIGINT", description=description
    )
    serve_parser.add_argument("--config", required=True, help="the node's TOML config file")
    serve_parser.add_argument(
        "--log-level",
        type=_log_level,
        default="INFO",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default INFO)",
    )
    serve_parser.add_argument(
        "--log-file", type=Path, default=None, help="append the log to this file (default: stderr)"
    )
    serve_parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default), or one JSON object a line",
    )
    args = parser.parse_args(argv)
    try:
        setup_logging(prog, args.log_level, args.log_file, args.log_format)
    except OSError as exc:
        print(
            f"{prog}: error: cannot write the log file {args.log_file}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    logging.getLogger(prog).info(
        "fedlearn %s; encryption kernel: %s", __version__, kernel_description()
    )
    try:
        stopped_by = serve(args)
    except FedlearnError as exc:
        logging.getLogger(prog).error("%s", exc)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    return 130 if stopped_by == signal.SIGINT else 0
