"""The ``fedlearn`` command: A's operators' tool. It talks to A's node over the control API.

    fedlearn certs --out DIR --parties party-a,party-b
    fedlearn datasets make-vip --rows 50000 --seed 7 --out DIR
    fedlearn align --dataset NAME
    fedlearn train --job job.toml [--detach | --cancel-on-interrupt]
    fedlearn train --resume JOB_ID
    fedlearn jobs [show ID | cancel ID | logs ID [--follow] | watch ID]
    fedlearn score --model ID --input new_users.csv --output scores.csv
    fedlearn models [show ID | delete ID]
    fedlearn report --model ID --out DIR      (or --scores scores.csv --out DIR)

Commands that talk to the node read A's node config (``--config``, else $FEDLEARN_CONFIG, else
./a.toml) for the control address and A's TLS files, through :class:`fedlearn.client.Client`. With
``--json`` a command prints one JSON document on stdout; progress and messages go to stderr. Only
this module calls ``sys.exit``; exit codes are listed in docs/transport.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from fedlearn import __version__
from fedlearn.errors import ConfigError, FedlearnError, PeerUnavailable, counted
from fedlearn.transport import exit_code_for
from fedlearn.transport.errors import EXIT_USAGE

DEFAULT_CONFIG = "a.toml"
EXIT_INTERRUPTED = 130
#: The reader of stdout went away (``fedlearn models | head -1``): 128 + SIGPIPE, as a shell says.
EXIT_BROKEN_PIPE = 141


class _UsageError(Exception):
    """A command line argparse refuses, raised instead of argparse's exit (to answer in JSON)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too) whose usage errors ``main`` reports."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def _error_document(kind: str, message: str, code: int, job_id: str = "") -> dict[str, Any]:
    """What ``--json`` prints on stdout for an error: ``{"error": {type, message, exit_code}}``
    (and ``job_id`` when the error is about a job the command started or followed)."""
    error: dict[str, Any] = {"type": kind, "message": message, "exit_code": code}
    if job_id:
        error["job_id"] = job_id
    return {"error": error}


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    given = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(given)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        if "--json" in given:  # a script reads why from stdout, whatever the mistake
            _print_json(_error_document("UsageError", exc.message, EXIT_USAGE))
        sys.exit(EXIT_USAGE)
    args.json = getattr(args, "json", False)  # given before the command, after it, or not at all
    try:
        code = args.handler(args)
    except FedlearnError as exc:
        print(f"fedlearn: error: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
        if args.json:  # a script reads why from stdout too
            job_id = getattr(exc, "job_id", "")
            _print_json(_error_document(type(exc).__name__, str(exc), code, job_id))
    except KeyboardInterrupt:
        print("fedlearn: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
        if args.json:
            _print_json(_error_document("Interrupted", "interrupted (Ctrl-C)", code))
    except BrokenPipeError:
        # Quietly, as other command-line tools: no traceback, and no second error when Python
        # flushes stdout at exit. A followed job runs on at A's node (``fedlearn jobs``).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


class VersionAction(argparse.Action):
    """``--version``: fedlearn's version and which encryption kernel runs here (imported only when
    asked: the crypto modules would slow every command's start)."""

    def __init__(self, option_strings: list[str], dest: str, prog_name: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        kwargs.setdefault("help", "show the version and the encryption kernel, then exit")
        super().__init__(option_strings, dest, **kwargs)
        self.prog_name = prog_name

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from fedlearn.crypto.matvec import kernel_description

        print(f"{self.prog_name} {__version__}; encryption kernel: {kernel_description()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedlearn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action=VersionAction, prog_name="fedlearn")
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result (or the error) as one JSON document on stdout (also accepted "
        "after the command)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="A's node config, for the commands that talk to A's node (also accepted after the "
        "command)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # An action under `jobs` or `models` must not reset the options given before it with its own
    # defaults (argparse copies a subparser's defaults over its parent's values): SUPPRESS them.
    def command(
        parent: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text
        )
        sub.add_argument(
            "--json",
            action="store_true",
            # SUPPRESS: a --json given before the command is kept (main defaults it to False).
            default=argparse.SUPPRESS,
            help="print the result as one JSON document on stdout (progress stays on stderr)",
        )
        sub.set_defaults(handler=handler)
        return sub

    def node_command(
        parent: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = command(parent, name, help_text, handler)
        sub.add_argument(
            "--config",
            type=Path,
            # SUPPRESS everywhere: a --config given before the command (or before a nested
            # action) is kept, not reset to a default by the command's own parser.
            default=argparse.SUPPRESS,
            help=f"A's node config (default: $FEDLEARN_CONFIG, else ./{DEFAULT_CONFIG})",
        )
        return sub

    certs = command(commands, "certs", "a development CA and one certificate per party", _certs)
    certs.add_argument("--out", required=True, type=Path, help="folder for the CA and certificates")
    certs.add_argument("--parties", default="party-a,party-b", help="comma-separated party names")
    certs.add_argument("--force", action="store_true", help="replace an existing CA")
    certs.add_argument(
        "--add",
        action="store_true",
        help="issue certificates for more parties with the CA already in --out",
    )

    datasets = commands.add_parser("datasets", help="synthetic data sets")
    kinds = datasets.add_subparsers(dest="kind", required=True, metavar="KIND")
    vip = command(
        kinds, "make-vip", "the synthetic 30-day VIP data set, with node configs", _make_vip
    )
    vip.add_argument("--rows", type=int, default=50000, help="users to generate (default 50000)")
    vip.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    vip.add_argument("--out", required=True, type=Path, help="folder to write the demo into")

    align = node_command(
        commands, "align", "private set intersection with B; prints the set sizes", _align
    )
    align.add_argument("--dataset", required=True, help="A's dataset name")
    align.add_argument("--peer-dataset", default="", help="B's dataset name (default: the same)")

    train = node_command(
        commands, "train", "start a training job at A's node and follow it (a job id)", _train
    )
    what_to_train = train.add_mutually_exclusive_group(required=True)
    what_to_train.add_argument("--job", type=Path, help="the job file (TOML)")
    what_to_train.add_argument(
        "--resume",
        metavar="JOB_ID",
        help="continue an interrupted or failed job from the last epoch both nodes hold",
    )
    train.add_argument("--detach", action="store_true", help="print the job id and return at once")
    train.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="Ctrl-C cancels the job (default: Ctrl-C stops following, the job runs on)",
    )

    jobs = node_command(commands, "jobs", "list A's jobs with their state and progress", _jobs)
    job_commands = jobs.add_subparsers(dest="action", metavar="ACTION")
    show = node_command(
        job_commands, "show", "one job's record: state, phases, timings, error", _job_show
    )
    show.add_argument("job_id", metavar="ID", help="the job id (see `fedlearn jobs`)")
    cancel = node_command(
        job_commands,
        "cancel",
        "stop a job at its next batch at both nodes; nothing is saved",
        _job_cancel,
    )
    cancel.add_argument("job_id", metavar="ID", help="the job id (see `fedlearn jobs`)")
    cancel.add_argument("--wait", action="store_true", help="return once the job has stopped")
    logs = node_command(job_commands, "logs", "a job's event log at A's node", _job_logs)
    logs.add_argument("job_id", metavar="ID", help="the job id (see `fedlearn jobs`)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    watch = node_command(
        job_commands, "watch", "follow a running job's progress (reattach)", _job_watch
    )
    watch.add_argument("job_id", metavar="ID", help="the job id (see `fedlearn jobs`)")
    watch.add_argument("--cancel-on-interrupt", action="store_true", help="Ctrl-C cancels the job")

    score = node_command(
        commands, "score", "score new users in batch (CSV or Parquet, by extension)", _score
    )
    score.add_argument("--model", required=True, help="the model id (see `fedlearn models`)")
    score.add_argument("--input", required=True, type=Path, help="the users to score")
    score.add_argument("--output", required=True, type=Path, help="where to write the scores")

    models = node_command(commands, "models", "list A's models with their metrics", _models)
    model_commands = models.add_subparsers(dest="action", metavar="ACTION")
    model_show = node_command(
        model_commands, "show", "one model's metrics, job and rows", _model_show
    )
    model_show.add_argument("model_id", metavar="ID", help="the model id (see `fedlearn models`)")
    model_delete = node_command(
        model_commands, "delete", "delete a model at A and its shard at B", _model_delete
    )
    model_delete.add_argument("model_id", metavar="ID", help="the model id (see `fedlearn models`)")
    model_delete.add_argument(
        "--local-only",
        action="store_true",
        help="delete A's copy without asking B (B's shard stays at B); without it, nothing is "
        "deleted while B cannot be reached",
    )

    model_prune = node_command(
        model_commands,
        "prune",
        "delete all but the newest models of each dataset (at A and B), e.g. after nightly runs",
        _model_prune,
    )
    model_prune.add_argument(
        "--keep", type=int, required=True, help="how many of each dataset's newest models to keep"
    )
    model_prune.add_argument("--dataset", default="", help="only this dataset's models")
    model_prune.add_argument(
        "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
    )

    report = node_command(
        commands, "report", "write the HTML report of a model or of a scoring run", _report
    )
    what = report.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a model id: the decision report of its validation")
    what.add_argument("--scores", type=Path, help="a scoring run's output file: its report")
    report.add_argument("--out", required=True, type=Path, help="folder for report.html")
    return parser


def _print_json(document: Any) -> None:
    """One strict JSON document on stdout: a value that is not finite (a loss or an ETA not known
    yet) is ``null``, since NaN is not JSON and strict parsers (JavaScript, Go) refuse it."""
    print(json.dumps(_finite(document), indent=1, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


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
    from fedlearn.certs import ca_fingerprint

    pin = ca_fingerprint(args.out / "ca.pem")
    if args.json:
        _print_json(
            {**{name: str(path) for name, path in sorted(paths.items())}, "ca_fingerprint": pin}
        )
        return 0
    for name, path in sorted(paths.items()):
        print(f"{name:24s} {path}")
    print(f"CA fingerprint           {pin}")
    print("pin it for each partner in the other node's config, e.g. in B's b.toml:")
    print(f'  [tls.pins]\n  {parties[0]} = "{pin}"')
    return 0


def _make_vip(args: argparse.Namespace) -> int:
    from fedlearn.scaffold import write_vip_demo

    demo = write_vip_demo(args.out, rows=args.rows, seed=args.seed)
    if args.json:
        _print_json(
            {
                "root": str(demo.root),
                "data": str(demo.data.out_dir),
                "a_config": str(demo.a_config),
                "b_config": str(demo.b_config),
                "job": str(demo.job),
                "new_users": str(demo.data.a_new_users_csv),
            }
        )
        return 0
    for line in demo.describe():
        print(line)
    return 0


# ---- commands that talk to A's node --------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from fedlearn.client import Client

    return Client(getattr(args, "config", None))


def _align(args: argparse.Namespace) -> int:
    from fedlearn.progress_view import ProgressView

    view = ProgressView()
    with _client(args) as client:
        try:
            result = client.align(args.dataset, args.peer_dataset, progress=view.show)
        finally:
            view.close()
    if args.json:
        _print_json(asdict(result))
        return 0
    print(f"A ({args.dataset}): {result.own_size} IDs")
    print(f"B ({args.peer_dataset or args.dataset}): {result.peer_size} IDs")
    print(f"intersection: {result.intersection_size} IDs ({result.seconds:.1f} s)")
    if not result.intersection_size and result.own_size and result.peer_size:
        print(
            "no IDs in common: both sides must write the same IDs the same way (white space is "
            "stripped, case and leading zeros are kept); A's node log says how A's IDs look"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.resume_train(args.resume) if args.resume else client.submit_train(args.job)
        if args.detach:
            if args.json:
                _print_json(job.to_json())
            else:
                print(job.job_id)
                print(
                    f"follow it with `fedlearn jobs watch {job.job_id}`, "
                    f"cancel it with `fedlearn jobs cancel {job.job_id}`",
                    file=sys.stderr,
                )
            return 0
        started = "resumed" if args.resume else "started"
        print(f"job {job.job_id} {started} at {client.label}", file=sys.stderr)
        return _follow(client, job.job_id, args)


def _follow(client: Any, job_id: str, args: argparse.Namespace) -> int:
    """Watch a job to its end with a progress view; Ctrl-C detaches (or cancels, when asked)."""
    from fedlearn.client import job_error
    from fedlearn.progress_view import ProgressView

    view = ProgressView()
    try:
        record = client.watch(job_id, progress=view.show)
    except PeerUnavailable as exc:  # A's node went away while we followed its job
        gone = PeerUnavailable(
            f"{exc}; once A's node runs again, `fedlearn jobs show {job_id}` says where job "
            f"{job_id} stands and `fedlearn train --resume {job_id}` continues it from its last epoch"
        )
        gone.job_id = job_id  # type: ignore[attr-defined]  # for --json's error document
        raise gone from None
    except KeyboardInterrupt:
        view.close()
        if not args.cancel_on_interrupt:
            message = (
                f"stopped following; job {job_id} runs on at A's node. Reattach with "
                f"`fedlearn jobs watch {job_id}`, cancel with `fedlearn jobs cancel {job_id}`"
            )
            print(f"\nfedlearn: {message}", file=sys.stderr)
            if args.json:
                _print_json(_error_document("Interrupted", message, EXIT_INTERRUPTED, job_id))
            return EXIT_INTERRUPTED
        client.cancel(job_id)
        print(f"\nfedlearn: cancelling job {job_id} ...", file=sys.stderr)
        record = client.watch(job_id)
        print(f"fedlearn: job {job_id} {record.state}", file=sys.stderr)
        if args.json:
            _print_json({**record.to_json(), "exit_code": EXIT_INTERRUPTED})
        return EXIT_INTERRUPTED
    finally:
        view.close()
    if args.json and record.state != "succeeded":
        # One document on stdout: the job's record with the exit code (not a second, error one).
        error = job_error(record)
        print(f"fedlearn: error: {error}", file=sys.stderr)
        code = exit_code_for(error)
        _print_json({**record.to_json(), "exit_code": code})
        return code
    if args.json:
        _print_json(record.to_json())
    if record.state != "succeeded":
        raise job_error(record)
    if not args.json:
        for line in format_training_summary(record.summary):
            print(line)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        records = client.jobs()
    if args.json:
        _print_json([r.to_json() for r in records])
        return 0
    if not records:
        print("no jobs yet")
        return 0
    print(f"{'job id':26s} {'state':11s} {'created':20s} {'progress':28s} model / error")
    for record in records:
        print(
            f"{record.job_id:26s} {record.state:11s} {record.created_at:20s} "
            f"{_progress_text(record):28s} {record.model_id or _first_line(record.error)}"
        )
    return 0


def _progress_text(record: Any) -> str:
    progress = record.progress or {}
    epochs = (record.summary or {}).get("epochs_completed")
    if record.state == "succeeded" and epochs:
        return f"done, {counted(epochs, 'epoch')}"  # not its last phase's name
    text = str(progress.get("phase", "-"))
    if progress.get("epochs"):
        text += f" epoch {progress.get('epoch')}/{progress.get('epochs')}"
    if progress.get("batches") and not record.finished:
        text += f" batch {progress.get('batch')}/{progress.get('batches')}"
    return text


def _first_line(text: str, width: int = 60) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _job_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        record = client.job(args.job_id)
    if args.json:
        _print_json(record.to_json())
        return 0
    print(f"job:       {record.job_id} ({record.kind})")
    print(f"state:     {record.state}{' (cancel requested)' if record.cancel_requested else ''}")
    print(f"dataset:   {record.dataset or '-'}    job file: {record.job_path or '-'}")
    print(
        f"created:   {record.created_at}  started: {record.started_at or '-'}  "
        f"finished: {record.finished_at or '-'}"
    )
    print(f"progress:  {_progress_text(record)}")
    for phase in record.phases:
        print(
            f"  {phase['phase']:14s} from {phase['started_at']}  {phase.get('seconds', 0):8.1f} s"
        )
    if record.model_id:
        print(f"model:     {record.model_id}")
    if record.error:
        print(f"error:     {record.error}")
    return 0


def _job_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        record = client.cancel(args.job_id)
        if args.wait and not record.finished:
            record = client.watch(args.job_id)
    if args.json:
        _print_json(record.to_json())
    elif record.finished:
        print(f"job {record.job_id} {record.state}" + (f": {record.error}" if record.error else ""))
    else:
        when = "at its next batch" if record.started_at else "before it starts (it was queued)"
        print(f"job {record.job_id} {record.state}: it stops {when}")
    return 0


def _job_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.json and not args.follow:
            _print_json(list(client.logs(args.job_id)))
            return 0
        try:  # with --json and --follow: JSON Lines, one string per log line as it comes
            for line in client.logs(args.job_id, follow=args.follow):
                print(json.dumps(line) if args.json else line, flush=True)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return 0


def _job_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _follow(client, args.job_id, args)


def _score(args: argparse.Namespace) -> int:
    from fedlearn.progress_view import ProgressView

    view = ProgressView()
    with _client(args) as client:
        try:
            result = client.score(args.model, args.input, args.output, progress=view.show)
        finally:
            view.close()
    if args.json:
        _print_json(
            {
                **asdict(result),
                "output_path": str(result.output_path),
                "model_id": args.model,
                # Users per model, for a script (``summary`` says it in words).
                "scored_by": {"joint": result.matched, "a_only": result.rows - result.matched},
            }
        )
        return 0
    rate = result.rows / result.seconds if result.seconds > 0 else math.nan
    print(
        f"scored {result.rows} users ({result.matched} known to the partner) in "
        f"{result.seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    if result.summary:
        print(result.summary)
    print(f"scores: {result.output_path}")
    return 0


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models()
        where = client.config.model_dir
    if args.json:
        _print_json([asdict(m) for m in models])
        return 0
    if not models:
        print(f"no models yet in {where}")
        return 0
    print(
        f"{'model id':34s} {'created':20s} {'joint AUC':>9s} {'A-only':>7s} "
        f"{'epochs':>6s} {'lr':>7s} {'batch':>6s} {'val rows':>8s}"
    )
    for model in models:
        if model.summary.get("damaged"):
            print(f"{model.model_id:34s} DAMAGED: {model.summary['damaged']}")
            continue
        peer_shard = str(model.summary.get("peer_shard", ""))
        if peer_shard == "missing":
            print(f"{model.model_id:34s} UNUSABLE: the partner no longer holds its shard (deleted)")
            continue
        if peer_shard.startswith("damaged"):
            print(f"{model.model_id:34s} DAMAGED AT THE PARTNER: {peer_shard[9:]}")
            continue
        job = model.summary.get("job", {})
        rows = model.summary.get("rows", {})
        print(
            f"{model.model_id:34s} {model.created_at:20s} {_fmt(model.metric('auc')):>9s} "
            f"{_fmt(model.metric('auc', 'a_only')):>7s} "
            f"{model.summary.get('epochs_completed', '-')!s:>6s} "
            f"{_fmt(job.get('learning_rate'), 4):>7s} {job.get('batch_size', '-')!s:>6s} "
            f"{rows.get('validation', '-')!s:>8s}"
        )
        if peer_shard.startswith("unknown"):
            print(f"{'':34s} (partner's shard not checked)")
    shards = (str(m.summary.get("peer_shard", "")) for m in models)
    # Why, once (B down: the same reason for every model), not under each model.
    for why in sorted({p.removeprefix("unknown: ") for p in shards if p.startswith("unknown: ")}):
        print(f"partner's shards not checked: {why}", file=sys.stderr)
    return 0


def _model_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.model(args.model_id)
    if args.json:
        _print_json(asdict(model))
        return 0
    print(f"created: {model.created_at}")
    for line in format_training_summary(model.summary):
        print(line)
    job = model.summary.get("job", {})
    if job:
        print("job: " + ", ".join(f"{k}={v}" for k, v in job.items() if not isinstance(v, dict)))
    return 0


def _model_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.delete_model(args.model_id, local_only=args.local_only)
    if args.json:
        _print_json(asdict(result))
        return 0
    print(f"deleted model {result.model_id} at A")
    if result.peer_had_none:
        print("B held no shard of it")
    elif result.peer_deleted:
        print("B deleted its shard")
    else:
        print(f"warning: {result.peer_error}", file=sys.stderr)
    return 0


def prune_plan(models: list[Any], keep: int, dataset: str = "") -> tuple[list[Any], list[Any]]:
    """(kept, to delete) among ``models`` (``ModelInfo``): per dataset, the ``keep`` newest by
    creation time are kept. A model that cannot be read (no creation time) is neither: it is
    listed by `fedlearn models` with its reason and deleted only by name."""
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1 (got {keep}); `models delete ID` deletes one")
    groups: dict[str, list[Any]] = {}
    for model in models:
        if not model.created_at:
            continue
        name = str(model.summary.get("dataset") or "")
        if not dataset or name == dataset:
            groups.setdefault(name, []).append(model)
    kept: list[Any] = []
    doomed: list[Any] = []
    for group in groups.values():
        group.sort(key=lambda m: (m.created_at, m.model_id), reverse=True)
        kept += group[:keep]
        doomed += group[keep:]
    return kept, doomed


def _model_prune(args: argparse.Namespace) -> int:
    deleted: list[dict[str, Any]] = []
    with _client(args) as client:
        kept, doomed = prune_plan(client.models(), args.keep, args.dataset)
        if not args.dry_run:
            # One at a time, B's shard first (as `models delete`): B unreachable stops the prune
            # with what was deleted so far said, and nothing half-deleted.
            for model in doomed:
                deleted.append(asdict(client.delete_model(model.model_id)))
                if not args.json:
                    print(f"deleted {model.model_id} (created {model.created_at})")
    if args.json:
        _print_json(
            {
                "kept": [m.model_id for m in kept],
                "deleted": deleted,
                "would_delete": [m.model_id for m in doomed] if args.dry_run else [],
                "dry_run": args.dry_run,
            }
        )
        return 0
    if args.dry_run:
        for model in doomed:
            print(f"would delete {model.model_id} (created {model.created_at})")
    verb = "would delete" if args.dry_run else "deleted"
    print(f"kept {counted(len(kept), 'model')}; {verb} {len(doomed)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.scores is not None:
            if not args.scores.is_file():
                raise ConfigError(f"{args.scores}: no such scores file")
            path = client.scores_report(args.scores, args.out)
        else:
            path = client.report(args.model, args.out)
    if args.json:
        _print_json({"path": str(path)})
    else:
        print(f"report: {path}")
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
        labels = {
            key: f"{name} ({'lower' if key in LOWER_IS_BETTER else 'higher'} is better)"
            for key, name in METRIC_ROWS
        }
        width = max(len("validation metric"), *(len(label) for label in labels.values()))
        lines.append(f"{'validation metric':{width}s} {'joint':>8s} {'A only':>8s} {'better':>8s}")
        for key, label in labels.items():
            j, a = joint.get(key), a_only.get(key)
            lines.append(
                f"{label:{width}s} {_fmt(j):>8s} {_fmt(a):>8s} {better_model(key, j, a):>8s}"
            )
    stopped = summary.get("stopped")
    if stopped:
        lines.append(f"training stopped: {stopped.get('message', stopped.get('reason'))}")
    lines.extend(f"note: {note}" for note in summary.get("notes", []))
    history = summary.get("loss_history", [])
    if history:
        changes = [h.get("score_change") for h in history]
        if all(isinstance(c, (int, float)) for c in changes):
            lines.append(
                "score change per epoch (RMS logit; converged when under the tolerance): "
                + ", ".join(f"{c:.4f}" for c in changes)
            )
        losses = ", ".join(f"{h['loss']:.4f}" for h in history)
        lines.append(
            "loss bound per epoch (a quadratic upper bound of the log loss: it can rise while the "
            f"model improves, as B's scores grow; judge the model by the validation metrics): {losses}"
        )
    timings = summary.get("timings", {})
    if timings:
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return lines


if __name__ == "__main__":
    main()
