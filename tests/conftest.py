"""Test tiers. ``make test-fast`` skips tests marked ``slow``, ``e2e`` or ``fullsize``.

Modules whose tests run the whole protocol in memory (key generation, PSI and training on FATE's data),
or render many charts (the report), are marked ``slow`` here, in one list, rather than test by test;
a single slow test elsewhere carries ``@pytest.mark.slow`` itself.
"""

from __future__ import annotations

import pytest

SLOW_MODULES = (
    "tests/protocol/test_training_memory.py",
    "tests/protocol/test_privacy.py",
    "tests/protocol/test_scoring.py",
    "tests/protocol/test_label_dp.py",
    "tests/test_report.py",
    "tests/test_report_browser.py",
    "tests/test_scores_report.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("::")[0] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
