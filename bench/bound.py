"""The bound: what an epoch costs in modular multiplications, and how close the protocol runs to it.

    python -m bench.bound [--bits 2048] [--rows 24000] [--fa 14] [--fb 10] [--quick]

Counting model (per epoch; m training rows in batches of s; f_A columns at A with the intercept, f_B
at B; k slots per packed ciphertext). Each party's work is counted in the operations its kernels
actually perform, in four kinds:

* multiplications mod n^2 (``a * b % n2`` from Python, gmpy2 integers): the bucket mat-vec (one per
  non-zero signed digit per window, about 2 per bucket to combine, ``c`` squarings per window and
  sign, counted from the real quantised columns), 0/1 columns (one per non-zero), the per-row
  ``[[alpha]] * [[beta]]^v`` product, the Horner products of packing, re-randomisation of packed
  ciphertexts (128 table products each: 8-bit windows over 1024-bit exponents) and the loss dot
  product (the engine's own estimate for s signed 17-bit coefficients);
* multiplications mod p^2 or q^2 (half the size): DJN obfuscators, ``2 x 93`` table products per
  encryption (11-bit windows over 1024-bit exponents) plus 2 for the CRT join, timed as the
  engine's fixed-base tables run them (the C kernel where it is built: ``fedlearn/crypto/
  _fixedbase.c``, its AVX-512 IFMA path where the processor has one; gmpy2 products otherwise);
* multiplications mod n: the online step of an encryption and ``add_plain`` (one each);
* whole ``gmpy2.powmod`` calls and inversions, timed directly rather than counted (GMP's own
  exponentiation is faster per multiplication than a Python-level product): the per-row residual
  powers (14-bit exponent at A, 20-bit at B, half of them negative; timed as
  ``matvec.powmod_many`` raises them, on the C kernel's IFMA path where it runs), the packing shifts (``slot_bits``-bit powers of two),
  CRT decryption (two ~1024-bit exponents mod p^2 and q^2 per packed ciphertext), one inversion mod
  n^2 per signed mat-vec column and per dot product.

Each kind is converted to *equivalent multiplications mod n^2* with the times measured in this run,
so the bound is ``equivalents x t(mult mod n^2)``: the time the epoch would take if every operation
ran at gmpy2's speed and nothing else cost anything (no Python bookkeeping, serialisation, gRPC,
waiting). With both parties on this 2-core machine the bound is that divided by 2 (perfect overlap of
the two parties); ``fraction = bound / measured`` is the share of the hardware's arithmetic the
protocol achieves. Key generation, PSI, preprocessing and evaluation are outside the epoch.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from bench.nodes import save
from fedlearn.crypto.keys import generate_keypair
from fedlearn.crypto.matvec import FixedBaseTable, bucket_window, powmod_many, random_digits
from fedlearn.crypto.paillier import DJN_TABLE_WINDOW
from fedlearn.model import epoch_batches, max_batch_rows
from fedlearn.protocol.steps import SLOPE_FRAC_BITS, gradient_layout

#: Window bits of the DJN obfuscator tables (keys of 2048 bits or more).
DJN_WINDOW = DJN_TABLE_WINDOW
#: Re-randomisation is r**n with the party's own r (never the peer's base): a full-length
#: exponentiation mod n^2, about key_bits squarings and key_bits / 5 multiplications (gmpy2's
#: sliding window).
RERANDOMIZE_EXTRA_MULTIPLICATIONS = 5


@dataclass(frozen=True)
class Primitives:
    """Seconds per operation, measured in this run (medians of a few repeats)."""

    bits: int
    mul_n2: float
    mul_p2: float
    mul_n: float
    inv_n2: float
    pow_n2_14: float  # powmod mod n^2, 14-bit exponent (A's residual, beta)
    pow_n2_20: float  # powmod mod n^2, 20-bit exponent (B's residual, v)
    pow_n2_shift: float  # powmod mod n^2 by 2**slot_bits (packing)
    decrypt: float  # two powmods mod p^2 and q^2 with ~n_bits/2-bit exponents (CRT decryption)
    slot_bits: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _median_seconds(run: Any, count: int, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) / count)
    return float(statistics.median(samples))


def time_primitives(bits: int = 2048, count: int = 4000, slot_bits: int = 134) -> Primitives:
    """Time gmpy2's operations under a fresh ``bits``-bit key (one core, this process)."""
    keypair = generate_keypair(bits)
    p, q = mpz(keypair.private_key.p), mpz(keypair.private_key.q)
    n = p * q
    n2, p2 = n * n, p * p
    state = gmpy2.random_state(7)
    values_n2 = [gmpy2.mpz_urandomb(state, 2 * bits) % n2 for _ in range(64)]
    values_p2 = [gmpy2.mpz_urandomb(state, bits) % p2 for _ in range(64)]
    values_n = [gmpy2.mpz_urandomb(state, bits) % n for _ in range(64)]

    def products(values: list[mpz], modulus: mpz) -> Any:
        def run() -> None:
            accumulator = values[0]
            for index in range(count):
                accumulator = accumulator * values[index & 63] % modulus

        return run

    def powers(exponent_bits: int, repeat: int, *, power_of_two: bool = False) -> Any:
        # Random exponents with the top bit set and either sign (beta, v: half are negative), or
        # exactly 2**bits (packing shifts), as the engine raises them (matvec.powmod_many: the
        # C kernel's IFMA path where it runs, gmpy2.powmod otherwise).
        exponents = [
            1 << exponent_bits
            if power_of_two
            else ((1 << (exponent_bits - 1)) | int(gmpy2.mpz_urandomb(state, exponent_bits - 1)))
            * (-1 if index % 2 else 1)
            for index in range(64)
        ]
        values = [values_n2[index & 63] for index in range(repeat)]
        powers_of = [exponents[index & 63] for index in range(repeat)]

        def run() -> None:
            powmod_many(values, powers_of, n2)

        return run

    def inversions() -> None:
        for index in range(200):
            gmpy2.invert(values_n2[index & 63], n2)

    def decryptions() -> None:
        for index in range(50):
            gmpy2.powmod(values_p2[index & 63], p - 1, p2)
            gmpy2.powmod(values_p2[index & 63], q - 1, q * q)

    # The obfuscators' products as the engine runs them: a table's exponents, per product.
    table = FixedBaseTable(values_p2[1], p2, exponent_bits=bits // 2, window=DJN_WINDOW)
    exponents = random_digits(200, bits // 2, DJN_WINDOW)

    def table_products() -> None:
        table.pow_many(exponents)

    return Primitives(
        bits=bits,
        mul_n2=_median_seconds(products(values_n2, n2), count),
        mul_p2=_median_seconds(table_products, 200 * table.rows),
        mul_n=_median_seconds(products(values_n, n), count),
        inv_n2=_median_seconds(inversions, 200),
        pow_n2_14=_median_seconds(powers(14, 500), 500),
        pow_n2_20=_median_seconds(powers(20, 500), 500),
        pow_n2_shift=_median_seconds(powers(slot_bits, 200, power_of_two=True), 200),
        decrypt=_median_seconds(decryptions, 50),
        slot_bits=slot_bits,
    )


def matvec_column_cost(column: np.ndarray) -> tuple[int, int]:
    """(multiplications mod n^2, inversions) of ``matvec_columns`` for one batch column.

    Follows the kernel: all-zero -> nothing; 0/1 -> one product per non-zero beyond the first;
    otherwise signed window digits (window from ``bucket_window``), per window and sign: one product
    per non-zero digit beyond the first in its bucket, about 2 per bucket up to the largest digit to
    combine, one to accumulate, ``c`` squarings from the second window on; one inversion at the end.
    """
    values = column[column != 0].astype(np.int64)
    if values.size == 0:
        return 0, 0
    if np.all(values == 1):
        return int(values.size) - 1, 0
    magnitudes = np.abs(values)
    window = bucket_window(int(values.size), int(magnitudes.max()).bit_length())
    base, half, mask = 1 << window, 1 << (window - 1), (1 << window) - 1
    signs = np.sign(values)
    carry = np.zeros_like(magnitudes)
    mults = 0
    first = True
    while magnitudes.any() or carry.any():
        digits = (magnitudes & mask) + carry
        magnitudes = magnitudes >> window
        carry = (digits > half).astype(np.int64)
        signed = signs * (digits - carry * base)
        for sign in (1, -1):
            selected = signed[signed * sign > 0] * sign
            if selected.size:
                distinct = np.unique(selected)
                mults += int(selected.size - distinct.size) + 2 * int(distinct.max()) - 1 + 1
            if not first:
                mults += window
        first = False
    return mults + 1, 1


def dot_cost(terms: int, magnitude_bits: int) -> int:
    """The engine's own estimate (``bucket_window``'s cost model) for a signed multi-exponentiation."""
    window = bucket_window(terms, magnitude_bits)
    windows = -(-magnitude_bits // window)
    return windows * (terms + 4 * ((1 << (window - 1)) + 1)) + 2 * magnitude_bits


def count_epoch(
    x_a_q: np.ndarray,
    x_b_q: np.ndarray,
    train_rows: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    key_bits: int,
    score_frac_bits: int = 12,
    feature_bits: int = 8,
    max_batches: int | None = None,
    slope_fraction: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Operation counts of one epoch (or its first ``max_batches`` batches), per party and kind.

    ``slope_fraction`` is the share of the job's epochs in which A encrypts fresh slopes and
    curvatures (``fedlearn.model.slopes_refreshed``; 1.0: every epoch): the epoch counted is their
    average. The counts are the corrected residual's (docs/protocol.md section 2).

    ``x_a_q`` is A's quantised matrix *without* the intercept (added here), ``x_b_q`` B's; both
    indexed by aligned row. Returns ``{"A": {kind: count}, "B": {...}}`` with kinds ``mul_n2``,
    ``mul_p2``, ``mul_n``, ``inv_n2``, ``pow_n2_14``, ``pow_n2_20``, ``pow_n2_shift``, ``decrypt``.
    """
    max_rows = max_batch_rows(len(train_rows), batch_size)
    n = (1 << (key_bits - 1)) + 1  # only its bit length matters for the layout
    layout = gradient_layout(
        n, max_rows=max_rows, feature_bits=feature_bits, score_frac_bits=score_frac_bits
    )
    k = layout.slots
    exponent_bits = key_bits // 2
    encrypt_p2 = 2 * (math.ceil(exponent_bits / DJN_WINDOW) - 1) + 2
    rerandomize_n2 = key_bits + key_bits // RERANDOMIZE_EXTRA_MULTIPLICATIONS
    x_a = np.hstack([x_a_q, np.ones((x_a_q.shape[0], 1), dtype=np.int64)])
    f_a, f_b = x_a.shape[1], x_b_q.shape[1]
    kinds = ("mul_n2", "mul_p2", "mul_n", "inv_n2", "pow_n2_14", "pow_n2_20", "pow_n2_shift")
    counts = {party: dict.fromkeys((*kinds, "decrypt"), 0.0) for party in ("A", "B")}
    batches = epoch_batches(train_rows, batch_size, seed, 0)
    if max_batches is not None:
        batches = batches[:max_batches]
    packed_a, packed_b = math.ceil(f_a / k), math.ceil(f_b / k)
    for rows in batches:
        s = len(rows)
        a, b = counts["A"], counts["B"]
        # A: alpha and, in the epochs that refresh them, beta and gamma per row (``slope_fraction``
        # of the epochs); [[v]]^beta, + alpha and * [[gamma w]] per row, refreshing also
        # [[w]]^gamma (about 16-bit exponents, counted as 14-bit ones); its mat-vec; packing;
        # loss dot; the positive rows' sum of [[v]] (about half the rows, counted as all).
        a["mul_p2"] += (1 + 2 * slope_fraction) * s * encrypt_p2
        a["mul_n"] += (1 + 2 * slope_fraction) * s + s + packed_a + 1
        a["pow_n2_14"] += s + slope_fraction * s
        a["mul_n2"] += 2 * s
        for column in x_a[rows].T:
            mults, inversions = matvec_column_cost(column)
            a["mul_n2"] += mults
            a["inv_n2"] += inversions
        a["pow_n2_shift"] += f_a - packed_a
        a["mul_n2"] += (f_a - packed_a) + packed_a * rerandomize_n2
        a["mul_n2"] += dot_cost(s, SLOPE_FRAC_BITS + 1) + 2
        a["inv_n2"] += 1
        a["decrypt"] += packed_b
        # B: v per row (and w, refreshing) and the loss term; [[alpha]] * [[beta]]^v * [[gamma w]]
        # per row, refreshing also [[gamma]]^w (about 16-bit); mat-vec; packing.
        b["mul_p2"] += ((1 + slope_fraction) * s + 1) * encrypt_p2
        b["mul_n"] += (1 + slope_fraction) * s + 1 + packed_b
        b["pow_n2_20"] += s
        b["pow_n2_14"] += slope_fraction * s
        b["mul_n2"] += 2 * s
        for column in x_b_q[rows].T:
            mults, inversions = matvec_column_cost(column)
            b["mul_n2"] += mults
            b["inv_n2"] += inversions
        b["pow_n2_shift"] += f_b - packed_b
        b["mul_n2"] += (f_b - packed_b) + packed_b * rerandomize_n2
        b["decrypt"] += packed_a
    # The epoch loss and the class sum: A masks and re-randomises two ciphertexts, B decrypts them.
    counts["A"]["mul_n2"] += 2 * rerandomize_n2
    counts["B"]["decrypt"] += 2
    return counts


def equivalents(counts: dict[str, float], primitives: Primitives) -> dict[str, float]:
    """Counts of each kind -> equivalent multiplications mod n^2 (by the measured times)."""
    unit = primitives.mul_n2
    return {kind: count * getattr(primitives, kind) / unit for kind, count in counts.items()}


def bound_report(
    counts: dict[str, dict[str, float]], primitives: Primitives, measured_s: float
) -> dict[str, Any]:
    """The bound on 1 and 2 cores and the achieved fraction, from counts and measured times."""
    per_party = {party: equivalents(kinds, primitives) for party, kinds in counts.items()}
    total = sum(sum(kinds.values()) for kinds in per_party.values())
    one_core_s = total * primitives.mul_n2
    two_core_s = one_core_s / 2
    busiest_s = max(sum(k.values()) for k in per_party.values()) * primitives.mul_n2
    return {
        "counts": counts,
        "equivalent_mul_n2": per_party,
        "total_equivalent_mul_n2": total,
        "bound_one_core_s": one_core_s,
        "bound_two_cores_s": two_core_s,
        "busiest_party_s": busiest_s,
        "measured_s": measured_s,
        "fraction_two_cores": two_core_s / measured_s if measured_s else math.nan,
        "fraction_one_core": one_core_s / measured_s if measured_s else math.nan,
        "primitives": primitives.as_dict(),
    }


def markdown(report: dict[str, Any], title: str) -> str:
    """The bound table: per kind, counts and equivalents for each party, then the fraction."""
    prim = report["primitives"]
    names = {
        "mul_n2": "multiplications mod n^2",
        "mul_p2": "multiplications mod p^2, q^2",
        "mul_n": "multiplications mod n",
        "inv_n2": "inversions mod n^2",
        "pow_n2_14": "powmod, 14-bit exponent",
        "pow_n2_20": "powmod, 20-bit exponent",
        "pow_n2_shift": f"powmod by 2^{prim['slot_bits']} (packing)",
        "decrypt": "CRT decryptions",
    }
    lines = [
        f"{title}",
        "",
        "| operation | us each | count A | count B | mult-mod-n^2 equivalents |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    counts, eq = report["counts"], report["equivalent_mul_n2"]
    for kind, name in names.items():
        lines.append(
            f"| {name} | {prim[kind] * 1e6:,.2f} | {counts['A'][kind]:,.0f} | "
            f"{counts['B'][kind]:,.0f} | {eq['A'][kind] + eq['B'][kind]:,.0f} |"
        )
    lines += [
        f"| **total** | | | | **{report['total_equivalent_mul_n2']:,.0f}** |",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| gmpy2 multiplication mod n^2, this run (/s) | {1 / prim['mul_n2']:,.0f} |",
        f"| bound, one core (s) | {report['bound_one_core_s']:,.2f} |",
        f"| bound, two cores (s) | {report['bound_two_cores_s']:,.2f} |",
        f"| busiest party's work alone, one core (s) | {report['busiest_party_s']:,.2f} |",
    ]
    if not math.isnan(report["measured_s"]):
        lines += [
            f"| measured (s) | {report['measured_s']:,.2f} |",
            f"| **fraction of the two-core bound** (target >= 0.6) | "
            f"**{report['fraction_two_cores']:.2f}** |",
            f"| fraction of the one-core bound | {report['fraction_one_core']:.2f} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=24_000, help="training rows")
    parser.add_argument("--fa", type=int, default=13, help="A's columns, without the intercept")
    parser.add_argument("--fb", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="1024-bit keys, fewer rows")
    args = parser.parse_args()
    if args.quick:
        args.bits, args.rows = 1024, 4096
    rng = np.random.default_rng(0)
    x_a = np.clip(np.rint(rng.normal(size=(args.rows, args.fa)) * 127 / 4), -127, 127)
    x_b = np.clip(np.rint(rng.normal(size=(args.rows, args.fb)) * 127 / 4), -127, 127)
    counts = count_epoch(
        x_a.astype(np.int64),
        x_b.astype(np.int64),
        np.arange(args.rows),
        batch_size=args.batch_size,
        seed=42,
        key_bits=args.bits,
    )
    primitives = time_primitives(args.bits)
    report = bound_report(counts, primitives, math.nan)
    print(
        markdown(
            report,
            f"Counting model for one epoch: {args.rows:,} rows, f_A = {args.fa} + intercept, "
            f"f_B = {args.fb}, dense standard-normal columns, {args.bits}-bit keys "
            "(no training run: see default_credit and fate_shape for measured fractions)",
        )
    )
    save("bound", {"args": vars(args), **report})


if __name__ == "__main__":
    main()
