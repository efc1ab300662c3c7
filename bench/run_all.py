"""Run every benchmark of issue 5 and write bench/results/summary.md (``make bench``).

    python -m bench.run_all [--quick] [--only default_credit phe_speedup ...]

Each benchmark runs in its own process, one after the other (they would otherwise compete for the
machine's 2 cores), prints its markdown tables and writes ``bench/results/<name>.json``. The summary
collects the tables and a targets table; every ratio in it was measured within one benchmark's run.
``--quick`` passes ``--quick`` to each: a short smoke run, not for quoting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.nodes import RESULTS
from bench.training import machine

#: Each benchmark's arguments for a full run and for a quick smoke run.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "crypto": ([], ["--bits", "1024", "--repeats", "1"]),
    "psi": ([], ["--rows", "20000", "--repeats", "1"]),
    "default_credit": ([], ["--quick"]),
    "phe_speedup": ([], ["--quick"]),
    "fate_shape": ([], ["--quick"]),
    "bound": ([], ["--quick"]),
    "score": (["--transport", "nodes"], ["--transport", "nodes", "--rows", "20000"]),
    "memory": ([], ["--quick"]),
    # Ray against the process pool, and the cost model checked here (docs/scaling.md).
    "ray_overhead": ([], ["--quick"]),
    "cost_model": (["--check", "--check-kernels", "--check-nodes"], ["--quick", "--check-kernels"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args()
    sections, targets, failures = [], [], []
    for name in args.only:
        full, quick = BENCHMARKS[name]
        command = [sys.executable, "-m", f"bench.{name}", *(quick if args.quick else full)]
        print(f"== {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        print(result.stdout, flush=True)
        if result.returncode != 0:
            failures.append(name)
            print(result.stderr[-3000:], file=sys.stderr, flush=True)
            sections.append(f"## {name}\n\nFAILED (exit {result.returncode}) after {seconds:.0f} s")
            continue
        output = RESULTS / f"{name}{'_quick' if args.quick else ''}.json"
        if output.exists():
            targets += json.loads(output.read_text()).get("targets", [])
        tables = result.stdout.rsplit("results:", 1)[0].strip()
        sections.append(f"## {name} ({seconds:.0f} s)\n\n{tables}")
    info = machine()
    lines = [
        "# Benchmark summary" + (" (quick smoke run: not for quoting)" if args.quick else ""),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {info['cpus']} CPUs (shared), "
        f"load average at the end {', '.join(f'{v:.1f}' for v in info['load_average'])}; "
        f"Python {info['python']}; {info['platform']}",
        "",
        "| benchmark | target | measured | met |",
        "| --- | --- | --- | --- |",
        *(
            f"| {t['benchmark']} | {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |"
            for t in targets
        ),
        "",
        *(f"{section}\n" for section in sections),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("summary_quick.md" if args.quick else "summary.md")
    path.write_text("\n".join(lines))
    print(f"summary: {path}")
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
