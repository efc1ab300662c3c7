"""The decision report in a real headless browser (skipped when Chromium is not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.report_check import find_browser, is_blank, sample_meta, screenshot
from fedlearn.report import write_report


@pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    from matplotlib.image import imread

    page = write_report(sample_meta(), tmp_path / "r")
    image = tmp_path / "r" / "screenshot.png"
    screenshot(str(find_browser()), page, image, width=1000, height=1400)
    assert not is_blank(image)
    pixels = imread(image)[..., :3]
    assert pixels.shape[:2] == (1400, 1000)
    # The inline charts rendered: the joint model's blue (#1f77b4) is on the page.
    blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.02, axis=-1)
    assert blue.sum() > 500
