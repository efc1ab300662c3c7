"""The plain-phe baseline engine: same results as the plaintext math and as the fast engine.

512-bit seeded keys. The baseline must be interchangeable with the fast engine (its ciphertexts decrypt
with the fast engine and with phe, and the reverse), and the protocol must give the same model on it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlearn.config import DatasetSpec
from fedlearn.crypto import OwnKeyEngine, PeerKeyEngine
from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.engines import own_key_engine, peer_key_engine
from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.packing import packing_layout, unmask, unpack
from fedlearn.crypto.phe_engine import PheOwnKeyEngine, PhePeerKeyEngine
from fedlearn.errors import InvalidPeerData
from tests.crypto.conftest import seeded_keypair
from tests.protocol.harness import fate_specs, job_text, run_memory


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return seeded_keypair(512, seed=11)


@pytest.fixture(scope="module")
def own(keys: KeyPair) -> PheOwnKeyEngine:
    return PheOwnKeyEngine(keys)


@pytest.fixture(scope="module")
def peer(keys: KeyPair) -> PhePeerKeyEngine:
    return PhePeerKeyEngine(keys.public_key)


@pytest.fixture(scope="module")
def codec(keys: KeyPair) -> FixedPointCodec:
    return FixedPointCodec(keys.public_key.n)


def _signed(codec: FixedPointCodec, residues: list[int]) -> list[int]:
    return codec.decode_int(residues, bound=codec.max_int)


def test_round_trip_and_interchangeable_with_fast_engine_and_phe(keys: KeyPair, own) -> None:
    n = keys.public_key.n
    rng = random.Random(1)
    plaintexts = [0, 1, n - 1] + [rng.randrange(n) for _ in range(20)]
    ciphertexts = own.encrypt(plaintexts)
    assert all(1 <= c < keys.public_key.nsquare for c in ciphertexts)
    assert own.decrypt(ciphertexts) == plaintexts
    assert [keys.private_key.raw_decrypt(c) for c in ciphertexts] == plaintexts
    with OwnKeyEngine(keys) as fast:
        assert fast.decrypt(ciphertexts) == plaintexts
        assert own.decrypt(fast.encrypt(plaintexts)) == plaintexts
    # Standard obfuscation: encrypting the same value twice gives different ciphertexts.
    assert own.encrypt([5])[0] != own.encrypt([5])[0]
    assert own.djn_base is None and own.pool_size() == 0
    own.prefill(100)  # no-op
    assert own.pool_size() == 0


def test_matvec_dot_and_add_plain_equal_plaintext(own, peer, codec) -> None:
    rng = np.random.default_rng(2)
    d = rng.integers(-(2**30), 2**30, size=24)
    x_q = rng.integers(-127, 128, size=(24, 5)).astype(np.int32)
    x_q[:, 1] = rng.integers(0, 2, size=24)  # a binary column
    x_q[:, 2] = 0  # an all-zero column
    encrypted = own.encrypt(codec.encode_int(d))
    result = _signed(codec, own.decrypt(peer.matvec_t(x_q, encrypted)))
    assert result == (x_q.astype(object).T @ d.astype(object)).tolist()
    coeffs = [int(v) for v in rng.integers(-(2**16), 2**16, size=24)]
    dot = _signed(codec, own.decrypt([peer.dot(coeffs, encrypted)]))
    assert dot == [sum(c * int(v) for c, v in zip(coeffs, d, strict=True))]
    plain = [int(v) for v in rng.integers(-(2**20), 2**20, size=24)]
    added = peer.add_plain(encrypted, codec.encode_int(plain))
    assert _signed(codec, own.decrypt(added)) == [int(a) + b for a, b in zip(d, plain, strict=True)]


def test_rerandomize_changes_ciphertext_not_plaintext(own, peer, codec) -> None:
    encrypted = own.encrypt(codec.encode_int([-7, 0, 42]))
    fresh = peer.rerandomize(encrypted)
    assert all(a != b for a, b in zip(fresh, encrypted, strict=True))
    assert _signed(codec, own.decrypt(fresh)) == [-7, 0, 42]


def test_pack_masked_unpacks_to_the_values_on_both_engines(keys: KeyPair, own, peer, codec) -> None:
    layout = packing_layout(keys.public_key.n, value_bound_bits=40)
    values = [int(v) for v in np.random.default_rng(3).integers(-(2**39), 2**39, size=7)]
    encrypted = own.encrypt(codec.encode_int(values))
    packed, masks = peer.pack_masked(encrypted, layout)
    assert len(packed) == layout.ciphertext_count(len(values))
    with OwnKeyEngine(keys) as fast:
        for decrypt in (own.decrypt, fast.decrypt):
            masked = unpack(decrypt(packed), layout, len(values))
            assert unmask(masked, masks, layout) == values
        # The fast peer engine's packing decrypts with the baseline too.
        fast_peer = PeerKeyEngine(keys.public_key, djn_base=fast.djn_base)
        packed_fast, masks_fast = fast_peer.pack_masked(encrypted, layout)
        masked = unpack(own.decrypt(packed_fast), layout, len(values))
        assert unmask(masked, masks_fast, layout) == values


def test_out_of_range_ciphertexts_are_refused(keys: KeyPair, own, peer) -> None:
    bad = [0, keys.public_key.nsquare]
    for value in bad:
        with pytest.raises(InvalidPeerData):
            own.decrypt([value])
        with pytest.raises(InvalidPeerData):
            peer.rerandomize([value])
    with pytest.raises(ValueError, match="encode it first"):
        own.encrypt([keys.public_key.n])


def test_engine_factory_builds_the_baseline(keys: KeyPair) -> None:
    assert isinstance(own_key_engine("phe", keys), PheOwnKeyEngine)
    assert isinstance(peer_key_engine("phe", keys.public_key, djn_base=None), PhePeerKeyEngine)


def _subsample(tmp: Path, rows: int) -> tuple[DatasetSpec, DatasetSpec]:
    a_spec, b_spec = fate_specs("default_credit")
    a = pd.read_csv(a_spec.path).head(rows)
    b = pd.read_csv(b_spec.path)
    b = b[b["id"].isin(a["id"])]
    a.to_csv(tmp / "a.csv", index=False)
    b.to_csv(tmp / "b.csv", index=False)
    return (
        DatasetSpec("d", tmp / "a.csv", "id", "y", None, []),
        DatasetSpec("d", tmp / "b.csv", "id", None, None, []),
    )


@pytest.mark.slow
def test_training_on_phe_gives_the_same_model_as_fast(tmp_path: Path) -> None:
    a_spec, b_spec = _subsample(tmp_path, 240)
    runs = {}
    for engine in ("fast", "phe"):
        job = job_text(epochs=2, batch_size=64, extra=f'engine = "{engine}"')
        runs[engine] = run_memory(a_spec, b_spec, job, tmp_path / engine)
    fast, phe = runs["fast"], runs["phe"]
    assert phe.meta["job"]["epochs"] == 2
    w_fast = np.array([*fast.meta["a_weights"].values(), fast.meta["intercept"]])
    w_phe = np.array([*phe.meta["a_weights"].values(), phe.meta["intercept"]])
    assert np.abs(w_fast).max() > 1e-3  # something was learned
    np.testing.assert_allclose(w_phe, w_fast, atol=1e-6, rtol=0)
    np.testing.assert_allclose(phe.b_shard["weights"], fast.b_shard["weights"], atol=1e-6, rtol=0)
    losses = [[r["loss"] for r in run.meta["loss_history"]] for run in (fast, phe)]
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-6, rtol=0)


def test_scale_and_add_agree_across_engines(keys: KeyPair) -> None:
    """The residual's operations ([[m]]^k and [[a]][[b]]) give the same plaintexts on both engines."""
    with OwnKeyEngine(keys) as fast:
        fast_peer = PeerKeyEngine(keys.public_key, djn_base=None)
        phe_peer = PhePeerKeyEngine(keys.public_key)
        a, b = fast.encrypt([5, 7, 0]), fast.encrypt([11, 13, 17])
        factors = [3, 0, (1 << 20) - 1]
        for peer in (fast_peer, phe_peer):
            assert fast.decrypt(peer.scale(a, factors)) == [15, 0, 0]
            assert fast.decrypt(peer.add(a, b)) == [16, 20, 17]
        with pytest.raises(InvalidPeerData):
            phe_peer.add(a, [0, 1, 2])
        with pytest.raises(InvalidPeerData):
            fast_peer.scale([keys.public_key.nsquare, 1, 1], factors)
        with pytest.raises(ValueError, match="factors"):
            phe_peer.scale(a, factors[:2])
