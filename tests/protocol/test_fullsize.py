"""The protocol with production-size keys (2048 bits): `make test-full` runs these, `make test` not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.model import fit_plain_reference
from fedlearn.protocol.policy import PeerPolicy
from tests.protocol.harness import TEST_ROWS_PER_COLUMN, fate_specs, job_text, rebuild, run_memory

pytestmark = pytest.mark.fullsize


def test_breast_with_2048_bit_keys_matches_the_plaintext_reference(tmp_path: Path) -> None:
    a_spec, b_spec = fate_specs("breast")
    # B's columns per batch row as the other protocol tests allow (breast: 20 columns at B).
    policy = PeerPolicy(
        min_key_bits=2048, min_batch_size=64, min_rows_per_column=TEST_ROWS_PER_COLUMN
    )
    run = run_memory(
        a_spec,
        b_spec,
        job_text(epochs=1, batch_size=128, key_bits=2048, learning_rate=0.02),
        tmp_path,
        policy=policy,
    )
    assert run.meta["job"]["key_bits"] == 2048
    data = rebuild(run)
    x_a = np.hstack([data["x_a"], np.ones((len(data["y"]), 1))])
    train = data["train"]
    reference = fit_plain_reference(
        x_a[train],
        data["x_b"][train],
        data["y"][train],
        epochs=1,
        batch_size=128,
        seed=42,
        optimizer=run.job.params.optimizer,
        learning_rate=0.02,
        l2=run.job.params.l2,
    )
    w_a, w_b = reference.w_a, reference.w_b
    got_a = np.array([*run.meta["a_weights"].values(), run.meta["intercept"]])
    np.testing.assert_allclose(got_a, w_a, atol=1e-4)
    np.testing.assert_allclose(np.asarray(run.b_shard["weights"]), w_b, atol=1e-4)
