"""How the CLI shows a job's progress on stderr: a live bar on a terminal, plain lines otherwise.

On a terminal the bar is drawn by ``rich`` (it fits the terminal's width, follows resizes and
redraws without leaving stale rows); lines that stay (a phase's message, each epoch's loss, once)
are printed above it. Elsewhere (a pipe, a log file, CI) every message is one plain line, and batch
progress at most one line every ``PLAIN_EVERY_S`` seconds.

The ETA comes from the batch times measured here: the median of the last ``ETA_WINDOW`` intervals
between batch events (an interval that spans an epoch's end, which includes the loss exchange, is
left out) times the batches still to run, plus the measured epoch-end pause for each epoch left.
With one batch per epoch the intervals are whole epochs, end included. With ``epochs = "auto"`` the
epochs are the budget, so the ETA is an upper bound: the job usually converges before.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import IO, Any

from fedlearn.progress import ProgressEvent

ETA_WINDOW = 20
PLAIN_EVERY_S = 10.0


def format_duration(seconds: float) -> str:
    """``"42s"``, ``"3:07"``, ``"1:02:03"``; ``"?"`` when not known."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class BatchClock:
    """Measures batch intervals and epoch-end pauses; estimates the time left (seconds)."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self.epoch_pauses: list[float] = []
        self.last: tuple[int, int, float] | None = None  # (epoch, batch, monotonic time)

    def tick(self, event: ProgressEvent, now: float) -> None:
        if not event.batches:
            return
        if self.last is not None:
            epoch, batch, then = self.last
            if (event.epoch, event.batch) == (epoch, batch):
                return  # the epoch-end event repeats the epoch's last batch
            if event.epoch == epoch and event.batch == batch + 1:
                self.intervals = [*self.intervals, now - then][-ETA_WINDOW:]
            elif event.epoch == epoch + 1 and event.batches == 1:
                # One batch per epoch (a small set): the interval is a whole epoch, end included.
                self.intervals = [*self.intervals, now - then][-ETA_WINDOW:]
            elif event.epoch == epoch + 1 and event.batch == 1:
                pause = now - then - (statistics.median(self.intervals) if self.intervals else 0.0)
                self.epoch_pauses = [*self.epoch_pauses, max(pause, 0.0)][-ETA_WINDOW:]
        self.last = (event.epoch, event.batch, now)

    def eta(self, event: ProgressEvent) -> float:
        if not self.intervals or not event.batches:
            return math.nan
        epochs = max(event.epochs, 1)
        left = (epochs - max(event.epoch, 1)) * event.batches + (event.batches - event.batch)
        pauses = (epochs - max(event.epoch, 1)) * (
            statistics.median(self.epoch_pauses) if self.epoch_pauses else 0.0
        )
        return statistics.median(self.intervals) * left + pauses


class ProgressView:
    """Shows :class:`ProgressEvent` s on ``stream`` (stderr by default); call :meth:`close` after."""

    def __init__(
        self, stream: IO[str] | None = None, *, live: bool | None = None, width: int | None = None
    ) -> None:
        """``live``: draw a bar (default: when ``stream`` is a terminal); ``width``: columns
        (default: the terminal's, followed as it is resized)."""
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.live = self.stream.isatty() if live is None else live
        self.clock = BatchClock()
        self.started = time.monotonic()
        self.last_plain = -math.inf
        self.last_message = ""
        self._bar: Any = None
        self._task: Any = None

    def show(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if math.isfinite(event.elapsed_s) and event.elapsed_s > 0:
            # The job's own clock: a view that reattaches to a running job shows its elapsed time,
            # not the time since the view opened.
            self.started = min(self.started, now - event.elapsed_s)
        self.clock.tick(event, now)
        if event.message and event.message != self.last_message:
            self.last_message = event.message
            self._print(f"[{event.phase}] {event.message}")
        if self.live:
            self._draw(event, now)
        elif event.batches and now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            self._print(self._status_line(event, now))

    def _status_line(self, event: ProgressEvent, now: float) -> str:
        parts = [f"[{event.phase}]"]
        if event.epochs:
            parts.append(f"epoch {event.epoch}/{event.epochs}")
        if event.batches:
            parts.append(f"batch {event.batch}/{event.batches}")
        parts.append(f"elapsed {format_duration(now - self.started)}")
        parts.append(f"ETA {format_duration(self.clock.eta(event))}")
        return " ".join(parts)

    def _draw(self, event: ProgressEvent, now: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        if self._bar is None:
            from rich.console import Console

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                TextColumn("{task.fields[status]}"),
                console=Console(file=self.stream, force_terminal=True, width=self.width),
                transient=True,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=None, status="")
        description = f"[{event.phase}]"
        if event.epochs:
            description += f" epoch {event.epoch}/{event.epochs}"
        status = f"elapsed {format_duration(now - self.started)}"
        total = None
        completed = 0
        if event.batches:
            total = event.batches * max(event.epochs, 1)
            completed = (max(event.epoch, 1) - 1) * event.batches + event.batch
            status = f"batch {event.batch}/{event.batches} {status} "
            status += f"ETA {format_duration(self.clock.eta(event))}"
        self._bar.update(
            self._task, description=description, total=total, completed=completed, status=status
        )

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
