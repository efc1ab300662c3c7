"""How well an honest-but-curious A solves its own gradients for u_B, by columns per batch row.

    python -m bench.wide_party [--rows 4096] [--batch 256] [--epochs 10]

Issue 11 item 6. Each batch A learns its exact gradient
``G_A = x_A^T (sigmoid(u_A) - y + sigmoid'(u_A) u_B) / s`` and knows everything in it but u_B: f_A
linear equations in the s values u_B of the batch. Late in training u_B barely moves, so equations
from the last few epochs (different batches each epoch) pile up on the same unknowns; A solves them
by least squares. This is plaintext arithmetic on the protocol's own linearised step (what A
decrypts is exact to 2^-28), on synthetic data: m rows, B's 10 informative columns, A's f_A columns
(a few informative, the rest one-hot-like binary columns, as one-hot encoding makes them). Prints
the correlation of A's estimate with the true u_B, for each f_A / s and each number of epochs used.
docs/threat-model.md quotes it; B's policy and A's job refuse more than s / min_rows_per_column
columns (default 8 rows per column).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import lsqr

from fedlearn.model import sigmoid, sigmoid_slope


def simulate(
    rows: int, batch: int, f_a: int, epochs: int, windows: tuple[int, ...], seed: int = 0
) -> dict[int, float]:
    """Correlation of A's least-squares u_B with the true u_B, per number of final epochs used."""
    rng = np.random.default_rng(seed)
    x_b = rng.normal(size=(rows, 10))
    informative = min(f_a, 6)
    x_a = np.hstack(
        [
            rng.normal(size=(rows, informative)),
            rng.integers(0, 2, size=(rows, f_a - informative)).astype(float),
        ]
    )
    truth_a, truth_b = rng.normal(0, 0.5, informative), rng.normal(0, 0.5, 10)
    logits = x_a[:, :informative] @ truth_a + x_b @ truth_b - 1.0
    y = (rng.random(rows) < sigmoid(logits)).astype(float)
    w_a, w_b = np.zeros(f_a), np.zeros(10)
    equations: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # epoch, rows, lhs, rhs
    for epoch in range(epochs):
        order = rng.permutation(rows)
        for start in range(0, rows - batch + 1, batch):
            idx = order[start : start + batch]
            u_a, u_b = x_a[idx] @ w_a, x_b[idx] @ w_b
            slope = sigmoid_slope(u_a)
            d = sigmoid(u_a) - y[idx] + slope * u_b
            g_a, g_b = x_a[idx].T @ d / batch, x_b[idx].T @ d / batch
            # What A knows: g_a, u_a, y. Unknown: u_b (s values): x_a^T diag(slope) u_b = rhs.
            lhs = x_a[idx].T * slope
            rhs = batch * g_a - x_a[idx].T @ (sigmoid(u_a) - y[idx])
            equations.append((epoch, idx, lhs, rhs))
            w_a -= 0.3 * g_a
            w_b -= 0.3 * g_b
    final_u_b = x_b @ w_b
    result = {}
    for window in windows:
        used = [e for e in equations if e[0] >= epochs - window]
        target = np.concatenate([e[3] for e in used])
        row_ids, col_ids, values = [], [], []
        line = 0
        for _, idx, lhs, _ in used:
            for k in range(lhs.shape[0]):
                row_ids.append(np.full(len(idx), line + k))
                col_ids.append(idx)
                values.append(lhs[k])
            line += lhs.shape[0]
        matrix = sparse.csr_matrix(
            (np.concatenate(values), (np.concatenate(row_ids), np.concatenate(col_ids))),
            shape=(line, rows),
        )
        estimate = lsqr(matrix, target, atol=1e-10, btol=1e-10, iter_lim=2000)[0]
        result[window] = float(np.corrcoef(estimate, final_u_b)[0, 1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    windows = (1, 2, 4, args.epochs)
    table = {}
    for rows_per_column in (64, 16, 8, 4, 2, 1):
        f_a = max(2, args.batch // rows_per_column)
        table[f"f_a={f_a} (s/f={args.batch / f_a:g})"] = simulate(
            args.rows, args.batch, f_a, args.epochs, windows
        )
    print(json.dumps({"rows": args.rows, "batch": args.batch, "correlation": table}, indent=2))


if __name__ == "__main__":
    main()
