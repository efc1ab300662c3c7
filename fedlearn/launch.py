"""Start a party node as a real process and wait until it listens; stop it with SIGTERM.

Used by the demo, the end-to-end tests and the benchmarks, so all three run the nodes exactly as a
user would (``party-a serve --config a.toml``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from fedlearn.errors import FedlearnError


class NodeProcess:
    """A running ``party-a`` or ``party-b`` process, its log file and the line it printed on start."""

    def __init__(
        self,
        role: str,
        config: Path,
        log_path: Path,
        *,
        timeout_s: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        module = {"a": "party_a.main", "b": "party_b.main"}[role]
        self.role = role
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.ready_line = self._wait_ready(timeout_s)
        self._drain = threading.Thread(target=self._copy_stdout, daemon=True)
        self._drain.start()

    def _wait_ready(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if "listening" in line:
                return line.strip()
            if not line and self.process.poll() is not None:
                break
        self.stop()
        log = self.log_path.read_text(encoding="utf-8")[-2000:]
        raise FedlearnError(
            f"party-{self.role} did not start (exit {self.process.returncode}):\n{log}"
        )

    def _copy_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait for the graceful stop; SIGKILL if it takes longer. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def kill(self) -> None:
        """Kill at once (tests of a peer that dies mid-job)."""
        self.process.kill()
        self.process.wait()
