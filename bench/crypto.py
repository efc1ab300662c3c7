"""Micro-benchmark of the Paillier engine against plain ``phe`` (and SecretFlow HEU when installed).

One process, one core, 2048-bit keys by default. Every figure is the median of ``--repeats`` runs,
in operations per second (higher is better). Prints a markdown table with ratios against ``phe`` and
writes ``bench/results/crypto.json``.

    python bench/crypto.py                 # the full run (about a minute)
    python bench/crypto.py --bits 1024 --repeats 1   # a quick smoke run

What is compared, row by row (s = batch rows = 1024):

* encrypt: ``phe``'s ``PaillierPublicKey.encrypt`` (r**n mod n^2) vs the engine with no pool, i.e.
  computing each DJN obfuscator now (1024-bit exponents, tables mod p^2 and q^2, CRT).
* online encrypt: obfuscators taken from the pool filled beforehand (the pool fill is not timed).
* decryption per gradient value: ``phe`` decrypts one value per ciphertext; the engine decrypts
  packed ciphertexts (48-bit values + 80-bit masks, 15 per plaintext) and unpacks.
* mat-vec per term: ``X^T [[d]]`` for an (s, f) block, counted as s*f terms. ``phe`` runs the
  natural ``sum(x * enc_d)`` with EncryptedNumber objects, twice: "as-is" with float features in
  phe's own encoding (what FATE does; the DESIGN table's baseline), and "int x", its best case,
  with the quantised integers and d encrypted at one common precision (no exponent rescaling).
  HEU runs ``Evaluator.matmul`` (dense) and ``select_sum`` (one-hot).

For one core, pin the process: ``taskset -c 0 python bench/crypto.py`` (HEU's C++ code may
otherwise use a second thread).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedlearn.crypto import (
    FixedPointCodec,
    OwnKeyEngine,
    PeerKeyEngine,
    generate_keypair,
    packing_layout,
    unpack,
)
from fedlearn.crypto.matvec import NATIVE_ENV, kernel_description, native_kernel

RESULTS = Path(__file__).resolve().parent / "results" / "crypto.json"
BATCH = 1024
ONE_HOT_CATEGORIES = 8
PACKED_VALUE_BITS = 48


def median_rate(run: Callable[[], int], repeats: int) -> float:
    """Median over ``repeats`` of (operations returned by ``run``) / (seconds it took)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        operations = run()
        rates.append(operations / (time.perf_counter() - start))
    return statistics.median(rates)


def _ops(_result: object, count: int) -> int:
    """``count``: lets a timed lambda run an operation and report how many it did."""
    return count


def feature_blocks(rng: np.random.Generator, columns: int) -> dict[str, np.ndarray]:
    one_hot = np.eye(ONE_HOT_CATEGORIES, dtype=np.int8)[rng.integers(0, ONE_HOT_CATEGORIES, BATCH)]
    return {
        "one-hot": one_hot,
        "8-bit": rng.integers(-127, 128, (BATCH, columns)).astype(np.int8),
        "16-bit": rng.integers(-(2**15) + 1, 2**15, (BATCH, columns)).astype(np.int16),
    }


def bench_phe(keypair: Any, residual: np.ndarray, blocks: dict[str, np.ndarray], repeats: int):
    public_key, private_key = keypair.public_key, keypair.private_key
    results: dict[str, float] = {}
    values = residual[:30].tolist()
    results["encrypt"] = median_rate(lambda: len([public_key.encrypt(v) for v in values]), repeats)
    encrypted = [public_key.encrypt(float(v), precision=2**-16) for v in residual]
    results["decrypt_per_value"] = median_rate(
        lambda: len([private_key.decrypt(c) for c in encrypted[:60]]), repeats
    )
    as_is = [public_key.encrypt(float(v)) for v in residual[:256]]
    for name, block in blocks.items():
        column = block[:, 0].tolist()  # phe is slow: time one column of 1024 terms

        def one_column(column: list[int] = column) -> int:
            total = encrypted[0] * column[0]
            for x, c in zip(column[1:], encrypted[1:], strict=True):
                total = total + c * x
            return len(column)

        results[f"matvec_{name}"] = median_rate(one_column, repeats)
        # phe as-is (the DESIGN table's baseline): float features in phe's own encoding
        float_column = (block[:, 0] / 128.0).tolist()

        def one_float_column(column: list[float] = float_column) -> int:
            total = as_is[0] * column[0]
            for x, c in zip(column[1:256], as_is[1:], strict=True):
                total = total + c * x
            return 256

        results[f"matvec_{name}_float"] = median_rate(one_float_column, repeats)
    return results


def _encrypt_300(engine: OwnKeyEngine, plaintexts: list[int]) -> int:
    return len(engine.encrypt(plaintexts[:300]))


