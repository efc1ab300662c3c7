"""Seconds per epoch of two or more source trees, run in turn on the same data through both nodes.

    python -m bench.epoch_compare --tree old=/tmp/old --tree new=. [--rows 5000] [--epochs 10]
        [--rounds 2] [--pin]

Each tree is a checkout of the project (``git archive <commit> | tar -x -C /tmp/old``); its own code
runs the job (``PYTHONPATH`` = the tree, the same virtual environment). Trees are run in turn, round
after round (old, new, old, new, ...), so a change of load on a shared machine hits both alike; the
table gives each tree's median and the ratio of medians to the first tree, with the load average
sampled during each run.

- Per epoch: A's training loop (the sum of its phases) divided by the epochs, as bench/default_credit
  reports it; with ``--rows`` the first rows of default_credit's A file (the per-epoch work is
  proportional to the training rows, so ratios carry over to the full file).
- CPU seconds: user + system time of each node's process tree (the node and its helper processes),
  sampled every half second, over the whole job (key generation and PSI included): load-independent,
  and it says which node does the most work.
- The C kernel (``fedlearn/crypto/_fixedbase.c``): a ``git archive`` export holds its source, not
  the built module, so each tree's kernel is built in place as its pyproject.toml declares it, and
  the kernel each tree runs is printed (a tree from before the kernel runs the Python tables).
- ``--pin``: A's node and its helpers on core 0, B's on core 1 (``sched_setaffinity`` on every
  thread, re-applied every half second so new threads and helpers follow): closer to two machines
  than two processes sharing two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from bench.default_credit import A_DATA, B_DATA, subsample
from bench.nodes import save

#: Runs in each tree's own code: one job through both nodes, A's per-epoch phases as JSON.
RUNNER = """
import json, sys
from pathlib import Path
from bench.training import Job, per_epoch, train_through_nodes
root, a_data, b_data, epochs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
epochs = epochs if epochs == "auto" else int(epochs)
(meta,) = train_through_nodes(root, a_data, b_data, [Job(epochs=epochs, key_bits=2048)])
print(json.dumps({"per_epoch": per_epoch(meta), "auc": meta["metrics"]["joint"]["auc"],
                  "epochs": meta["epochs_completed"], "wall": meta["bench_wall_s"],
                  "stop": meta.get("stopped"), "train_rows": meta["rows"]["train"],
                  "history": [{"refreshed": r.get("refreshed"), "seconds": r.get("seconds")}
                              for r in meta["loss_history"]]}))
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds) for every readable process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        found[int(entry)] = (int(fields[1]), cmdline, cpu)
    return found


class NodeWatch:
    """Follows both nodes of a run (found by their config path under ``root``): CPU seconds of each
    node's process tree, the load average, and with ``pin`` each tree's core."""

    def __init__(self, root: Path, pin: bool) -> None:
        self.root, self.pin = str(root), pin
        self.cpu: dict[str, dict[int, float]] = {"a": {}, "b": {}}
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> NodeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.loads.append(os.getloadavg()[0])
            processes = _processes()
            for role, core in (("a", 0), ("b", 1)):
                marker = f"party_{role}.main serve --config {self.root}"
                roots = {pid for pid, (_, cmd, _) in processes.items() if marker in cmd}
                for pid in _descendants(roots, processes):
                    self.cpu[role][pid] = processes[pid][2]
                    if self.pin:
                        _pin(pid, core)

    def cpu_seconds(self, role: str) -> float:
        return sum(self.cpu[role].values())


def _descendants(roots: set[int], processes: dict[int, tuple[int, str, float]]) -> set[int]:
    found = set(roots)
    grew = True
    while grew:
        more = {pid for pid, (parent, _, _) in processes.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _pin(pid: int, core: int) -> None:
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(task), {core})
    except OSError:
        pass  # the process or thread ended meanwhile


def run_tree(tree: Path, a_data: Path, b_data: Path, epochs: str, pin: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    with NodeWatch(root, pin) as watch:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, str(root), str(a_data), str(b_data), str(epochs)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"run in {tree} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_a"], result["cpu_b"] = watch.cpu_seconds("a"), watch.cpu_seconds("b")
    result["load"] = statistics.mean(watch.loads) if watch.loads else os.getloadavg()[0]
    return result


