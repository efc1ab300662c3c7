"""What both node commands share: argument parsing, logging, and turning errors into exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from fedlearn.errors import FedlearnError
from fedlearn.transport import exit_code_for


def node_main(
    prog: str,
    description: str,
    serve: Callable[[argparse.Namespace], signal.Signals | None],
    argv: list[str] | None = None,
) -> int:
    """``<prog> serve --config FILE``: run ``serve`` and map what it raises to an exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the node until SIGTERM or SIGINT")
    serve_parser.add_argument("--config", required=True, help="the node's TOML config file")
    serve_parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {prog} %(levelname)s %(name)s: %(message)s",
    )
    try:
        stopped_by = serve(args)
    except FedlearnError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    return 130 if stopped_by == signal.SIGINT else 0
