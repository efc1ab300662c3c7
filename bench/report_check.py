"""Render the decision report in a real headless browser and keep a screenshot (`make report-check`).

    python -m bench.report_check --out build/report-check

Builds a report from a seeded synthetic validation set (joint and A-only scores, one-hot weights,
few enough positives to show the small-sample warning), writes ``OUT/report.html``, opens it with
headless Chromium and writes ``OUT/screenshot.png``. Fails when no browser is found, when the
browser fails, or when the screenshot is blank (the page did not render). Look at the screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def sample_meta(rows: int = 1500, seed: int = 5) -> dict[str, Any]:
    """Model metadata as A's node records it, with synthetic validation scores."""
    from fedlearn import metrics

    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.12).astype(int)
    joint = 1 / (1 + np.exp(-(2.2 * y + rng.normal(size=rows) - 3.0)))
    a_only = 1 / (1 + np.exp(-(1.0 * y + rng.normal(size=rows) - 2.4)))
    weights = {"sessions_7d": 0.82, "tenure_days": 0.31, "age": -0.12, "age=<missing>": 0.05}
    for level, w in zip(
        ("android", "ios", "web", "<other>"), (-0.9, -0.2, -1.1, -1.0), strict=True
    ):
        weights[f"device_os={level}"] = w
    for level, w in zip(("ads", "organic", "referral"), (-0.5, 0.1, 0.4), strict=True):
        weights[f"signup_channel={level}"] = w
    return {
        "model_id": "vip-20261202-120000-abcd",
        "created_at": "2026-12-02T12:00:00Z",
        "partner": "party-b",
        "target_description": "30-day VIP buyers",
        "metrics": {"joint": metrics.summary(y, joint), "a_only": metrics.summary(y, a_only)},
        "curves": {
            "joint": {"y": y.tolist(), "score": joint.tolist()},
            "a_only": {"y": y.tolist(), "score": a_only.tolist()},
        },
        "a_weights": weights,
        "categorical_columns": ["device_os", "signup_channel"],
        "intercept": -2.6180339887498949,
        "loss_history": [{"epoch": e, "loss": 0.69 - 0.05 * e} for e in range(1, 6)],
        "timings": {"training": 48.2, "alignment": 1.9, "keys": 0.8, "evaluation": 2.1},
        "rows": {"own": 8000, "peer": 9000, "aligned": 7500, "train": 6000, "validation": rows},
        "traffic": {"a_to_b_bytes": 123456789, "b_to_a_bytes": 98765432},
        "job": {"epochs": 5, "batch_size": 1024, "learning_rate": 0.05},
    }


def screenshot(
    browser: str, page: Path, image: Path, *, width: int = 1200, height: int = 2600
) -> None:
    """Open ``page`` in headless ``browser`` and write a PNG screenshot to ``image``."""
    image.unlink(missing_ok=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={image}",
            page.absolute().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def is_blank(image: Path) -> bool:
    """True when the PNG is a single colour (nothing rendered)."""
    from matplotlib.image import imread

    pixels = imread(image)
    return bool(np.ptp(pixels[..., :3]) == 0)


def main(argv: list[str] | None = None) -> int:
    from fedlearn.report import write_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("build/report-check"), help="output folder"
    )
    args = parser.parse_args(argv)
    page = write_report(sample_meta(), args.out)
    browser = find_browser()
    if browser is None:
        print(
            "report-check: no Chromium found; install it (Debian: apt-get install chromium)",
            file=sys.stderr,
        )
        return 1
    image = args.out / "screenshot.png"
    screenshot(browser, page, image)
    if not image.is_file() or is_blank(image):
        print(f"report-check: {browser} rendered nothing for {page}", file=sys.stderr)
        return 1
    print(f"report:     {page}\nscreenshot: {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
