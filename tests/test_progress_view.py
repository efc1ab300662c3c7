"""The CLI's progress view: ETA from measured batch times, plain lines off a terminal, loss once."""

from __future__ import annotations

import io
import math
import re

import pytest

from fedlearn.progress import ProgressEvent
from fedlearn.progress_view import BatchClock, ProgressView, format_duration


def _batch(epoch: int, batch: int, batches: int = 10, epochs: int = 3) -> ProgressEvent:
    return ProgressEvent("training", epoch=epoch, epochs=epochs, batch=batch, batches=batches)


def test_eta_from_measured_batch_times_ignores_a_slow_first_batch() -> None:
    clock = BatchClock()
    now = 0.0
    clock.tick(_batch(1, 1), now)
    now += 30.0  # the first interval includes warm-up: it must not dominate
    for batch in range(2, 8):
        clock.tick(_batch(1, batch), now)
        now += 2.0
    # The median of [30, 2, 2, 2, 2, 2] is 2 s; 3 batches left in epoch 1, then 20 more.
    assert clock.eta(_batch(1, 7)) == pytest.approx(2.0 * 23)
    assert math.isnan(BatchClock().eta(_batch(1, 1)))


def test_epoch_pause_counts_once_per_epoch_left() -> None:
    clock = BatchClock()
    t = 0.0
    for epoch in (1, 2):
        for batch in range(1, 11):
            clock.tick(_batch(epoch, batch), t)
            t += 1.0
        t += 5.0  # the loss exchange at the end of the epoch
    assert clock.epoch_pauses == [pytest.approx(5.0)]
    assert clock.eta(_batch(2, 10)) == pytest.approx(10 * 1.0 + 5.0)


def test_plain_lines_when_not_a_terminal_and_each_loss_once() -> None:
    out = io.StringIO()
    view = ProgressView(out)
    view.show(ProgressEvent("alignment", message="3 in common"))
    for batch in range(1, 11):
        view.show(_batch(1, batch))
    end = ProgressEvent(
        "training", epoch=1, epochs=3, batch=10, batches=10, loss=0.61, message="epoch 1: loss 0.61"
    )
    view.show(end)
    view.show(end)  # a watcher may see the same event twice
    view.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "[alignment] 3 in common"
    assert out.getvalue().count("loss 0.61") == 1
    assert lines[1].startswith("[training] epoch 1/3 batch 1/10 elapsed ")
    assert len(lines) == 3  # batch lines at most every PLAIN_EVERY_S seconds


@pytest.mark.parametrize("width", [60, 80, 120])
def test_live_bar_fits_the_terminal_width(width: int) -> None:
    out = io.StringIO()
    view = ProgressView(out, live=True, width=width)
    view.show(_batch(2, 5))
    view.show(
        ProgressEvent(
            "training", epoch=2, epochs=3, batch=5, batches=10, message="epoch 1: loss 0.5"
        )
    )
    view._bar.refresh()
    view.close()
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    rows = [row for row in re.split(r"[\r\n]", visible) if row.strip()]
    assert any("epoch 2/3" in row and "batch 5/10" in row for row in rows)
    assert rows.count("[training] epoch 1: loss 0.5") == 1
    assert max(len(row) for row in rows) <= width


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.4, "42s"), (187, "3:07"), (3723, "1:02:03"), (math.nan, "?")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_with_one_batch_per_epoch_counts_whole_epochs() -> None:
    # A small set trains with one batch per epoch: the ETA was "?" for the whole run.
    clock = BatchClock()
    for epoch in range(1, 5):
        clock.tick(_batch(epoch, 1, batches=1, epochs=10), 3.0 * epoch)
    assert clock.eta(_batch(4, 1, batches=1, epochs=10)) == pytest.approx(3.0 * 6)


def test_a_view_reattached_to_a_running_job_shows_the_jobs_elapsed_time() -> None:
    out = io.StringIO()
    view = ProgressView(out)
    view.show(ProgressEvent("training", epoch=3, epochs=12, batch=1, batches=10, elapsed_s=50.0))
    view.close()
    assert "epoch 3/12 batch 1/10 elapsed 50s" in out.getvalue()
