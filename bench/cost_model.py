"""The cost model of docs/scaling.md: measured per-core throughputs -> predicted epoch and scoring times.

    python -m bench.cost_model [--bits 2048] [--refresh-share 1] [--check] [--quick]

1. Measures, on one core of this machine, at ``--bits``: DJN obfuscators/s, online encryptions/s
   (from the pool), residual powers/s (14- and 20-bit exponents), 8-bit mat-vec terms/s, packed
   ciphertexts/s (pack + re-randomise), CRT decryptions/s, ciphertexts/s through the wire (encode,
   parse with its range and unit checks), 16-bit dot-product terms/s (the epoch's loss), PSI
   hash-and-blind/s, PSI blind/s, and the common-order hashes/s.
2. Prints the predicted epoch for FATE's shape (100,000 x 30 at A + 100,000 x 300 at B) and for
   10,000,000 rows x (30 + 300) columns with 8, 32 and 128 cores per party, and scoring
   10,000,000 new users, under the network assumptions of :class:`Network`.
3. ``--check`` runs one in-memory training epoch with 1 and 2 Ray workers per party here
   (``bench.ray_overhead.epoch``) and prints predicted against measured.
4. ``--check-kernels`` times one party's kernels of an epoch (B's side: obfuscators, 20-bit residual
   powers, the mat-vec, packing, decryption) on 1 and 2 Ray workers, against the model's kernel
   time over the workers: what a second worker buys, on the two cores this machine has.
5. ``--check-nodes`` trains default_credit through both nodes (``--nodes-epochs``, one worker each,
   unpinned and with each node pinned to its own core) and compares the refreshing and the reuse
   epochs' seconds, from A's epoch history, with the model's: shared cores for the unpinned run,
   one core per party (its own machine) for the pinned one.

``--refresh-share`` is the share of epochs that refresh A's terms (docs/protocol.md section 2): a
refreshing epoch costs A 3 encryptions per row (alpha, beta, gamma) and B 2 (v, w), plus one more
short power per row on each side (the curvature correction); a reuse epoch costs A 1 and B 1. 1
(the default) is an epoch that refreshes, as every epoch of a short job and the first ones of any;
a default run of many batches per epoch refreshes in about 0.3 of its epochs (default_credit: 10 of
32 in the replay).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.crypto import median_rate
from bench.nodes import RESULTS, save
from bench.training import machine
from fedlearn.crypto.keys import generate_keypair
from fedlearn.crypto.matvec import matvec_columns
from fedlearn.crypto.packing import packing_layout
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.psi import PsiKey, session_salt
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes

# ---- throughputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """Operations per second on one core (``bits``-bit keys); ``slots``: values per decryption."""

    bits: int
    obfuscators: float
    online_encryptions: float
    powers_14: float
    powers_20: float
    matvec_terms: float
    packed: float
    decryptions: float
    wire: float
    dot_terms: float
    psi_hash_blind: float
    psi_blind: float
    order_hashes: float
    slots: int

    @property
    def ciphertext_bytes(self) -> int:
        return 2 * ((self.bits + 7) // 8)


def _rate(count: int, run: Callable[[], object], repeats: int) -> float:
    """``count`` operations per second of ``run``, median of ``repeats`` (bench.crypto's timer)."""
    return median_rate(lambda: (run(), count)[1], repeats)


def measure(bits: int, repeats: int = 3) -> Rates:
    """Every throughput, median of ``repeats``, in this process (one core)."""
    keypair = generate_keypair(bits)
    n = keypair.public_key.n
    rng = np.random.default_rng(0)
    own = OwnKeyEngine(keypair)
    peer = PeerKeyEngine(keypair.public_key, djn_base=None)
    s = 512
    ciphertexts = own.encrypt(rng.integers(0, 1 << 30, size=s).tolist())
    obfuscators = _rate(s, lambda: own._fresh_obfuscators(s), repeats)

    def online() -> None:
        own._pool.extend((c, c % own.n) for c in ciphertexts)  # stand-ins: same arithmetic
        own.encrypt(list(range(s)))

    online_rate = _rate(s, online, repeats)
    e14 = rng.integers(0, 1 << 14, size=s).tolist()
    e20 = rng.integers(0, 1 << 20, size=s).tolist()
    x8 = rng.integers(-128, 128, size=(s, 16))
    layout = packing_layout(n, value_bound_bits=48)
    values = ciphertexts[: 4 * layout.slots]
    coefficients = rng.integers(-(1 << 15), 1 << 15, size=s).tolist()
    psi_key, salt = PsiKey.generate(), session_salt(b"a" * 16, b"b" * 16)
    ids = [f"user-{i}" for i in range(5000)]
    points = psi_key.blind_ids(ids, salt)
    rates = Rates(
        bits=bits,
        obfuscators=obfuscators,
        online_encryptions=online_rate,
        powers_14=_rate(s, lambda: peer.scale(ciphertexts, e14), repeats),
        powers_20=_rate(s, lambda: peer.scale(ciphertexts, e20), repeats),
        matvec_terms=_rate(
            x8.size, lambda: matvec_columns(x8, ciphertexts, peer.n_square), repeats
        ),
        packed=_rate(4, lambda: peer.pack_masked(values, layout), repeats),
        decryptions=_rate(64, lambda: own.decrypt(ciphertexts[:64]), repeats),
        wire=_rate(
            s,
            lambda: ciphertexts_from_bytes(ciphertexts_to_bytes(ciphertexts, n), n),
            repeats,
        ),
        dot_terms=_rate(s, lambda: peer.dot(coefficients, ciphertexts), repeats),
        psi_hash_blind=_rate(len(ids), lambda: psi_key.blind_ids(ids, salt), repeats),
        psi_blind=_rate(len(ids), lambda: psi_key.blind_points(points), repeats),
        order_hashes=_rate(
            len(ids),
            lambda: [hashlib.sha256(b"seed" + i.encode()).digest() for i in ids],
            repeats,
        ),
        slots=layout.slots,
    )
    own.close()
    return rates


# ---- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """Between the two parties' nodes. Within a party, Ray moves a batch's ciphertexts (0.5 MB)
    to each task; at 10 Gbit/s that is well under the task's compute and is not counted."""

    bandwidth_bytes_s: float = 125e6  # 1 Gbit/s
    round_trip_s: float = 0.001  # same region
    round_trips_per_batch: int = 3  # forward, gradient, update


@dataclass(frozen=True)
class Shape:
    rows: int  # training rows in an epoch
    a_columns: int  # A's feature columns (the intercept is added)
    b_columns: int
    batch: int = 1024
    refresh_share: float = 1.0  # share of epochs refreshing A's terms (docs/protocol.md section 2)


def batch_work(shape: Shape, rates: Rates) -> dict[str, float]:
    """Seconds of one core per batch, by party and kind: S (the node's own thread: online
    encryption, wire, loss dot product), K (executor kernels: powers, mat-vec, packing,
    decryption), O (obfuscators, filled in the background); and bytes each way."""
    s, k = shape.batch, rates.slots
    f_a, f_b = shape.a_columns + 1, shape.b_columns
    refresh = shape.refresh_share
    enc_a = (1 + 2 * refresh) * s  # alpha; beta and gamma when refreshing
    enc_b = (1 + refresh) * s  # v; w when refreshing
    packed_a, packed_b = math.ceil(f_a / k), math.ceil(f_b / k)
    # The curvature correction's powers (refreshing only): A's [[w]]^gamma, B's [[gamma]]^w, both
    # exponents of about 16 bits, counted at the 14-bit rate.
    correction = refresh * s / rates.powers_14
    return {
        "S_A": (enc_a + s) / rates.online_encryptions  # encryptions, add_plain of alpha
        + (enc_a + enc_b) / rates.wire  # encode what it sends, parse and check what it gets
        + s / rates.dot_terms,  # the epoch's loss: one 16-bit term per row
        "S_B": (enc_b + s) / rates.online_encryptions + (enc_a + enc_b) / rates.wire,
        "K_A_residual": s / rates.powers_14 + correction,
        "K_A_gradient": s * f_a / rates.matvec_terms
        + packed_a / rates.packed
        + packed_b / rates.decryptions,
        "K_B_residual": s / rates.powers_20 + correction,
        "K_B_gradient": s * f_b / rates.matvec_terms
        + packed_b / rates.packed
        + packed_a / rates.decryptions,
        "O_A": enc_a / rates.obfuscators,
        "O_B": enc_b / rates.obfuscators,
        "bytes_a_to_b": enc_a * rates.ciphertext_bytes + packed_a * rates.ciphertext_bytes,
        "bytes_b_to_a": enc_b * rates.ciphertext_bytes + packed_b * rates.ciphertext_bytes,
    }


def predict_epoch(
    shape: Shape,
    rates: Rates,
    cores: int,
    network: Network = Network(),
    *,
    shared_cores: int | None = None,
) -> dict[str, float]:
    """Predicted seconds per epoch with ``cores`` per party (each its own machines and a
    ``network`` between them), or, with ``shared_cores``, both parties in one process on one
    machine of ``shared_cores`` cores, each party with ``cores`` workers (the in-memory check
    run here).

    A batch takes the longer of its critical path and the busiest party's work over its cores:
    - critical path: A's and B's own-thread work, B's residual powers, A's residual powers, then
      the two gradients side by side (B computes its half while A works), the kernels over the
      executor's workers, plus the bytes over the link and the round trips. The obfuscators are
      not on it: the pools fill on the workers while the protocol runs, so they count in the busy
      bound (on a loaded machine, whose cores other processes take, the busy bound is over fewer
      cores than the machine has, and the model is optimistic: docs/scaling.md);
    - busy bound: all a party's work over its cores; on a shared machine, both parties' work
      over the machine's cores (a party cannot use more cores than exist: two parties of two
      workers each on two cores have the busy bound of one worker each).
    In one process the two parties' own-thread work never overlaps (one interpreter) and there is
    no network.
    """
    w = batch_work(shape, rates)
    batches = shape.rows / shape.batch
    workers = cores
    network_s = 0.0
    if shared_cores is None:
        network_s = (
            max(w["bytes_a_to_b"], w["bytes_b_to_a"]) / network.bandwidth_bytes_s
            + network.round_trips_per_batch * network.round_trip_s
        )
    gradients = max(w["K_A_gradient"], w["K_B_gradient"]) / workers
    critical = w["S_A"] + w["S_B"] + (w["K_B_residual"] + w["K_A_residual"]) / workers
    critical += gradients + network_s
    if shared_cores is not None:
        busy = sum(w[key] for key in w if key[0] in "SKO") / min(shared_cores, 2 * workers)
    else:
        busy_a = (w["S_A"] + w["K_A_residual"] + w["K_A_gradient"] + w["O_A"]) / cores
        busy_b = (w["S_B"] + w["K_B_residual"] + w["K_B_gradient"] + w["O_B"]) / cores
        busy = max(busy_a, busy_b)
    return {
        "epoch_s": batches * max(critical, busy),
        "critical_s": batches * critical,
        "busy_s": batches * busy,
        "network_s": batches * network_s,
        "own_thread_s": batches * (w["S_A"] + w["S_B"]),
    }


def predict_scoring(
    new_users: int, b_users: int, rates: Rates, cores: int, network: Network = Network()
) -> dict[str, float]:
    """Predicted seconds to score ``new_users`` at A against ``b_users`` at B (PSI: each party
    hashes and blinds its own IDs and blinds the other's, over its cores; the points cross twice;
    then B's partial scores, 8 bytes per matched user, and A's common-order hashes). Reading and
    writing the files is not counted."""
    a_work = new_users / rates.psi_hash_blind + b_users / rates.psi_blind
    b_work = b_users / rates.psi_hash_blind + new_users / rates.psi_blind
    compute = max(a_work, b_work) / cores
    crossing = 32 * 2 * (new_users + b_users) + 8 * min(new_users, b_users)
    network_s = crossing / network.bandwidth_bytes_s
    order = min(new_users, b_users) / rates.order_hashes  # one thread, both parties at once
    return {"scoring_s": compute + network_s + order, "psi_s": compute, "network_s": network_s}


# ---- the script ---------------------------------------------------------------------------------

FATE = Shape(rows=100_000, a_columns=30, b_columns=300)
TEN_MILLION = Shape(rows=10_000_000, a_columns=30, b_columns=300)
CORES = (8, 32, 128)


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def print_rates(rates: Rates) -> None:
    print(f"\n### Throughputs, one core, {rates.bits}-bit keys (operations per second)\n")
    print("| operation | per second |")
    print("| --- | ---: |")
    for name, value in vars(rates).items():
        if name not in ("bits", "slots"):
            print(f"| {name} | {value:,.0f} |")
    print(f"| values per decryption (slots) | {rates.slots} |")
    print(f"| bytes per ciphertext | {rates.ciphertext_bytes} |")


def print_predictions(rates: Rates, refresh_share: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"\n### Predicted epoch (refresh share {refresh_share:g}, batch 1024)\n")
    print(
        "| shape | cores per party | epoch | critical path | busiest party | network | own thread |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, shape in (("FATE 100k x (30 + 300)", FATE), ("10M x (30 + 300)", TEN_MILLION)):
        shape = replace(shape, refresh_share=refresh_share)
        for cores in CORES:
            p = predict_epoch(shape, rates, cores)
            out[f"{label}, {cores}"] = p
            print(
                f"| {label} | {cores} | **{fmt_s(p['epoch_s'])}** | {fmt_s(p['critical_s'])} | "
                f"{fmt_s(p['busy_s'])} | {fmt_s(p['network_s'])} | {fmt_s(p['own_thread_s'])} |"
            )
    print("\n### Predicted scoring of 10,000,000 new users (B holds 10,000,000)\n")
    print("| cores per party | scoring | PSI compute | network |")
    print("| ---: | ---: | ---: | ---: |")
    for cores in CORES:
        p = predict_scoring(10_000_000, 10_000_000, rates, cores)
        out[f"scoring, {cores}"] = p
        print(
            f"| {cores} | **{fmt_s(p['scoring_s'])}** | {fmt_s(p['psi_s'])} | "
            f"{fmt_s(p['network_s'])} |"
        )
    return out


def measure_epochs(bits: int, rows: int, repeats: int) -> dict[str, dict[str, Any]]:
    """One in-memory epoch with 1 and 2 Ray workers per party, medians of ``repeats``."""
    import ray

    from bench.ray_overhead import time_epochs

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        return time_epochs(rows, bits, repeats, [("ray", 1), ("ray", 2)])
    finally:
        ray.shutdown()


def check(
    rates: Rates, rows: int, measured: dict[str, dict[str, Any]]
) -> dict[int, dict[str, float]]:
    """Predicted against measured: both parties in one process on this machine's cores."""
    from bench.ray_overhead import A_COLUMNS, B_COLUMNS

    shape = Shape(rows=rows, a_columns=A_COLUMNS, b_columns=B_COLUMNS)
    print(f"\n### Predicted against measured here: {rows:,} rows, A {A_COLUMNS} + B {B_COLUMNS}")
    print(
        f"columns, both parties in one process on this machine's {os.cpu_count()} cores, in memory\n"
    )
    print("| Ray workers per party | predicted (s) | measured, median (s) | measured / predicted |")
    print("| ---: | ---: | ---: | ---: |")
    out: dict[int, dict[str, float]] = {}
    for workers in (1, 2):
        # ``workers`` per party; both parties' work shares the machine's cores (busy bound).
        predicted = predict_epoch(shape, rates, workers, shared_cores=os.cpu_count() or 1)
        value = measured[f"ray{workers}"]["epoch_s"]
        out[workers] = {"predicted_s": predicted["epoch_s"], "measured_s": value}
        print(
            f"| {workers} | {predicted['epoch_s']:.2f} | {value:.2f} | "
            f"{value / predicted['epoch_s']:.2f} |"
        )
    return out


#: A's columns in ``--check-kernels`` (default_credit's): only the decryption of A's gradient uses it.
KERNEL_A_COLUMNS = 13


def measure_kernels(
    bits: int, rows: int, columns: int, workers: int, repeats: int
) -> dict[str, Any]:
    """B's kernels of a refreshing epoch of ``rows`` rows and ``columns`` columns on ``workers``
    Ray actors (the node's own thread and the wire excluded): per batch of 1024, the obfuscators of
    its v and w, the 20-bit residual powers and the correction's, the mat-vec, the packing of its
    gradient and the decryption of A's (``KERNEL_A_COLUMNS`` + 1 values). Seconds, median of
    ``repeats``; Ray must be running."""
    import time

    from fedlearn.crypto.ray_executor import RayExecutor

    keypair = generate_keypair(bits)
    rng = np.random.default_rng(1)
    executor = RayExecutor(workers)
    own = OwnKeyEngine(keypair, executor=executor)
    peer = PeerKeyEngine(keypair.public_key, djn_base=None, executor=executor)
    layout = packing_layout(own.n, value_bound_bits=48)
    batch = 1024
    ciphertexts = own.encrypt(rng.integers(0, 1 << 30, size=batch).tolist())
    exponents = rng.integers(0, 1 << 20, size=batch).tolist()
    basis = rng.integers(0, 9 << 12, size=batch).tolist()  # the curvature basis w (16 bits)
    x_q = rng.integers(-128, 128, size=(batch, columns))
    a_packed = math.ceil((KERNEL_A_COLUMNS + 1) / layout.slots)  # A's gradient, intercept too
    try:
        own._obfuscators_on_executor(2 * workers * 64)  # every actor warm: its DJN tables built
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(max(1, rows // batch)):
                own._obfuscators_on_executor(2 * batch)
                residual = peer.scale(ciphertexts, exponents)
                peer.scale(ciphertexts, basis)  # the curvature correction of a refresh
                gradient = peer.matvec_t(x_q, residual)
                packed, _ = peer.pack_masked(gradient, layout)
                own.decrypt(packed[:a_packed])
            times.append(time.perf_counter() - started)
    finally:
        own.close()
        executor.close()
    return {"median_s": float(np.median(times)), "runs_s": times}


def check_kernels(bits: int, rows: int, columns: int, repeats: int) -> dict[str, Any]:
    """``measure_kernels`` on 1 and 2 actors against the model's B kernels over the workers."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        before = measure(bits, repeats)
        measured = {w: measure_kernels(bits, rows, columns, w, repeats) for w in (1, 2)}
        rates = mean_rates(before, measure(bits, repeats))
    finally:
        ray.shutdown()
    work = batch_work(Shape(rows=rows, a_columns=KERNEL_A_COLUMNS, b_columns=columns), rates)
    # B's kernels of a refreshing batch as the model counts them (a refresh share of 1).
    kernel_s = max(1, rows // 1024) * (work["K_B_residual"] + work["K_B_gradient"] + work["O_B"])
    print(f"\n### One party's kernels on 1 and 2 Ray workers: {rows:,} rows x {columns} columns\n")
    print(
        "| Ray workers | predicted (s) | measured, median (s) | runs (s) | measured / predicted |"
    )
    print("| ---: | ---: | ---: | --- | ---: |")
    out: dict[str, Any] = {"rates": vars(rates), "rows": rows, "columns": columns}
    for workers, result in measured.items():
        predicted = kernel_s / workers
        runs = ", ".join(f"{t:.2f}" for t in result["runs_s"])
        ratio = result["median_s"] / predicted
        out[f"workers_{workers}"] = {**result, "predicted_s": predicted, "ratio": ratio}
        print(f"| {workers} | {predicted:.2f} | {result['median_s']:.2f} | {runs} | {ratio:.2f} |")
    speedup = measured[1]["median_s"] / measured[2]["median_s"]
    out["speedup"] = speedup
    print(f"\n1 -> 2 workers: {speedup:.2f}x (the model: 2.00x)")
    return out


#: Loopback between the two nodes on this machine (both pinned runs' parties on one host).
LOOPBACK = Network(bandwidth_bytes_s=1e9, round_trip_s=1e-4)


def check_nodes(rows: int | None, epochs: int, repeats: int) -> dict[str, Any]:
    """default_credit through both nodes (``rows``: its first rows), unpinned and pinned, one worker
    each: the refreshing and reuse epochs' mean seconds (A's history) against the model. The
    nodes' job uses 2048-bit keys (``bench.epoch_compare``), so the throughputs are measured at
    2048 bits too."""
    import pandas as pd

    from bench.default_credit import A_DATA, B_DATA, subsample
    from bench.epoch_compare import run_tree

    bits = 2048

    root = Path(__file__).resolve().parents[1]
    a_data, b_data = A_DATA, B_DATA
    if rows:
        a_data, b_data = subsample(Path(tempfile.mkdtemp(prefix="bench-cost-")), rows)
    a_columns = len(pd.read_csv(a_data, nrows=0).columns) - 2  # id and y
    b_columns = len(pd.read_csv(b_data, nrows=0).columns) - 1
    before = measure(bits, repeats)
    runs = {pin: run_tree(root, a_data, b_data, str(epochs), pin) for pin in (False, True)}
    rates = mean_rates(before, measure(bits, repeats))
    out: dict[str, Any] = {"rates": vars(rates), "a_columns": a_columns, "b_columns": b_columns}
    print(f"\n### Through both nodes: default_credit{f' (first {rows:,} rows)' if rows else ''},")
    print(f"A {a_columns} + B {b_columns} columns, {epochs} epochs, one worker each\n")
    print("| run | epochs | measured (s per epoch) | predicted | measured / predicted |")
    print("| --- | --- | ---: | ---: | ---: |")
    for pin, run in runs.items():
        history = run["history"]
        shape = Shape(rows=run["train_rows"], a_columns=a_columns, b_columns=b_columns)
        label = "pinned, a core each" if pin else "unpinned, 2 shared cores"
        result: dict[str, Any] = {"load": run["load"], "cpu_a": run["cpu_a"], "cpu_b": run["cpu_b"]}
        for kind, refreshed in (("refreshing", True), ("reuse", False)):
            seconds = [r["seconds"] for r in history if r["refreshed"] is refreshed]
            if not seconds:
                continue
            share = replace(shape, refresh_share=1.0 if refreshed else 0.0)
            if pin:  # each party on its own core, as on its own machine
                predicted = predict_epoch(share, rates, 1, LOOPBACK)["epoch_s"]
            else:
                predicted = predict_epoch(share, rates, 1, shared_cores=2)["epoch_s"]
            measured = float(np.mean(seconds))
            result[kind] = {"epochs": len(seconds), "measured_s": measured,
                            "predicted_s": predicted, "ratio": measured / predicted}  # fmt: skip
            print(
                f"| {label}, load {run['load']:.1f} | {len(seconds)} {kind} | {measured:.2f} | "
                f"{predicted:.2f} | {measured / predicted:.2f} |"
            )
        out["pinned" if pin else "unpinned"] = result
    return out


def mean_rates(first: Rates, second: Rates) -> Rates:
    """Per throughput, the geometric mean of two measurements (before and after the epochs)."""
    fields: dict[str, Any] = {
        name: math.sqrt(value * getattr(second, name))
        for name, value in vars(first).items()
        if name not in ("bits", "slots")
    }
    return Rates(bits=first.bits, slots=first.slots, **fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--refresh-share", type=float, default=1.0)
    parser.add_argument("--check", action="store_true", help="measure 1 and 2 workers here")
    parser.add_argument("--rows", type=int, default=4096, help="rows of the --check epoch")
    parser.add_argument(
        "--check-kernels", action="store_true", help="one party's kernels, 1 and 2 Ray workers"
    )
    parser.add_argument("--kernel-columns", type=int, default=60, help="B's columns, kernels")
    parser.add_argument(
        "--check-nodes", action="store_true", help="default_credit through both nodes, per epoch"
    )
    parser.add_argument("--nodes-epochs", type=int, default=8)
    parser.add_argument("--nodes-rows", type=int, default=None, help="first rows of default_credit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1024-bit keys, 1 repeat")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="the tables again, from the last --check run's throughputs and epochs",
    )
    args = parser.parse_args()
    if args.recheck:  # the model again, on the throughputs and epochs of the last --check run
        last = json.loads((RESULTS / "cost_model.json").read_text())
        rates = Rates(**last["rates_around_check"])
        print_rates(rates)
        print_predictions(rates, args.refresh_share)
        measured = {f"ray{w}": {"epoch_s": c["measured_s"]} for w, c in last["check"].items()}
        check(rates, last.get("check_rows", 4096), measured)
        return
    if args.quick:
        args.bits, args.repeats, args.rows = 1024, 1, 2048
    print(f"load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rates = measure(args.bits, args.repeats)
    print_rates(rates)
    predictions = print_predictions(rates, args.refresh_share)
    payload: dict[str, Any] = {"rates": vars(rates), "predictions": predictions}
    if args.check:
        measured = measure_epochs(args.bits, args.rows, args.repeats)
        # The machine is shared: the throughputs for the check are the mean of before and after.
        around = mean_rates(rates, measure(args.bits, args.repeats))
        payload["rates_around_check"] = vars(around)
        checked = check(around, args.rows, measured)
        payload["check"] = checked
        payload["check_rows"] = args.rows
        worst = max(abs(c["measured_s"] / c["predicted_s"] - 1) for c in checked.values())
        payload["targets"] = [
            {
                "benchmark": "cost_model, in memory",
                "target": "prediction within 25% of the 1- and 2-worker epochs here",
                "measured": f"worst {worst:.0%} off",
                "met": worst <= 0.25,
            }
        ]
    targets = payload.setdefault("targets", [])
    if args.check_kernels:
        kernels = check_kernels(args.bits, args.rows, args.kernel_columns, args.repeats)
        payload["kernels"] = kernels
        worst = max(abs(kernels[f"workers_{w}"]["ratio"] - 1) for w in (1, 2))
        targets.append(
            {
                "benchmark": "cost_model, one party's kernels",
                "target": "prediction within 25% with 1 and 2 Ray workers",
                "measured": f"worst {worst:.0%} off; 1 -> 2 workers {kernels['speedup']:.2f}x",
                "met": worst <= 0.25,
            }
        )
    if args.check_nodes:
        nodes = check_nodes(args.nodes_rows, args.nodes_epochs, args.repeats)
        payload["nodes"] = nodes
        ratios = [
            nodes[run][kind]["ratio"]
            for run in ("unpinned", "pinned")
            for kind in ("refreshing", "reuse")
            if kind in nodes[run]
        ]
        worst = max(abs(r - 1) for r in ratios)
        targets.append(
            {
                "benchmark": "cost_model, default_credit through both nodes",
                "target": "prediction within 25% of the refreshing and reuse epochs, pinned and not",
                "measured": f"worst {worst:.0%} off",
                "met": worst <= 0.25,
            }
        )
    payload["machine"] = machine()
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"\nresults: {save('cost_model' + ('_quick' if args.quick else ''), payload)}")


if __name__ == "__main__":
    main()
