"""Issue 10's properties, in memory with 512-bit keys: where training starts, why it stops, and
what the job's defaults ask B's policy for.

- the intercept starts at the training rows' log-odds (A knows the labels);
- a run that uses up its epoch budget says so ("not converged: ... raise [train] epochs");
- a converged run says so, with the tolerance it met, and its last score changes are below it;
- the "auto" budget that B's policy refuses gets a message that names max_epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fedlearn.errors import PolicyViolation
from fedlearn.protocol.policy import PeerPolicy
from tests.protocol.harness import TEST_ROWS_PER_COLUMN, fate_specs, rebuild, run_memory

# Whole training runs (breast, 512-bit keys, 5-20 s each): not in `make test-fast`.
pytestmark = pytest.mark.slow


def _job(train: str, stopping: str = "") -> str:
    return f"""
[data]
dataset = "d"
[train]
batch_size = 128
{train}
[early_stopping]
{stopping}
[crypto]
key_bits = 512
[privacy]
min_rows_per_column = {TEST_ROWS_PER_COLUMN}
"""


def test_intercept_starts_at_the_training_log_odds(tmp_path: Path) -> None:
    # A step size so small that one epoch cannot move the weights: what is left is the start.
    run = run_memory(*fate_specs("breast"), _job("epochs = 1\nlearning_rate = 1e-9"), tmp_path)
    data = rebuild(run)
    rate = data["y"][data["train"]].mean()
    assert abs(rate - 0.5) > 0.1  # a start at 0 would be far from it
    assert run.meta["intercept"] == pytest.approx(math.log(rate / (1 - rate)), abs=1e-6)


def test_a_run_that_uses_up_its_budget_says_so(tmp_path: Path) -> None:
    run = run_memory(*fate_specs("breast"), _job("epochs = 2"), tmp_path)
    stopped = run.meta["stopped"]
    assert stopped["reason"] == "budget" and stopped["epochs"] == 2
    assert stopped["message"].startswith("not converged")
    assert "raise [train] epochs" in stopped["message"]
    assert run.meta["epochs_completed"] == 2


def test_a_converged_run_says_so_with_its_tolerance(tmp_path: Path) -> None:
    job = _job('epochs = "auto"\nmax_epochs = 50', "tolerance = 0.25\npatience = 2")
    run = run_memory(*fate_specs("breast"), job, tmp_path)
    stopped = run.meta["stopped"]
    history = run.meta["loss_history"]
    assert stopped["reason"] == "converged" and stopped["tolerance"] == 0.25
    assert "0.25" in stopped["message"] and stopped["epochs"] == len(history) < 50
    changes = [record["score_change"] for record in history]
    assert all(change < 0.25 for change in changes[-2:])
    assert changes[0] >= 0.25  # the first epoch moved the model: the stop is not vacuous


def test_auto_budget_above_b_policy_names_max_epochs(tmp_path: Path) -> None:
    policy = PeerPolicy(min_key_bits=512, min_batch_size=16, max_epochs=40)
    with pytest.raises(PolicyViolation) as refused:
        run_memory(*fate_specs("breast"), _job('epochs = "auto"'), tmp_path, policy=policy)
    message = str(refused.value)
    assert "epochs 100 is above the maximum 40" in message
    assert "set [train] max_epochs" in message


def test_combined_score_change_is_a_and_b_parts(tmp_path: Path) -> None:
    run = run_memory(*fate_specs("breast"), _job("epochs = 2"), tmp_path)
    for record in run.meta["loss_history"]:
        both = np.hypot(record["own_score_change"], record["peer_score_change"])
        assert record["score_change"] == pytest.approx(both)
        assert record["peer_score_change"] > 0  # B told its part
