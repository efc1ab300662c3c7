"""The ``fedlearn`` command: A's operators' tool. It talks to A's node over the control API.

    fedlearn certs --out DIR --parties party-a,party-b
    fedlearn datasets make-vip --rows 50000 --seed 7 --out DIR
    fedlearn align --dataset NAME
    fedlearn train --job job.toml
    fedlearn score --model ID --input new_users.csv --output scores.csv
    fedlearn models
    fedlearn report --model ID --out DIR

Commands that talk to the node read A's node config (``--config``, else $FEDLEARN_CONFIG, else
./a.toml) for the control address and A's TLS files. Only this module calls ``sys.exit``; exit codes
are listed in docs/transport.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedlearn.errors import ConfigError, FedlearnError
from fedlearn.transport import exit_code_for

DEFAULT_CONFIG = "a.toml"


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except FedlearnError as exc:
        print(f"fedlearn: error: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
    except KeyboardInterrupt:
        print("fedlearn: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedlearn", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    certs = commands.add_parser("certs", help="a development CA and one certificate per party")
    certs.add_argument("--out", required=True, type=Path)
    certs.add_argument("--parties", default="party-a,party-b", help="comma-separated party names")
    certs.add_argument("--force", action="store_true", help="replace an existing CA")
    certs.add_argument(
        "--add",
        action="store_true",
        help="issue certificates for more parties with the CA already in --out",
    )
    certs.set_defaults(handler=_certs)

    datasets = commands.add_parser("datasets", help="synthetic data sets")
    kinds = datasets.add_subparsers(dest="kind", required=True)
    vip = kinds.add_parser("make-vip", help="the synthetic 30-day VIP data set, with node configs")
    vip.add_argument("--rows", type=int, default=50000)
    vip.add_argument("--seed", type=int, default=7)
    vip.add_argument("--out", required=True, type=Path)
    vip.set_defaults(handler=_make_vip)

    def node_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"A's node config (default: $FEDLEARN_CONFIG or ./{DEFAULT_CONFIG})",
        )
        return sub

    align = node_command("align", "private set intersection with B; prints the set sizes")
    align.add_argument("--dataset", required=True, help="A's dataset name")
    align.add_argument("--peer-dataset", default="", help="B's dataset name (default: the same)")
    align.set_defaults(handler=_align)

    train = node_command("train", "joint training with B, with a progress bar")
    train.add_argument("--job", required=True, type=Path)
    train.set_defaults(handler=_train)

    score = node_command("score", "score new users in batch (CSV or Parquet, by extension)")
    score.add_argument("--model", required=True)
    score.add_argument("--input", required=True, type=Path)
    score.add_argument("--output", required=True, type=Path)
    score.set_defaults(handler=_score)

    models = node_command("models", "list A's models with their metrics")
    models.set_defaults(handler=_models)

    report = node_command("report", "write the HTML report of a model")
    report.add_argument("--model", required=True)
    report.add_argument("--out", required=True, type=Path)
    report.set_defaults(handler=_report)
    return parser


# ---- local commands ------------------------------------------------------------------------------


def _certs(args: argparse.Namespace) -> int:
    from fedlearn.certs import add_party_certs, make_dev_certs

    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    if not parties:
        raise ConfigError("--parties: name at least one party")
    if args.add:
        paths = add_party_certs(args.out, parties)
    else:
        paths = make_dev_certs(args.out, parties, force=args.force)
    for name, path in sorted(paths.items()):
        print(f"{name:24s} {path}")
    return 0


def _make_vip(args: argparse.Namespace) -> int:
    from fedlearn.scaffold import write_vip_demo

    demo = write_vip_demo(args.out, rows=args.rows, seed=args.seed)
    for line in demo.describe():
        print(line)
    return 0


# ---- commands that talk to A's node --------------------------------------------------------------


class _Control:
    """A stub for A's control API, built from A's node config."""

    def __init__(self, config_path: Path | None) -> None:
        from fedlearn.config_a import load_config
        from fedlearn.proto.v1 import control_pb2_grpc
        from fedlearn.transport import build_channel

        path = config_path or Path(os.environ.get("FEDLEARN_CONFIG", DEFAULT_CONFIG))
        if not path.exists():
            raise ConfigError(
                f"{path}: A's node config not found; pass --config or set FEDLEARN_CONFIG"
            )
        self.config = load_config(path)
        self.address = self.config.control_listen
        self.channel = build_channel(
            self.address,
            self.config.transport,
            server_name=None if self.config.transport.insecure else self.config.name,
            source=self.config.source.name,
        )
        self.stub = control_pb2_grpc.ControlServiceStub(self.channel)
        self.label = f"{self.config.name}'s node at {self.address}"

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        from fedlearn.transport import stream_responses

        return stream_responses(
            getattr(self.stub, method), request, deadline_s=7 * 24 * 3600.0, peer=self.label
        )

    def unary(self, method: str, request: Any) -> Any:
        from fedlearn.transport import call_unary

        return call_unary(
            getattr(self.stub, method),
            request,
            deadline_s=self.config.transport.deadline_s,
            peer=self.label,
        )


def _align(args: argparse.Namespace) -> int:
    from fedlearn.proto.v1 import control_pb2 as pb

    control = _Control(args.config)
    bar = ProgressBar()
    for event in control.stream(
        "Align", pb.AlignRequest(dataset=args.dataset, peer_dataset=args.peer_dataset)
    ):
        if event.HasField("progress"):
            bar.show(event.progress)
        else:
            bar.done()
            result = event.result
            print(f"A ({args.dataset}): {result.own_size} IDs")
            print(f"B ({args.peer_dataset or args.dataset}): {result.peer_size} IDs")
            print(f"intersection: {result.intersection_size} IDs ({result.seconds:.1f} s)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from fedlearn.job import parse_job
    from fedlearn.proto.v1 import control_pb2 as pb

    if not args.job.is_file():
        raise ConfigError(f"{args.job}: no such job file")
    text = args.job.read_text(encoding="utf-8")
    parse_job(text, args.job)  # fail here, before the node is bothered, on a bad job file
    control = _Control(args.config)
    bar = ProgressBar()
    for event in control.stream("Train", pb.TrainRequest(job_toml=text, job_path=str(args.job))):
        if event.HasField("progress"):
            bar.show(event.progress)
        else:
            bar.done()
            summary = json.loads(event.result.summary_json)
            for line in format_training_summary(summary):
                print(line)
    return 0


def _score(args: argparse.Namespace) -> int:
    from fedlearn.proto.v1 import control_pb2 as pb

    if not args.input.is_file():
        raise ConfigError(f"{args.input}: no such input file")
    control = _Control(args.config)
    bar = ProgressBar()
    request = pb.ScoreRequest(
        model_id=args.model,
        input_path=str(args.input.resolve()),
        output_path=str(args.output.resolve()),
    )
    for event in control.stream("Score", request):
        if event.HasField("progress"):
            if event.progress.phase == "warning":
                bar.done()
                print(f"warning: {event.progress.message}", file=sys.stderr)
            elif event.progress.phase == "summary":
                bar.done()
                print(event.progress.message)
            else:
                bar.show(event.progress)
        else:
            bar.done()
            result = event.result
            rate = result.rows / result.seconds if result.seconds > 0 else math.nan
            print(
                f"scored {result.rows} users ({result.matched} known to the partner) in "
                f"{result.seconds:.1f} s ({rate:,.0f} rows/s)"
            )
            print(f"scores: {result.output_path}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from fedlearn.proto.v1 import control_pb2 as pb

    control = _Control(args.config)
    reply = control.unary("ListModels", pb.ListModelsRequest())
    if not reply.models:
        print(f"no models yet in {control.config.model_dir}")
        return 0
    print(
        f"{'model id':36s} {'created':20s} {'joint AUC':>9s} {'A-only AUC':>10s} {'recall@40':>9s}"
    )
    for model in reply.models:
        metrics = json.loads(model.summary_json).get("metrics", {})
        joint, a_only = metrics.get("joint", {}), metrics.get("a_only", {})
        print(
            f"{model.model_id:36s} {model.created_at:20s} {_fmt(joint.get('auc')):>9s} "
            f"{_fmt(a_only.get('auc')):>10s} {_fmt(joint.get('recall@40')):>9s}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from fedlearn.proto.v1 import control_pb2 as pb

    control = _Control(args.config)
    reply = control.unary(
        "Report", pb.ReportRequest(model_id=args.model, out_dir=str(args.out.resolve()))
    )
    print(f"report: {reply.path}")
    return 0


# ---- output ------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


METRIC_ROWS = [("auc", "AUC"), ("ks", "KS"), ("log_loss", "log loss")] + [
    (f"{kind}@{k}", f"{kind} top {k}%") for kind in ("recall", "lift") for k in (10, 20, 30, 40, 50)
]
#: Metrics where a lower value is better; every other metric in METRIC_ROWS is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss"})


def better_model(key: str, joint: Any, a_only: Any) -> str:
    """Which model is better on metric ``key`` ("joint", "A only", "tie" or "-" when unknown)."""
    if not isinstance(joint, (int, float)) or not isinstance(a_only, (int, float)):
        return "-"
    if math.isnan(joint) or math.isnan(a_only):
        return "-"
    if round(joint, 3) == round(a_only, 3):
        return "tie"
    lower = key in LOWER_IS_BETTER
    return "joint" if (joint < a_only) == lower else "A only"


def format_training_summary(summary: dict[str, Any]) -> list[str]:
    """The metrics table (joint vs A-only) and timings, as printed after training."""
    lines = [f"model: {summary.get('model_id')}"]
    rows = summary.get("rows", {})
    if rows:
        lines.append(
            f"rows: A {rows.get('own')}, B {rows.get('peer')}, aligned {rows.get('aligned')} "
            f"(train {rows.get('train')}, validation {rows.get('validation')})"
        )
    metrics = summary.get("metrics", {})
    joint, a_only = metrics.get("joint", {}), metrics.get("a_only", {})
    if joint or a_only:
        lines.append(f"{'validation metric':26s} {'joint':>8s} {'A only':>8s} {'better':>8s}")
        for key, name in METRIC_ROWS:
            j, a = joint.get(key), a_only.get(key)
            label = f"{name} ({'lower' if key in LOWER_IS_BETTER else 'higher'} is better)"
            lines.append(f"{label:26s} {_fmt(j):>8s} {_fmt(a):>8s} {better_model(key, j, a):>8s}")
    stopped = summary.get("stopped")
    if stopped:
        lines.append(f"training stopped: {stopped.get('message', stopped.get('reason'))}")
    history = summary.get("loss_history", [])
    if history:
        losses = ", ".join(f"{h['loss']:.4f}" for h in history)
        lines.append(f"loss per epoch (quadratic bound of the logistic loss): {losses}")
    timings = summary.get("timings", {})
    if timings:
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return lines


class ProgressBar:
    """One updating line on a terminal (phase, epoch, batch, loss, ETA); plain lines otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_line = ""
        self.last_print = 0.0

    def show(self, progress: Any) -> None:
        parts = [f"[{progress.phase}]"]
        if progress.epochs:
            parts.append(f"epoch {progress.epoch}/{progress.epochs}")
        if progress.batches:
            filled = int(20 * progress.batch / max(progress.batches, 1))
            parts.append(
                f"batch {progress.batch}/{progress.batches} [{'#' * filled}{'.' * (20 - filled)}]"
            )
        if not math.isnan(progress.loss):
            parts.append(f"loss {progress.loss:.4f}")
        if progress.eta_s and not math.isnan(progress.eta_s):
            parts.append(f"ETA {progress.eta_s:.0f}s")
        if progress.message:
            parts.append(progress.message)
        line = " ".join(parts)
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(len(self.last_line[:160])))
            self.stream.flush()
        elif progress.message or now - self.last_print > 5.0:
            self.stream.write(line + "\n")
            self.last_print = now
        self.last_line = line

    def done(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()
        self.last_line = ""


if __name__ == "__main__":
    main()
