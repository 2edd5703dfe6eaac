"""The Python code in python/README.md runs as written."""

from __future__ import annotations

import re

from conftest import ROOT


def test_readme_examples_run() -> None:
    text = (ROOT / "python" / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "python/README.md", "exec"), {})
