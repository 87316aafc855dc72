"""The notebook runner leaves nothing behind at its hard limit, and its cache key knows the data.

- a notebook that starts Orthanc and then hangs is killed at the hard limit: no kernel, no Orthanc,
  the ports are free and the temporary folders are gone;
- seeding real data after a stand-in run invalidates the cached stand-in run;
- a kernel that dies before its first reply (many kernels starting at once) is started once more.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

from medlearn.course import notebooks as runner
from medlearn import pacs


def _write(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("FAST = False\nDATA = 'auto'", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not pacs.orthanc_available(), reason=pacs.INSTALL_HELP)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see which processes are alive")
def test_hard_limit_kills_the_kernel_and_the_orthanc_it_started(tmp_path, monkeypatch, port_free):
    info = tmp_path / "info.json"
    nb = _write(tmp_path / "nb" / "hang.ipynb",
                "import json, os, subprocess, tempfile, time\nfrom medlearn.pacs import Orthanc\np = Orthanc().start()\n"
                "other = subprocess.Popen(['sleep', '3600'], start_new_session=True)  # a helper of its own\n"
                f"json.dump({{'kernel': os.getpid(), 'orthanc': p.process.pid, 'dir': str(p.workdir), "
                f"'other': other.pid, "
                f"'tmp': tempfile.gettempdir(), 'ports': [p.http_port, p.dicom_port]}}, open({str(info)!r}, 'w'))\n"
                "time.sleep(3600)  # hangs with the server running")
    monkeypatch.setattr(runner, "hard_limit_for", lambda budget: 40.0)
    t0 = time.perf_counter()
    report = runner.run_notebooks([nb], tier="smoke", out_dir=tmp_path / "out", root=tmp_path,
                                  use_cache=False, quiet=True)
    waited = time.perf_counter() - t0
    (r,) = report.results
    assert r.status == "over-budget" and r.error == "Timeout", r.describe()
    assert waited < 40 + 60, f"the runner waited {waited:.0f} s after the hard limit (a pipe held open?)"
    started = json.loads(info.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(started["kernel"]) or _alive(started["orthanc"])):
        time.sleep(0.2)
    assert not _alive(started["kernel"]), "the kernel outlived the hard limit"
    assert not _alive(started["orthanc"]), "the Orthanc the notebook started outlived the hard limit"
    assert not _alive(started["other"]), "a process the kernel started in its own session survived"
    assert all(port_free(p) for p in started["ports"]), "Orthanc's ports are still taken"
    assert not Path(started["dir"]).exists() and not Path(started["tmp"]).exists(), "folders left behind"


def _printed_source(executed: Path) -> str:
    outputs = json.loads(executed.read_text())["cells"][-1]["outputs"]
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    return text.strip().splitlines()[-1]


def test_seeding_real_data_invalidates_a_stand_in_run(tmp_path, monkeypatch, shared_data):
    from medlearn.data import seed_cache

    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDLEARN_DATA", str(cache))
    monkeypatch.setenv("MEDLEARN_OFFLINE", "1")
    monkeypatch.setattr(runner, "_medlearn_digest", lambda: "pinned-for-test")
    nb = _write(tmp_path / "nb" / "data.ipynb",
                "from medlearn.data import load\nds = load('breastmnist', DATA, fast=True)\nprint(ds.source)")
    out = tmp_path / "out"
    first = runner.run_notebooks([nb], tier="smoke", out_dir=out, root=tmp_path, quiet=True)
    assert first.ok, first.failures()
    assert _printed_source(out / "nb" / "data.ipynb") == "synthetic"
    again = runner.run_notebooks([nb], tier="smoke", out_dir=out, root=tmp_path, quiet=True)
    assert again.results[0].status == "cached"
    before = runner.run_context_digest()
    seed_cache(shared_data, cache=cache)  # the real files arrive
    assert runner.run_context_digest() != before
    after = runner.run_notebooks([nb], tier="smoke", out_dir=out, root=tmp_path, quiet=True)
    assert after.results[0].status == "ok", "the stand-in run was served from the cache after seeding"
    assert _printed_source(out / "nb" / "data.ipynb") == "real"


def test_cache_key_includes_library_versions(tmp_path, monkeypatch):
    nb = _write(tmp_path / "x.ipynb", "x = 1")
    monkeypatch.setattr(runner, "_medlearn_digest", lambda: "pinned-for-test")
    key = runner.notebook_hash(nb, "smoke", {"FAST": True})
    versions = runner.library_versions()
    assert versions["torch"] != "absent" and versions["numpy"] != "absent"
    monkeypatch.setattr(runner, "library_versions", lambda: {**versions, "torch": "0.0.1"})
    assert runner.notebook_hash(nb, "smoke", {"FAST": True}) != key


@pytest.mark.parametrize("first_start", ["sys.exit(1)", "time.sleep(3600)"], ids=["dies", "hangs"])
def test_a_kernel_that_fails_at_start_is_started_once_more(tmp_path, monkeypatch, first_start):
    """A kernel spec whose first start exits at once, or never answers, like a kernel whose port was
    taken (both seen under `make test`)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "flaky"
    spec_dir.mkdir(parents=True)
    marker = tmp_path / "started-once"
    (spec_dir / "start.py").write_text(
        "import pathlib, runpy, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        f"if not marker.exists():\n    marker.write_text('x')\n    {first_start}\n"
        "sys.argv = ['ipykernel_launcher'] + sys.argv[1:]\n"
        "runpy.run_module('ipykernel_launcher', run_name='__main__')\n")
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(spec_dir / "start.py"), "-f", "{connection_file}"],
        "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setattr(runner, "KERNEL", "flaky")
    monkeypatch.setattr(runner, "KERNEL_START_TIMEOUT_S", 15)
    nb = _write(tmp_path / "nb" / "ok.ipynb", "print(6 * 7)")
    report = runner.run_notebooks([nb], tier="smoke", out_dir=tmp_path / "out", root=tmp_path,
                                  use_cache=False, quiet=True)
    (r,) = report.results
    assert marker.exists(), "the first start did not happen"
    assert r.status == "ok", r.describe()
