"""README's job example shows the real defaults: every line not marked `demo:` is the default."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

from fedlearn.job import parse_job

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_job_example_values_are_the_defaults() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    job_blocks = [textwrap.dedent(b) for b in blocks if "[train]" in b]
    assert len(job_blocks) == 1
    lines = job_blocks[0].splitlines()
    demo = [line for line in lines if "# demo:" in line]
    assert demo, "the demo's own values must be marked `# demo:`"
    kept = "\n".join(line for line in lines if "# demo:" not in line)
    kept = kept.replace("[data]", '[data]\ndataset = "vip"', 1)
    shown = parse_job(kept, "README.md")
    default = parse_job('[data]\ndataset = "vip"\n', "README.md")
    assert dataclasses.asdict(shown) == dataclasses.asdict(default)
    # Each section of the job file is shown (so a new default has a place to be documented).
    for section in ("data", "train", "early_stopping", "crypto", "preprocess", "privacy"):
        assert f"[{section}]" in job_blocks[0]
