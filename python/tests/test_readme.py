"""The Python code in python/README.md and in the project's README runs as
written."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT


@pytest.mark.parametrize("readme", ["python/README.md", "README.md"])
def test_readme_examples_run(readme: str) -> None:
    text = (ROOT / readme).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, readme, "exec"), {})
