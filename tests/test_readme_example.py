"""The README's custom-space example runs as written: a custom space searched and its result exported."""
from __future__ import annotations

import os
import re

from conftest import REPO


def test_readme_custom_space_example(tmp_path):
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "class TinyCNN" in b)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(compile(example.replace('print(report.summary)', 'print(report.summary)\nglobals()["r"] = report'),
                     "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    report = namespace["r"]
    assert report.best is not None and report.best.metrics["accuracy"] > 10
    assert (tmp_path / "runs/tiny/model/net.py").exists()
