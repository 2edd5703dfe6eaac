"""The x86_64 Lambda layer built by python/build.sh: unzipped into an empty
folder, it alone serves the example handler (no site-packages)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

LAYER = ROOT / "python" / "dist" / "kinesis-agg-layer-x86_64.zip"

RUN = """
import importlib.util, json, sys
import kinesis_agg
assert kinesis_agg.__file__.startswith(sys.argv[1]), kinesis_agg.__file__
spec = importlib.util.spec_from_file_location("handler", sys.argv[2])
handler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handler)
event = json.load(open(sys.argv[3]))
print(json.dumps(handler.lambda_handler(event)))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the x86_64 layer runs on x86_64")
def test_layer_serves_the_handler_alone(tmp_path: Path) -> None:
    if not LAYER.exists():
        pytest.skip("no layer: python/build.sh builds it")
    with zipfile.ZipFile(LAYER) as z:
        names = z.namelist()
        assert all(n.startswith("python/") for n in names)
        assert "python/kinesis_agg/__init__.py" in names
        z.extractall(tmp_path)
    folder = str(tmp_path / "python")
    event = FIXTURES / "events" / "lambda_kinesis.json"
    handler = ROOT / "python" / "examples" / "lambda_function.py"
    out = subprocess.run(
        [sys.executable, "-S", "-c", RUN, folder, str(handler), str(event)],
        env={"PYTHONPATH": folder},
        cwd=str(tmp_path),  # not the source tree, whose kinesis_agg would shadow the layer's
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    sys.path.insert(0, str(ROOT / "python" / "examples"))
    import lambda_function

    assert got == lambda_function.lambda_handler(json.loads(event.read_text()))
    assert got["user_records"] > 0
