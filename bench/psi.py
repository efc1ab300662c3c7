"""PSI through the two nodes: N x N IDs, both nodes on this machine over mTLS (issue 2, item 6).

    python bench/psi.py [--rows 100000] [--overlap 0.5] [--repeats 3] [--workers 1]

Prints the median alignment time from `fedlearn align` (as the node measures it) and, as baselines
measured in the same run, the machine's ristretto255 hash-and-multiply rate (the group PSI uses) and
the X25519 rate (the group it used before issue 11: hashing to X25519 leaked one bit per ID).
ECDH-PSI needs 4N scalar multiplications (each party blinds its own IDs and the other's points), so
the bound on 2 cores is 4N / (2 x rate). The ratio of the two says how close the protocol runs to the
group arithmetic. To compare with an older tree's protocol, run that tree's bench/psi.py in turn.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nodes import fedlearn, median, running_nodes, save, write_configs
from fedlearn.crypto.psi import PsiKey


def ristretto_rate(count: int = 20000) -> float:
    key = PsiKey.generate()
    ids = [f"u{i}" for i in range(count)]
    start = time.perf_counter()
    key.blind_ids(ids, b"\x00" * 32)
    return count / (time.perf_counter() - start)


def x25519_rate(count: int = 20000) -> float:
    """The hash and multiplication PSI used before (SHA-256 to a u-coordinate, then X25519)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    exchange, to_point = X25519PrivateKey.generate().exchange, X25519PublicKey.from_public_bytes
    prefix = b"\x00" * 33
    start = time.perf_counter()
    for i in range(count):
        exchange(to_point(hashlib.sha256(prefix + f"u{i}".encode()).digest()))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-psi-"))
    rng = np.random.default_rng(0)
    shared = int(args.rows * args.overlap)
    a_ids = [f"user-{i:09d}" for i in range(args.rows)]
    b_ids = a_ids[:shared] + [f"other-{i:09d}" for i in range(args.rows - shared)]
    rng.shuffle(b_ids)
    a_data, b_data = root / "a.csv", root / "b.csv"
    a_data.write_text(
        "id,y,x\n" + "".join(f"{i},{(i[-1] in '13579' and 1) or 0},1\n" for i in a_ids)
    )
    b_data.write_text("id,z\n" + "".join(f"{i},2\n" for i in b_ids))
    a_cfg, b_cfg = write_configs(
        root, a_data=a_data, b_data=b_data, id_column="id", label_column="y", workers=args.workers
    )
    rates = [ristretto_rate() for _ in range(3)]
    rate = median(rates)
    old_rate = median([x25519_rate() for _ in range(3)])
    bound = 4 * args.rows / (2 * rate)
    seconds = []
    with running_nodes(a_cfg, b_cfg):
        for _ in range(args.repeats + 1):  # the first run also parses the files: not counted
            out = fedlearn(a_cfg, "align", "--dataset", "d")
            seconds.append(float(re.search(r"\(([\d.]+) s\)", out).group(1)))  # type: ignore[union-attr]
            assert f"intersection: {shared} IDs" in out, out
    measured = median(seconds[1:])
    print(
        f"PSI {args.rows:,} x {args.rows:,} IDs ({shared:,} shared) through both nodes, mTLS, "
        f"workers={args.workers}"
    )
    print("| measure | value |\n| --- | --- |")
    print(f"| alignment, median of {args.repeats} (s) | {measured:.2f} |")
    print(f"| first run incl. file parsing (s) | {seconds[0]:.2f} |")
    print(f"| ristretto255 hash+mult rate, one core (/s) | {rate:,.0f} |")
    print(f"| X25519 hash+mult rate, one core (/s), the group before | {old_rate:,.0f} |")
    print(f"| bound: 4N mults on 2 cores (s) | {bound:.2f} |")
    print(f"| bound / measured | {bound / measured:.2f} |")
    print(f"| target 30 s | {'met' if measured < 30 else 'MISSED'} |")
    path = save(
        "psi",
        {
            "rows": args.rows,
            "common_ids": shared,
            "seconds_median": measured,
            "seconds_all": seconds,
            "ristretto255_rate": rate,
            "x25519_rate": old_rate,
            "bound_s": bound,
            "workers": args.workers,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