def markdown(runs: dict[str, list[dict[str, Any]]], pin: bool, rows: int | None) -> str:
    first = next(iter(runs))
    base = statistics.median(r["per_epoch"]["epoch"] for r in runs[first])
    lines = [
        f"default_credit{f' (first {rows:,} rows)' if rows else ''}, 2048-bit keys, batch 1024, "
        f"{'A pinned to core 0, B to core 1' if pin else 'unpinned'}",
        "",
        "| tree | s per epoch, each run (load) | median | / first | encryption (A) | "
        "waiting on B | CPU-s A | CPU-s B | AUC |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, results in runs.items():
        each = ", ".join(f"{r['per_epoch']['epoch']:.2f} ({r['load']:.1f})" for r in results)
        median = statistics.median(r["per_epoch"]["epoch"] for r in results)
        enc = statistics.median(r["per_epoch"]["encryption"] for r in results)
        wait = statistics.median(r["per_epoch"]["network"] for r in results)
        cpu_a = statistics.median(r["cpu_a"] for r in results)
        cpu_b = statistics.median(r["cpu_b"] for r in results)
        auc = statistics.median(r["auc"] for r in results)
        lines.append(
            f"| {name} | {each} | {median:.2f} | {median / base:.2f} | {enc:.2f} | {wait:.2f} "
            f"| {cpu_a:.1f} | {cpu_b:.1f} | {auc:.4f} |"
        )
    return "\n".join(lines)


def build_kernel(tree: Path) -> str:
    """Build the tree's C kernel in place (a ``git archive`` export has its source, not the built
    module) as its pyproject.toml declares it; returns the kernel the tree's code will run."""
    pyproject = tree / "pyproject.toml"
    declared = []
    if pyproject.is_file():
        with pyproject.open("rb") as file:
            setuptools_config = tomllib.load(file).get("tool", {}).get("setuptools", {})
        declared = setuptools_config.get("ext-modules", [])
    for module in declared:
        options = {key.replace("-", "_"): value for key, value in module.items()}
        script = (
            "import ast, sys\n"
            "from setuptools import Distribution, Extension\n"
            "from setuptools.command.build_ext import build_ext\n"
            "command = build_ext(Distribution({'ext_modules': [Extension(**ast.literal_eval(sys.argv[1]))]}))\n"
            "command.inplace = True\n"
            "command.ensure_finalized()\n"
            "command.run()\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, repr(options)],
            cwd=tree,
            check=False,
            capture_output=True,
        )
    probe = (
        "try:\n"
        "    from fedlearn.crypto.matvec import kernel_description\n"
        "    print(kernel_description())\n"
        "except ImportError:\n"
        "    print('Python (before the C kernel)')\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or f"unknown ({found.stderr.strip()[-200:]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH, in order")
    parser.add_argument("--rows", type=int, default=None, help="first rows of A's file")
    parser.add_argument(
        "--epochs", default="10", help='a whole number, or "auto": the job defaults'
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pin", action="store_true", help="A on core 0, B on core 1")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    a_data, b_data = A_DATA, B_DATA
    if args.rows:
        a_data, b_data = subsample(Path(tempfile.mkdtemp(prefix="bench-rows-")), args.rows)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    kernels = {name: build_kernel(Path(path)) for name, path in trees.items()}
    for name, kernel in kernels.items():
        print(f"{name}: encryption kernel {kernel}", flush=True)
    for round_ in range(args.rounds):
        for name, path in trees.items():
            started = time.strftime("%H:%M:%S", time.gmtime())
            result = run_tree(Path(path), a_data, b_data, args.epochs, args.pin)
            runs[name].append(result)
            print(
                f"round {round_ + 1} {name} (start {started} UTC): "
                f"{result['per_epoch']['epoch']:.2f} s/epoch, load {result['load']:.1f}, "
                f"CPU-s A {result['cpu_a']:.1f} B {result['cpu_b']:.1f}, AUC {result['auc']:.4f}",
                flush=True,
            )
    table = markdown(runs, args.pin, args.rows)
    print(table)
    suffix = "_pinned" if args.pin else ""
    print(
        f"results: {save('epoch_compare' + suffix, {'runs': runs, 'kernels': kernels, 'table': table})}"
    )


if __name__ == "__main__":
    main()
