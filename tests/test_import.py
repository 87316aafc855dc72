"""`import medlearn` stays fast: no heavy library is imported until a function needs it."""

from __future__ import annotations

import json
import pkgutil
import re
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


LIBRARY = [m for m in _submodules() if not m.startswith("medlearn.course")]
COURSE_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("medlearn.course"))))
"""


def test_student_library_loads_no_instructor_tooling():
    """`import medlearn` and every library module (what Colab runs) load nothing from medlearn.course."""
    out = subprocess.run([sys.executable, "-c", COURSE_PROBE, json.dumps(["medlearn", *LIBRARY])],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_library_sources_never_name_the_course_room():
    """The dependency points one way: medlearn.course imports the library, never the reverse."""
    imports = re.compile(r"^\s*(from\s+medlearn\.course\b|import\s+medlearn\.course\b"
                         r"|from\s+medlearn\s+import\s+.*\bcourse\b)", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "medlearn").rglob("*.py")
                 if p.relative_to(ROOT / "medlearn").parts[0] != "course" and imports.search(p.read_text())]
    assert offenders == []
