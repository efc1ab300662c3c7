"""Pause points for the fault-injection tests: a node stops at a named point so a test can kill it there.

``pause_point("commit")`` does nothing unless the environment variable ``FEDLEARN_PAUSE_AT`` names
the point (a comma-separated list; ``write:<file name>`` names one target of an atomic write). Then
the node logs ``pause point <name> reached`` and sleeps ``FEDLEARN_PAUSE_S`` seconds (default 60)
before going on, and the test kills it meanwhile (tests/e2e/test_faults_phases.py). The points
are where a kill would leave the most behind: between a write and its rename, between B's commit
and A's, in the middle of PSI and of scoring. Nothing sets the variable in production.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)
ENV = "FEDLEARN_PAUSE_AT"


def pause_point(name: str, detail: str = "") -> None:
    """Sleep here when ``FEDLEARN_PAUSE_AT`` lists ``name`` (or ``name:detail``)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    points = {point.strip() for point in wanted.split(",")}
    if name in points or (detail and f"{name}:{detail}" in points):
        log.warning("pause point %s reached", f"{name}:{detail}" if detail else name)
        time.sleep(float(os.environ.get("FEDLEARN_PAUSE_S", "60")))
