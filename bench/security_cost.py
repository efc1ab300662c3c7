"""What the issue-11 checks cost: the training loop in memory, and the primitives they add.

    python -m bench.security_cost [--rows 6000] [--key-bits 2048] [--repeats 3]

Both roles run in one process (``InMemoryPeer``: every message still goes through its protobuf
encoding), on the first ``rows`` of default_credit's A file and B's rows for the same IDs, one epoch,
batch 1024, the job's defaults otherwise. It prints the median training-loop seconds over
``repeats`` runs and A's phases, and the per-operation cost of what the checks added: the gcd check
on each batch of received ciphertexts (in the parse), re-randomisation with ``r**n`` (was a DJN table power of the peer's
base), the DJN base check (once per session), the decrypted-range checks and truncation.

To compare with the code before a change, run the same command with ``PYTHONPATH`` pointing at an
export of the older tree (the script only uses what both have); docs/performance.md quotes both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gmpy2

from bench.default_credit import subsample
from fedlearn.config import DatasetSpec
from fedlearn.crypto.keys import generate_keypair
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.wire import ciphertexts_from_bytes, ciphertexts_to_bytes
from fedlearn.data import load_party_table
from fedlearn.job import parse_job
from fedlearn.protocol.in_memory import InMemoryPeer
from fedlearn.protocol.policy import PeerPolicy
from fedlearn.store import ModelStore
from party_a.train import train
from party_b.node import NodeB

LOOP = ("encryption", "matvec", "decryption", "network", "loss")


def _job(key_bits: int) -> str:
    return f"""
[data]
dataset = "d"
seed = 42
[train]
epochs = 1
batch_size = 1024
[early_stopping]
monitor = "none"
[crypto]
key_bits = {key_bits}
"""


def train_once(a_path: Path, b_path: Path, key_bits: int, tmp: Path) -> dict[str, Any]:
    a_spec = DatasetSpec("d", a_path, "id", "y", None, [])
    b_spec = DatasetSpec("d", b_path, "id", None, None, [])
    node = NodeB(
        name="party-b",
        datasets={"d": b_spec},
        policy=PeerPolicy(min_key_bits=key_bits, min_batch_size=256),
        model_dir=tmp / "b",
        allowed_partners={"party-a"},
    )
    table = load_party_table(a_path, id_column="id", label_column="y", require_label=True)
    try:
        meta = train(
            InMemoryPeer(node, identity="party-a"),
            table=table,
            spec=a_spec,
            job=parse_job(_job(key_bits)),
            own_name="party-a",
            store=ModelStore(tmp / "a"),
        )
    finally:
        node.close()
    return meta


def _per_second(action: Any, count: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return count / statistics.median(times)


def primitives(key_bits: int) -> dict[str, float]:
    """Operations per second of what the checks add, under one key of ``key_bits`` bits."""
    keypair = generate_keypair(key_bits)
    own = OwnKeyEngine(keypair)
    ciphertexts = own.encrypt(list(range(200)))
    n = gmpy2.mpz(keypair.public_key.n)
    peer = PeerKeyEngine(keypair.public_key, djn_base=own.djn_base)
    data = ciphertexts_to_bytes(ciphertexts, int(n))
    results = {
        # Parsing includes the range check, and (since issue 11) the batch's one gcd with n.
        "parse_ciphertexts_per_s": _per_second(lambda: ciphertexts_from_bytes(data, int(n)), 200),
        "rerandomize_per_s": _per_second(lambda: peer.rerandomize(ciphertexts[:20]), 20),
    }
    try:
        from fedlearn.crypto.keys import check_djn_base  # absent before issue 11

        base = own.djn_base
        assert base is not None
        results["djn_base_check_s"] = 1 / _per_second(lambda: check_djn_base(base, int(n)), 1)
    except ImportError:
        pass
    own.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-security-"))
    a_data, b_data = subsample(root / "data", args.rows)
    loops, phases = [], []
    for repeat in range(args.repeats):
        meta = train_once(a_data, b_data, args.key_bits, root / f"run{repeat}")
        timings = meta["timings"]
        loops.append(sum(timings.get(p, 0.0) for p in LOOP))
        phases.append({p: timings.get(p, 0.0) for p in LOOP})
    result = {
        "rows": args.rows,
        "key_bits": args.key_bits,
        "loop_seconds": loops,
        "loop_median_s": statistics.median(loops),
        "phase_medians_s": {p: statistics.median(r[p] for r in phases) for p in LOOP},
        "primitives": primitives(args.key_bits),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
