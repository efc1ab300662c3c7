"""The Ray executor on a local Ray with 2 CPUs: every kernel gives the process pool's results.

Deterministic kernels (mat-vec by column blocks and row slabs, residual powers, decryption, PSI
blinding) are compared bit for bit with a ``ProcessExecutor`` of the same size; random ones
(obfuscators, packing with re-randomisation) by decrypting. Then a whole training job and a scoring
job run in memory with both parties on Ray and must give the process pool's model and scores
exactly. Ray starts once for the module (about 10 s here).
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from fedlearn.crypto import psi  # noqa: E402
from fedlearn.crypto.executor import Executor, ProcessExecutor  # noqa: E402
from fedlearn.crypto.keys import KeyPair, generate_keypair  # noqa: E402
from fedlearn.crypto.packing import packing_layout, unmask, unpack  # noqa: E402
from fedlearn.crypto.paillier import OwnKeyEngine  # noqa: E402
from fedlearn.crypto.peer import PeerKeyEngine  # noqa: E402
from fedlearn.crypto.ray_executor import RayExecutor  # noqa: E402
from fedlearn.data import PartyTable, load_party_table  # noqa: E402
from fedlearn.errors import DataError  # noqa: E402
from fedlearn.job import parse_job  # noqa: E402
from fedlearn.protocol.in_memory import InMemoryPeer  # noqa: E402
from fedlearn.store import ModelStore  # noqa: E402
from party_a.score import score  # noqa: E402
from party_a.train import train  # noqa: E402
from party_b.node import NodeB  # noqa: E402
from tests.protocol.harness import TEST_POLICY, fate_specs, job_text  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def ray_executor() -> RayExecutor:
    # A quarter of a CPU per actor, so that both parties' two actors (and the kernel tests') fit
    # on the 2-CPU local Ray.
    return RayExecutor(2, cpus_per_worker=0.25)


@pytest.fixture(scope="module")
def executors(ray_runtime: None) -> Iterator[tuple[RayExecutor, ProcessExecutor]]:
    with ray_executor() as on_ray, ProcessExecutor(2) as on_pool:
        yield on_ray, on_pool


@pytest.fixture(scope="module")
def keypair() -> KeyPair:
    return generate_keypair(512)


def signed(value: int, n: int) -> int:
    return value - n if value > n // 2 else value


@pytest.mark.parametrize("rows, columns", [(600, 7), (600, 1), (40, 3), (1030, 2)])
def test_matvec_blocks_and_row_slabs_equal_the_process_pool(
    executors: tuple[RayExecutor, ProcessExecutor], keypair: KeyPair, rows: int, columns: int
) -> None:
    on_ray, on_pool = executors
    n = keypair.public_key.n
    generator = np.random.default_rng(rows + columns)
    x = generator.integers(-128, 128, size=(rows, columns))
    x[:, 0] = generator.integers(0, 2, size=rows)  # a 0/1 column takes the product kernel
    d = generator.integers(-(1 << 20), 1 << 20, size=rows)
    with OwnKeyEngine(keypair) as own:
        ciphertexts = own.encrypt([int(v) % n for v in d])
        results = [
            PeerKeyEngine(keypair.public_key, djn_base=None, executor=executor).matvec_t(
                x, ciphertexts
            )
            for executor in (on_ray, on_pool, None)
        ]
        decrypted = [signed(v, n) for v in own.decrypt(results[0])]
    assert results[0] == results[1] == results[2]
    assert decrypted == [int(v) for v in x.T.astype(object) @ d.astype(object)]


def test_residual_powers_and_decryption_equal_the_process_pool(
    executors: tuple[RayExecutor, ProcessExecutor], keypair: KeyPair
) -> None:
    on_ray, on_pool = executors
    n = keypair.public_key.n
    generator = np.random.default_rng(7)
    values = generator.integers(0, 1 << 20, size=700).tolist()
    exponents = generator.integers(0, 1 << 14, size=700).tolist()
    with OwnKeyEngine(keypair) as plain_own:
        ciphertexts = plain_own.encrypt(values)
    powers = [
        PeerKeyEngine(keypair.public_key, djn_base=None, executor=executor).scale(
            ciphertexts, exponents
        )
        for executor in (on_ray, on_pool)
    ]
    assert powers[0] == powers[1]
    decrypted = []
    for executor in (on_ray, on_pool):
        with OwnKeyEngine(keypair, executor=executor) as own:
            decrypted.append(own.decrypt(powers[0]))
    assert (
        decrypted[0] == decrypted[1] == [v * k % n for v, k in zip(values, exponents, strict=True)]
    )


def test_obfuscators_from_the_actors_decrypt_right(
    executors: tuple[RayExecutor, ProcessExecutor], keypair: KeyPair
) -> None:
    on_ray, _ = executors
    values = list(range(1000, 1300))
    with OwnKeyEngine(keypair, executor=on_ray) as own:
        ciphertexts = own.encrypt(values)  # 300 fresh obfuscators, one chunk per actor
        assert own.decrypt(ciphertexts) == values
    assert len(set(ciphertexts)) == len(ciphertexts)
    # The pool filled by the actors in the background (a node's background="executor").
    with OwnKeyEngine(keypair, executor=on_ray, background="executor") as own:
        own.prefill(600)
        deadline = time.monotonic() + 60
        while own.pool_size() < 600 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert own.pool_size() >= 600
        assert own.decrypt(own.encrypt(values)) == values


def test_actors_build_the_djn_tables_once_and_keep_them(
    executors: tuple[RayExecutor, ProcessExecutor], keypair: KeyPair
) -> None:
    on_ray, _ = executors

    def tables_held(_: object) -> tuple[int, list[int]]:
        from fedlearn.crypto import paillier

        return os.getpid(), [id(tables) for tables in paillier._WORKER_TABLES.values()]

    with OwnKeyEngine(keypair, executor=on_ray) as own:
        own.encrypt(list(range(200)))
        first = dict(on_ray.map(tables_held, [0, 1]))
        own.encrypt(list(range(200)))
        second = dict(on_ray.map(tables_held, [0, 1]))
    assert len(first) == 2  # two actors, each with its own tables
    assert first == second and all(len(held) >= 1 for held in first.values())


def test_a_call_goes_to_an_idle_actor_not_to_one_busy_with_other_work(
    executors: tuple[RayExecutor, ProcessExecutor],
) -> None:
    on_ray, _ = executors

    def slow_pid(_: object) -> int:
        time.sleep(3)
        return os.getpid()

    def pid(_: object) -> int:
        return os.getpid()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        # The pool's fill in the background, say: one long call holds one actor.
        busy = thread.submit(on_ray.map, slow_pid, [0])
        time.sleep(0.5)
        first = on_ray.map(pid, [0])[0]  # the free actor
        started = time.perf_counter()
        second = on_ray.map(pid, [0])[0]  # in turn it would be the busy one's
        waited = time.perf_counter() - started
        held = busy.result()[0]
    assert first == second != held
    assert waited < 2  # not queued behind the long call


def test_packing_on_the_actors_unpacks_to_the_values(
    executors: tuple[RayExecutor, ProcessExecutor], keypair: KeyPair
) -> None:
    on_ray, _ = executors
    n = keypair.public_key.n
    layout = packing_layout(n, value_bound_bits=30, mask_bits=40)
    values = [(-1) ** i * (i * 7919 % (1 << 29)) for i in range(5 * layout.slots + 2)]
    with OwnKeyEngine(keypair) as own:
        ciphertexts = own.encrypt([v % n for v in values])
        peer = PeerKeyEngine(keypair.public_key, djn_base=None, executor=on_ray)
        packed, masks = peer.pack_masked(ciphertexts, layout)
        assert len(packed) == layout.ciphertext_count(len(values))
        masked = unpack(own.decrypt(packed), layout, len(values))
    assert unmask(masked, masks, layout) == values


def test_psi_blinding_equals_the_process_pool(
    executors: tuple[RayExecutor, ProcessExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_ray, on_pool = executors
    monkeypatch.setattr(psi, "MIN_CHUNK_FOR_POOL", 50)  # chunks of 150 IDs, not 20,000
    key = psi.PsiKey.generate()
    salt = psi.session_salt(b"a" * 16, b"b" * 16)
    ids = [f"user-{i}" for i in range(300)]
    blinded = [key.blind_ids(ids, salt, executor=executor) for executor in (on_ray, on_pool)]
    assert blinded[0] == blinded[1] == key.blind_ids(ids, salt)
    twice = [key.blind_points(blinded[0], executor=executor) for executor in (on_ray, on_pool)]
    assert twice[0] == twice[1] == key.blind_points(blinded[0])
    # An error in a worker arrives as itself, naming the item.
    with pytest.raises(DataError, match="item 299"):
        key.blind_ids([*ids[:299], 5], salt, executor=on_ray)  # type: ignore[list-item]


# ---- a whole job on Ray ------------------------------------------------------------------------


def run_job(tmp: Path, executor_a: Executor, executor_b: Executor) -> tuple[Any, Any, pd.DataFrame]:
    """Train on FATE's breast split with each party on its own executor, then score its users."""
    a_spec, b_spec = fate_specs("breast")
    role = NodeB(
        name="party-b",
        datasets={b_spec.name: b_spec},
        policy=TEST_POLICY,
        model_dir=tmp / "b-models",
        allowed_partners={"party-a"},
        workers=executor_b.workers,
        executor=executor_b,
        background="executor" if executor_b.remote else "thread",
    )
    peer = InMemoryPeer(role, identity="party-a")
    table: PartyTable = load_party_table(
        a_spec.path,
        id_column=a_spec.id_column,
        label_column=a_spec.label_column,
        features=a_spec.features,
        categorical=a_spec.categorical,
        require_label=True,
    )
    try:
        meta = train(
            peer,
            table=table,
            spec=a_spec,
            job=parse_job(job_text(epochs=2, batch_size=128)),
            own_name="party-a",
            store=ModelStore(tmp / "a-models"),
            executor=executor_a,
            background="executor" if executor_a.remote else "thread",
        )
        b_shard = ModelStore(tmp / "b-models").load(meta["model_id"])
        score(
            peer,
            model=ModelStore(tmp / "a-models").load(meta["model_id"]),
            input_path=a_spec.path,
            output_path=tmp / "scores.csv",
            expected_partner="party-b",
            executor=executor_a,
        )
    finally:
        role.close()
    return meta, b_shard, pd.read_csv(tmp / "scores.csv")


def test_training_and_scoring_on_ray_equal_the_process_pool(
    ray_runtime: None, tmp_path: Path
) -> None:
    on_ray = run_job(tmp_path / "ray", ray_executor(), ray_executor())
    on_pool = run_job(tmp_path / "pool", ProcessExecutor(2), ProcessExecutor(2))
    (meta_ray, shard_ray, scores_ray), (meta_pool, shard_pool, scores_pool) = on_ray, on_pool
    assert meta_ray["a_weights"] == meta_pool["a_weights"]
    assert meta_ray["intercept"] == meta_pool["intercept"]
    assert shard_ray["weights"] == shard_pool["weights"]
    assert [r["loss"] for r in meta_ray["loss_history"]] == [
        r["loss"] for r in meta_pool["loss_history"]
    ]
    assert meta_ray["metrics"] == meta_pool["metrics"]
    assert len(scores_ray) == len(scores_pool) > 500
    assert set(scores_ray["model_id"]) == {meta_ray["model_id"]}  # two models, one each
    pd.testing.assert_frame_equal(
        scores_ray.drop(columns="model_id"), scores_pool.drop(columns="model_id"), check_exact=True
    )
    assert np.isfinite(scores_ray["score"]).all()