def bench_engine(keypair: Any, residual: np.ndarray, blocks: dict[str, np.ndarray], repeats: int):
    n = keypair.public_key.n
    results: dict[str, float] = {}
    start = time.perf_counter()
    own = OwnKeyEngine(keypair)
    results["setup_seconds"] = time.perf_counter() - start
    codec = FixedPointCodec(n)
    plaintexts = codec.encode_int(np.rint(residual * 2.0**16).astype(np.int64))
    results["encrypt"] = median_rate(lambda: len(own.encrypt(plaintexts[:300])), repeats)
    results["native_kernel"] = float(native_kernel())
    if native_kernel():
        # The same engine on the pure-Python tables (FEDLEARN_NATIVE=0) and on the kernel's mpn
        # path (FEDLEARN_NATIVE=mpn: no AVX-512 IFMA), interleaved with the kernel's runs so all
        # see the same load: the kernel's speed-ups in this run.
        others = {}
        for setting in ("0", "mpn"):
            os.environ[NATIVE_ENV] = setting
            try:
                others[setting] = OwnKeyEngine(keypair)
            finally:
                del os.environ[NATIVE_ENV]
        engines = [own, others["0"], others["mpn"]]
        with others["0"], others["mpn"]:
            runs = [
                [median_rate(functools.partial(_encrypt_300, e, plaintexts), 1) for e in engines]
                for _ in range(repeats)
            ]
        results["encrypt_python_tables"] = statistics.median(run[1] for run in runs)
        results["encrypt_mpn"] = statistics.median(run[2] for run in runs)
        results["native_speedup"] = statistics.median(run[0] / run[1] for run in runs)
        results["ifma_speedup"] = statistics.median(run[0] / run[2] for run in runs)

    def online() -> int:
        own.prefill(BATCH)
        while own.pool_size() < BATCH:
            time.sleep(0.01)
        start = time.perf_counter()
        own.encrypt(plaintexts)
        return int(BATCH / (time.perf_counter() - start))  # rate without the (untimed) fill

    results["online_encrypt"] = statistics.median(online() for _ in range(repeats))
    with OwnKeyEngine(keypair, obfuscation="standard") as standard:
        results["encrypt_standard"] = median_rate(
            lambda: len(standard.encrypt(plaintexts[:30])), repeats
        )
    encrypted = own.encrypt(plaintexts)
    results["decrypt"] = median_rate(lambda: len(own.decrypt(encrypted[:100])), repeats)

    peer = PeerKeyEngine(keypair.public_key, djn_base=own.djn_base)
    layout = packing_layout(n, value_bound_bits=PACKED_VALUE_BITS)
    gradient = peer.matvec_t(blocks["16-bit"][:, :1].repeat(layout.slots * 4, axis=1), encrypted)
    packed, _ = peer.pack_masked(gradient, layout)
    results["packing_slots"] = layout.slots
    results["decrypt_per_value"] = median_rate(
        lambda: len(unpack(own.decrypt(packed), layout, len(gradient))), repeats
    )
    results["pack_masked_per_value"] = median_rate(
        lambda: _ops(peer.pack_masked(gradient, layout), len(gradient)), repeats
    )
    results["rerandomize"] = median_rate(lambda: len(peer.rerandomize(encrypted[:200])), repeats)
    for name, block in blocks.items():
        results[f"matvec_{name}"] = median_rate(
            functools.partial(lambda b: _ops(peer.matvec_t(b, encrypted), b.size), block), repeats
        )
    nonzero = int(np.count_nonzero(blocks["one-hot"]))
    results["matvec_one-hot_per_nonzero"] = (
        results["matvec_one-hot"] * nonzero / blocks["one-hot"].size
    )
    n_square = gmpy2.mpz(n) ** 2
    factors = encrypted[:1000]

    def mulmod() -> int:
        accumulator = gmpy2.mpz(1)
        for factor in factors:
            accumulator = accumulator * factor % n_square
        return len(factors)

    results["mulmod_n2"] = median_rate(mulmod, repeats)
    own.close()
    return results


