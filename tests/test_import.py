"""`import medlearn` stays fast: no heavy library is imported until a function needs it."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "fastai", "monai", "torchio", "SimpleITK", "pydicom", "matplotlib"]

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import importlib; importlib.import_module(sys.argv[1])
dt = time.perf_counter() - t0
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"seconds": dt, "heavy": heavy}))
"""


def probe(module: str) -> dict:
    """Return the import time and the heavy modules loaded by importing `module` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE, module, json.dumps(HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_medlearn_imports_no_heavy_library():
    result = probe("medlearn")
    print(f"\nimport medlearn: {result['seconds'] * 1000:.0f} ms")  # the record; no wall-clock assert
    assert result["heavy"] == [], (f"`import medlearn` imported {result['heavy']}; move those imports "
                                   "inside the functions that use them (CONTRIBUTING.md, 'Library')")


def _submodules() -> list[str]:
    import medlearn

    return sorted(m.name for m in pkgutil.walk_packages(medlearn.__path__, "medlearn.")
                  if not m.name.rsplit(".", 1)[-1].startswith("_"))


@pytest.mark.parametrize("module", _submodules())
def test_submodule_defers_heavy_imports(module):
    result = probe(module)
    # A submodule that draws (medlearn.viz) may import matplotlib; torch & co. must still wait.
    heavy = [m for m in result["heavy"] if m != "matplotlib"]
    print(f"\nimport {module}: {result['seconds'] * 1000:.0f} ms")
    assert heavy == [], f"`import {module}` imported {heavy}; import them inside the functions that need them"
