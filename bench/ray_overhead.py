"""Ray's overhead against the process pool at equal workers, per kernel and for a training epoch.

    python -m bench.ray_overhead [--bits 2048] [--repeats 5] [--rows 4096] [--quick]

Each kernel runs the same work on a ``ProcessExecutor`` and on a ``RayExecutor`` (a local Ray with
``num_cpus`` = workers), taken in turn, after one uncounted warm-up on each (the workers build
their DJN tables then); medians of ``--repeats``; the ratio Ray / pool is taken within this run.
Then one training epoch (in memory: both parties in this process, each with its own executor of
the same kind; synthetic data, ``--rows`` rows, A 10 columns + label, B 40, batch 1024, 2048-bit
keys) on the pool and on Ray with 2 workers, and on Ray with 1 worker for the speed-up from 1 to 2
(medians of ``--epoch-repeats``, default 5: single epochs spread by 10-20%).
Both kinds fill the obfuscator pools on their workers (``background="executor"``) and are
started and warm before the epoch. The load average is printed before and after: this machine is
shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.nodes import save
from bench.training import LOOP_PHASES, machine
from fedlearn.config import DatasetSpec
from fedlearn.crypto.executor import Executor, ProcessExecutor
from fedlearn.crypto.keys import KeyPair, generate_keypair
from fedlearn.crypto.packing import packing_layout
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.psi import PsiKey, session_salt
from fedlearn.crypto.ray_executor import RayExecutor
from fedlearn.data import load_party_table
from fedlearn.job import parse_job
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.train import train
from party_b.node import NodeB

WORKERS = 2
A_COLUMNS, B_COLUMNS = 10, 40


def load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


# ---- kernels ------------------------------------------------------------------------------------


def kernels(keypair: KeyPair, psi_ids: int) -> dict[str, tuple[str, Callable[[Executor], Any]]]:
    """name -> (what one run does, run(executor)); every run has the same inputs."""
    n = keypair.public_key.n
    generator = np.random.default_rng(0)
    with OwnKeyEngine(keypair) as plain:
        ciphertexts = plain.encrypt(generator.integers(0, 1 << 30, size=1024).tolist())
    x_wide = generator.integers(-128, 128, size=(1024, 30))
    x_narrow = generator.integers(-128, 128, size=(1024, 1))
    exponents = generator.integers(0, 1 << 14, size=1024).tolist()
    layout = packing_layout(n, value_bound_bits=48)
    psi_key = PsiKey.generate()
    salt = session_salt(b"a" * 16, b"b" * 16)
    ids = [f"user-{i}" for i in range(psi_ids)]
    engines: dict[int, OwnKeyEngine] = {}

    def own(executor: Executor) -> OwnKeyEngine:
        # One engine per executor, kept: its workers keep the DJN tables between runs.
        if id(executor) not in engines:
            engines[id(executor)] = OwnKeyEngine(keypair, executor=executor)
        return engines[id(executor)]

    def peer(executor: Executor) -> PeerKeyEngine:
        return PeerKeyEngine(keypair.public_key, djn_base=None, executor=executor)

    return {
        "obfuscators": ("2,048 DJN obfuscators", lambda e: own(e)._obfuscators_now(2048)),
        "matvec_columns": (
            "X^T [[d]], 1,024 x 30 8-bit (column blocks)",
            lambda e: peer(e).matvec_t(x_wide, ciphertexts),
        ),
        "matvec_row_slabs": (
            "X^T [[d]], 1,024 x 1 8-bit (row slabs)",
            lambda e: peer(e).matvec_t(x_narrow, ciphertexts),
        ),
        "residual_powers": (
            "1,024 powers, 14-bit exponents",
            lambda e: peer(e).scale(ciphertexts, exponents),
        ),
        "packing": (
            f"pack and re-randomise 300 values ({layout.ciphertext_count(300)} ciphertexts)",
            lambda e: peer(e).pack_masked(ciphertexts[:300], layout),
        ),
        "decryption": ("decrypt 256 ciphertexts", lambda e: own(e).decrypt(ciphertexts[:256])),
        "psi_blinding": (
            f"hash and blind {psi_ids:,} IDs",
            lambda e: psi_key.blind_ids(ids, salt, executor=e),
        ),
    }


def time_kernels(keypair: KeyPair, repeats: int, psi_ids: int) -> dict[str, dict[str, Any]]:
    table = kernels(keypair, psi_ids)
    results: dict[str, dict[str, Any]] = {}
    with ProcessExecutor(WORKERS) as pool, RayExecutor(WORKERS) as on_ray:
        for name, (what, run) in table.items():
            times: dict[str, list[float]] = {"pool": [], "ray": []}
            for executor in (pool, on_ray):
                run(executor)  # warm-up: workers import, build tables
            for _ in range(repeats):
                for label, executor in (("pool", pool), ("ray", on_ray)):
                    started = time.perf_counter()
                    run(executor)
                    times[label].append(time.perf_counter() - started)
            pool_s, ray_s = statistics.median(times["pool"]), statistics.median(times["ray"])
            results[name] = {
                "what": what,
                "pool_s": pool_s,
                "ray_s": ray_s,
                "ratio": ray_s / pool_s,
            }
            print(f"  {name}: pool {pool_s:.3f} s, Ray {ray_s:.3f} s ({ray_s / pool_s:.2f}x)")
    return results


# ---- one training epoch in memory ---------------------------------------------------------------


def make_data(root: Path, rows: int, seed: int = 0) -> tuple[DatasetSpec, DatasetSpec]:
    """A (id, y, 10 columns) and B (id, 40 columns), standard normal, a latent logistic label."""
    rng = np.random.default_rng(seed)
    x_a, x_b = rng.standard_normal((rows, A_COLUMNS)), rng.standard_normal((rows, B_COLUMNS))
    score = x_a @ rng.standard_normal(A_COLUMNS) / 3 + x_b @ rng.standard_normal(B_COLUMNS) / 6
    y = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(np.int64)
    ids = [f"u{i:07d}" for i in range(rows)]
    a = pd.DataFrame(x_a, columns=[f"a{j}" for j in range(A_COLUMNS)])
    a.insert(0, "y", y)
    a.insert(0, "id", ids)
    b = pd.DataFrame(x_b, columns=[f"b{j}" for j in range(B_COLUMNS)])
    b.insert(0, "id", ids)
    root.mkdir(parents=True, exist_ok=True)
    a.to_csv(root / "a.csv", index=False)
    b.sample(frac=1.0, random_state=seed).to_csv(root / "b.csv", index=False)
    return (
        DatasetSpec("d", root / "a.csv", "id", "y", None, []),
        DatasetSpec("d", root / "b.csv", "id", None, None, []),
    )


JOB = """
[data]
dataset = "d"
seed = 1
validation_fraction = 0.0
[train]
epochs = 1
batch_size = 1024
[early_stopping]
monitor = "none"
[crypto]
key_bits = {bits}
"""


def make_executor(kind: str, workers: int) -> Executor:
    """A warm executor: its worker processes started, as in a node that has been up a while."""
    if kind == "ray":
        # Both parties share this machine's Ray: each actor reserves a CPU share so all fit.
        return RayExecutor(workers, cpus_per_worker=0.5)
    pool = ProcessExecutor(workers)
    pool.map(abs, list(range(-4 * workers, 0)))
    return pool


def epoch(
    specs: tuple[DatasetSpec, DatasetSpec], kind: str, workers: int, bits: int, root: Path
) -> dict[str, Any]:
    """One training epoch in memory, both parties on ``kind`` executors of ``workers``; A's
    loop phases (seconds) and their sum ``epoch_s``."""
    a_spec, b_spec = specs
    executor_b, executor_a = make_executor(kind, workers), make_executor(kind, workers)
    # Both kinds fill the obfuscator pools on their workers (a node with a process pool uses a
    # helper process per session instead): the same code path, only the executor differs.
    background = "executor"
    role = NodeB(
        name="party-b",
        datasets={b_spec.name: b_spec},
        policy=PeerPolicy(min_key_bits=min(bits, 2048)),
        model_dir=root / "b-models",
        allowed_partners={"party-a"},
        workers=workers,
        executor=executor_b,
        background=background,
    )
    table = load_party_table(
        a_spec.path, id_column="id", label_column="y", features=None, categorical=[]
    )
    try:
        meta = train(
            InMemoryPeer(role, identity="party-a"),
            table=table,
            spec=a_spec,
            job=parse_job(JOB.format(bits=bits)),
            own_name="party-a",
            store=ModelStore(root / "a-models"),
            executor=executor_a,
            background=background,
        )
    finally:
        role.close()
        executor_a.close()
    phases = {phase: float(meta["timings"].get(phase, 0.0)) for phase in LOOP_PHASES}
    return {**phases, "epoch_s": sum(phases.values()), "rows": meta["rows"]["train"]}


def time_epochs(
    rows: int, bits: int, repeats: int, runs: list[tuple[str, int]]
) -> dict[str, dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    specs = make_data(root / "data", rows)
    samples: dict[str, list[dict[str, Any]]] = {f"{k}{w}": [] for k, w in runs}
    for repeat in range(repeats):
        for kind, workers in runs:
            result = epoch(specs, kind, workers, bits, root / f"{kind}{workers}-{repeat}")
            samples[f"{kind}{workers}"].append(result)
            print(f"  epoch {kind}, {workers} worker(s): {result['epoch_s']:.2f} s (load {load()})")
    return {
        name: {
            "epoch_s": statistics.median(r["epoch_s"] for r in runs_),
            "all_s": [r["epoch_s"] for r in runs_],
            "phases": {p: statistics.median(r[p] for r in runs_) for p in LOOP_PHASES},
            "rows": runs_[0]["rows"],
        }
        for name, runs_ in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epoch-repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--psi-ids", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true", help="1024-bit keys, 1 repeat, small")
    args = parser.parse_args()
    if args.quick:
        args.bits, args.repeats, args.epoch_repeats, args.rows, args.psi_ids = (
            1024,
            1,
            1,
            2048,
            40_000,
        )
    import ray

    print(f"load average at the start: {load()}; {os.cpu_count()} CPUs; Ray {ray.__version__}")
    keypair = generate_keypair(args.bits)
    kernel_results = time_kernels(keypair, args.repeats, args.psi_ids)
    # The epochs: both parties in this process, so the local Ray is started here once.
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    try:
        epochs = time_epochs(
            args.rows, args.bits, args.epoch_repeats, [("process", 2), ("ray", 2), ("ray", 1)]
        )
    finally:
        ray.shutdown()
    overhead = epochs["ray2"]["epoch_s"] / epochs["process2"]["epoch_s"]
    speedup = epochs["ray1"]["epoch_s"] / epochs["ray2"]["epoch_s"]
    print(f"\n### Ray against the process pool, {WORKERS} workers, {args.bits}-bit keys\n")
    print("| kernel | work per run | pool (s) | Ray (s) | Ray / pool |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, r in kernel_results.items():
        print(f"| {name} | {r['what']} | {r['pool_s']:.3f} | {r['ray_s']:.3f} | {r['ratio']:.2f} |")
    print(
        f"| training epoch | {epochs['ray2']['rows']:,} rows, A {A_COLUMNS} + B {B_COLUMNS} "
        f"columns, in memory | {epochs['process2']['epoch_s']:.2f} | "
        f"{epochs['ray2']['epoch_s']:.2f} | {overhead:.2f} |"
    )
    print(
        f"\nRay, 1 -> 2 workers per party: {epochs['ray1']['epoch_s']:.2f} s -> "
        f"{epochs['ray2']['epoch_s']:.2f} s per epoch, speed-up {speedup:.2f}x "
        f"(medians of {args.epoch_repeats}); load average at the end: {load()}"
    )
    payload = {
        "bits": args.bits,
        "kernels": kernel_results,
        "epochs": epochs,
        "epoch_overhead": overhead,
        "speedup_1_to_2": speedup,
        "machine": machine(),
        "targets": [
            {
                "benchmark": "ray_overhead",
                "target": "Ray / process pool <= 1.10 (training epoch, 2 workers)",
                "measured": f"{overhead:.2f}",
                "met": overhead <= 1.10,
            }
        ],
    }
    print(f"\nresults: {save('ray_overhead' + ('_quick' if args.quick else ''), payload)}")


if __name__ == "__main__":
    main()
