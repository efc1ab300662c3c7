"""Label differential privacy: A's noise on the gradient B learns (job [privacy] gradient_noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.protocol.harness import fate_specs, job_text, run_memory


def _run(tmp: Path, noise: float):
    a_spec, b_spec = fate_specs("breast")
    privacy = f"gradient_noise = {noise}"
    return run_memory(a_spec, b_spec, job_text(epochs=3, batch_size=64, privacy=privacy), tmp)


def test_noise_changes_bs_weights_and_keeps_a_usable_model(tmp_path: Path) -> None:
    clean = _run(tmp_path / "clean", 0.0)
    noisy = _run(tmp_path / "noisy", 0.05)
    assert noisy.meta["job"]["privacy"]["gradient_noise"] == 0.05
    w_clean = np.asarray(clean.b_shard["weights"])
    w_noisy = np.asarray(noisy.b_shard["weights"])
    # Same split and batches (same seed): only the noise differs.
    assert np.abs(w_noisy - w_clean).max() > 1e-3
    assert noisy.meta["metrics"]["joint"]["auc"] > 0.9


def test_zero_noise_is_reproducible(tmp_path: Path) -> None:
    first = _run(tmp_path / "one", 0.0)
    second = _run(tmp_path / "two", 0.0)
    np.testing.assert_allclose(first.b_shard["weights"], second.b_shard["weights"], atol=1e-9)
    assert first.meta["metrics"]["joint"]["auc"] == second.meta["metrics"]["joint"]["auc"]