def bench_heu(bits: int, residual: np.ndarray, blocks: dict[str, np.ndarray], repeats: int):
    """SecretFlow HEU's ZPaillier, one thread; None when ``heu`` is not installed."""
    try:
        from heu import numpy as hnp
        from heu import phe as hphe
    except ImportError:
        return None
    kit = hnp.setup(hphe.SchemaType.ZPaillier, bits)
    encryptor, evaluator, decryptor = kit.encryptor(), kit.evaluator(), kit.decryptor()
    encoder = kit.integer_encoder(scale=1)
    d = np.rint(residual * 2**16).astype(np.int64).reshape(-1, 1)
    plain = kit.array(d, encoder)
    results: dict[str, float] = {}
    results["encrypt"] = median_rate(lambda: _ops(encryptor.encrypt(plain), BATCH), repeats)
    encrypted = encryptor.encrypt(plain)
    results["decrypt_per_value"] = median_rate(
        lambda: _ops(decryptor.decrypt(encrypted), BATCH), repeats
    )
    for name in ("8-bit", "16-bit"):
        x = kit.array(np.ascontiguousarray(blocks[name].T.astype(np.int64)), encoder)
        size = blocks[name].size
        results[f"matvec_{name}"] = median_rate(
            functools.partial(lambda a, n: _ops(evaluator.matmul(a, encrypted), n), x, size),
            repeats,
        )
    one_hot = blocks["one-hot"]
    selections = [np.flatnonzero(column).tolist() for column in one_hot.T]
    results["matvec_one-hot"] = median_rate(
        lambda: _ops([evaluator.select_sum(encrypted, s) for s in selections], one_hot.size),
        repeats,
    )
    return results


ROWS = [
    ("encrypt under own key (ops/s)", "encrypt"),
    ("online encrypt from pool (ops/s)", "online_encrypt"),
    ("decryption, gradient values/s", "decrypt_per_value"),
    ("mat-vec one-hot (8 categories), terms/s", "matvec_one-hot"),
    ("mat-vec 8-bit, terms/s", "matvec_8-bit"),
    ("mat-vec 16-bit, terms/s", "matvec_16-bit"),
]


def markdown(phe_results: dict, engine: dict, heu: dict | None) -> str:
    header = (
        "| operation | phe as-is | phe, int x | engine | engine / phe as-is | engine / phe int |"
    )
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    if heu is not None:
        header += " HEU ZPaillier | engine / HEU |"
        rule += " ---: | ---: |"
    lines = [header, rule]
    for label, key in ROWS:
        baseline = phe_results["encrypt"] if key == "online_encrypt" else phe_results[key]
        as_is = phe_results.get(f"{key}_float", baseline)
        line = (
            f"| {label} | {as_is:,.0f} | {baseline:,.0f} | {engine[key]:,.0f} "
            f"| {engine[key] / as_is:.1f}x | {engine[key] / baseline:.1f}x |"
        )
        if heu is not None:
            heu_key = "encrypt" if key == "online_encrypt" else key
            if key == "online_encrypt":
                line += " | |"
            else:
                line += f" {heu[heu_key]:,.0f} | {engine[key] / heu[heu_key]:.1f}x |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--columns", type=int, default=4, help="dense columns for the engine")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    rng = np.random.default_rng(2024)
    keypair = generate_keypair(args.bits)
    residual = rng.normal(scale=0.5, size=BATCH)
    blocks = feature_blocks(rng, args.columns)
    print(f"{args.bits}-bit keys, batch {BATCH}, {args.repeats} repeats, one core", flush=True)
    phe_results = bench_phe(keypair, residual, blocks, args.repeats)
    engine = bench_engine(keypair, residual, blocks, args.repeats)
    heu = bench_heu(args.bits, residual, blocks, args.repeats)
    table = markdown(phe_results, engine, heu)
    print(table)
    print(
        f"\nengine extras: table setup {engine['setup_seconds']:.2f} s; standard (r^n) encrypt "
        f"{engine['encrypt_standard']:,.0f}/s; CRT decrypt {engine['decrypt']:,.0f}/s "
        f"({engine['packing_slots']} values per packed plaintext); pack_masked "
        f"{engine['pack_masked_per_value']:,.0f} values/s; re-randomise (DJN, public key) "
        f"{engine['rerandomize']:,.0f}/s; one-hot per non-zero term "
        f"{engine['matvec_one-hot_per_nonzero']:,.0f}/s; mulmod n^2 {engine['mulmod_n2']:,.0f}/s"
    )
    if engine["native_kernel"]:
        print(
            f"C kernel (fedlearn/crypto/_fixedbase.c): encrypt {engine['encrypt']:,.0f}/s; the "
            f"pure-Python tables {engine['encrypt_python_tables']:,.0f}/s; kernel / Python "
            f"{engine['native_speedup']:.2f}x; its mpn path (no IFMA) {engine['encrypt_mpn']:,.0f}/s"
            f", kernel / mpn {engine['ifma_speedup']:.2f}x (medians of {args.repeats} interleaved "
            f"runs; kernel: {kernel_description()})"
        )
    else:
        print("C kernel not built: the engine ran on the pure-Python tables")
    if heu is None:
        print("HEU (sf-heu) not installed: skipped")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bits": args.bits,
        "batch": BATCH,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "phe": phe_results,
        "engine": engine,
        "heu": heu,
        "table": table,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
