"""CPU seconds of one PSI, both roles in one process: a load-robust way to compare two versions.

    python bench/psi_cpu.py [--rows 20000] [--repeats 3]

A and B run in this process through the in-memory transport (B's real node logic, A's real
``open_and_align``), N x N IDs with half in common; B's file is parsed before the timing. The figure
is the whole process's CPU time (B's background threads included), which a busy machine inflates
far less than wall-clock time. To compare with an older tree (issue 11 compared the X25519 code it
replaced), run this file with that tree first on ``PYTHONPATH``: the imports fall back to the
module layout before issue 9.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if not os.environ.get("PYTHONPATH"):  # with PYTHONPATH set, the tree named there is measured
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedlearn.config import DatasetSpec
from fedlearn.protocol import messages as m

if TYPE_CHECKING or importlib.util.find_spec("fedlearn.protocol.in_memory") is not None:
    from fedlearn.protocol.in_memory import InMemoryPeer
    from fedlearn.protocol.policy import PeerPolicy
    from party_a.align import open_and_align
    from party_b.node import NodeB as Role
else:  # a tree before issue 9's move
    from fedlearn.protocol.align import open_and_align
    from fedlearn.protocol.role_b import PeerPolicy
    from fedlearn.protocol.role_b import RoleB as Role

    from fedlearn.protocol.peer_api import InMemoryPeer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.rows
    tmp = Path(tempfile.mkdtemp(prefix="bench-psi-cpu-"))
    a_ids = [f"user-{i:09d}" for i in range(n)]
    b_ids = a_ids[: n // 2] + [f"other-{i:09d}" for i in range(n - n // 2)]
    np.random.default_rng(0).shuffle(b_ids)
    (tmp / "b.csv").write_text("id,z\n" + "".join(f"{i},2\n" for i in b_ids))
    role = Role(
        name="party-b",
        datasets={"d": DatasetSpec("d", tmp / "b.csv", "id", None, None, [])},
        policy=PeerPolicy(
            min_key_bits=512, min_batch_size=16, max_epochs=5, allow_partial_scores=True
        ),
        model_dir=tmp / "models",
        allowed_partners={"party-a"},
    )
    peer = InMemoryPeer(role, identity="party-a")
    role._load_table(role.datasets["d"])  # parse B's file outside the timing
    cpu, wall = [], []
    try:
        for _ in range(args.repeats):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            request = m.OpenSessionRequest(purpose=m.Purpose.ALIGN, dataset="d")
            alignment = open_and_align(peer, request, a_ids)
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
            assert len(alignment.own_rows) == n // 2
    finally:
        role.close()
    print(
        f"PSI {n:,} x {n:,} in one process: CPU seconds median {statistics.median(cpu):.2f} "
        f"(all {', '.join(f'{c:.2f}' for c in cpu)}); wall median {statistics.median(wall):.2f}"
    )


if __name__ == "__main__":
    main()
