"""The ways into the course stay in step: environment.yml names every dependency of pyproject.toml
with the same range, `medlearn fetch-samples` downloads the sample data md5-checked, and on CI
(CI=true) a missing PACS or missing sample data fail the tests instead of skipping them.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: conda-forge names of PyPI packages whose names differ there.
CONDA_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}


def pyproject_requirements() -> dict[str, SpecifierSet]:
    """Return {name: specifier} of the dependencies and the `course` and `dev` extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("course", "dev"):
        reqs += project["optional-dependencies"][extra]
    out = {}
    for r in reqs:
        req = Requirement(r)
        out[canonicalize_name(req.name)] = req.specifier
    return out


def environment_requirements() -> tuple[dict[str, SpecifierSet], dict, list[str]]:
    """Return ({name: specifier} of environment.yml, the parsed file, its pip lines)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep.strip())
        name = canonicalize_name(CONDA_NAMES.get(m[1], m[1]))
        out[name] = SpecifierSet(m[2].replace(" ", ""))
    for line in pip:
        if line.startswith("-e"):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in out, f"{name} is in environment.yml twice (conda and pip)"
        out[name] = req.specifier
    return out, env, pip


def test_environment_yml_names_every_pyproject_dependency_with_its_range():
    wanted = pyproject_requirements()
    have, env, pip = environment_requirements()
    missing = sorted(set(wanted) - set(have))
    assert not missing, (f"environment.yml lacks {missing}: add each to its conda-forge list (or to "
                         "its pip: section when conda-forge has no package) with pyproject.toml's range")
    drifted = {n: (str(have[n]), str(s)) for n, s in wanted.items() if have[n] != s}
    assert not drifted, f"ranges differ (environment.yml, pyproject.toml): {drifted}"
    extra = sorted(set(have) - set(wanted) - {"python", "pip"})
    assert not extra, f"environment.yml names packages pyproject.toml does not: {extra}"


def test_environment_yml_uses_conda_forge_the_same_python_and_installs_the_course():
    have, env, pip = environment_requirements()
    assert env["channels"] == ["conda-forge"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert have["python"] == SpecifierSet(requires)
    assert "-e .[course,dev]" in pip, "the course itself, with its extras, is installed by pip"


def test_the_readme_tells_conda_users_how():
    assert "conda env create -f environment.yml" in (ROOT / "README.md").read_text()


# ---------------------------------------------------------------- fetch-samples
def _fake_registry(tmp_path: Path, payload: bytes, md5: str):
    from medlearn.data.registry import Entry, RemoteFile

    src = tmp_path / "upstream" / "scan.nii.gz"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    f = RemoteFile("fake/scan.nii.gz", src.as_uri(), md5, len(payload), seed_from="fake_set/scan.nii.gz")
    return {"fake": Entry(name="fake", title="Fake", kind="files", task="", license="", citation="",
                          files={None: (f,)})}


def test_fetch_samples_downloads_md5_checked_into_the_shared_data_layout(tmp_path, monkeypatch, capsys):
    import medlearn.data as data
    from medlearn.course.cli import main

    payload = b"real bytes" * 100
    monkeypatch.setattr(data, "REGISTRY", _fake_registry(tmp_path, payload, hashlib.md5(payload).hexdigest()))
    dest = tmp_path / "samples"
    assert main(["fetch-samples", str(dest)]) == 0
    assert (dest / "fake_set" / "scan.nii.gz").read_bytes() == payload
    assert "1 downloaded" in capsys.readouterr().out
    assert main(["fetch-samples", str(dest)]) == 0
    assert "0 downloaded" in capsys.readouterr().out, "a verified file is not downloaded again"


def test_fetch_samples_refuses_a_file_with_the_wrong_md5(tmp_path, monkeypatch):
    import medlearn.data as data
    from medlearn.course.cli import fetch_samples
    from medlearn.data import ChecksumError

    monkeypatch.setattr(data, "REGISTRY", _fake_registry(tmp_path, b"tampered", "0" * 32))
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        fetch_samples(tmp_path / "samples")
    assert not [p for p in (tmp_path / "samples").rglob("*") if p.is_file()], "no partial file"


# ---------------------------------------------------------------- strict on CI
def _pytest(env_extra: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MEDLEARN_REQUIRE_PACS",
                                                            "MEDLEARN_REQUIRE_DATA", "MEDLEARN_DATA")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsfE",
                           "-o", "addopts=", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


NEEDS_BOTH = ["tests/test_pacs.py", "tests/test_dicom.py::test_real_ct_series_matches_simpleitk"]


def test_missing_pacs_and_data_skip_off_ci_but_fail_on_ci(tmp_path):
    lacking = {"ORTHANC_EXECUTABLE": str(tmp_path / "no" / "Orthanc"),
               "MEDLEARN_SHARED_DATA": str(tmp_path / "no-data")}
    relaxed = _pytest(lacking, *NEEDS_BOTH)
    assert relaxed.returncode == 0, relaxed.stdout[-3000:]
    assert "2 skipped" in relaxed.stdout, relaxed.stdout[-3000:]

    # (a PACS module that cannot run is a collection error: alone, it stops the whole session)
    strict = _pytest({**lacking, "CI": "true"}, "--continue-on-collection-errors", *NEEDS_BOTH)
    out = strict.stdout
    assert strict.returncode == 1, out[-3000:]
    assert "skipped" not in out.splitlines()[-1], out[-3000:]
    assert "a real PACS is required here" in out and "apt-get install -y orthanc" in out, out[-3000:]
    assert "real sample data not found" in out and "fetch-samples" in out, out[-3000:]


def test_pytest_xdist_keeps_each_group_on_one_worker(tmp_path):
    """`make test` shares the suite among xdist workers by group (tests/conftest.py); a pytest that
    drops the groups (9.2: pytest-dev/pytest-xdist#1386) would rerun each group's expensive fixture
    on every worker. Two modules of three tests, grouped by module as the course's conftest does."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.hookimpl(tryfirst=True)\n"
        "def pytest_collection_modifyitems(config, items):\n"
        "    for item in items:\n        item.add_marker(pytest.mark.xdist_group(item.path.stem))\n")
    for module in ("test_one", "test_two"):
        (tmp_path / f"{module}.py").write_text(
            "import os\n\n" + "".join(
                f"def test_{i}():\n    with open('workers.txt', 'a') as f:\n"
                f"        f.write(__name__ + ' ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n\n"
                for i in range(3)))
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
                          "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers: dict[str, set[str]] = {}
    for line in (tmp_path / "workers.txt").read_text().splitlines():
        module, worker = line.split()
        workers.setdefault(module, set()).add(worker)
    assert sorted(workers) == ["test_one", "test_two"]
    assert all(len(w) == 1 for w in workers.values()), f"a group ran on several workers: {workers}"


def test_reading_a_notebook_builds_no_iri_grammar():
    """jsonschema < 4.25 (pyproject.toml, `course`): from 4.25 on, importing jsonschema (nbformat does,
    and MONAI's bundle module) imports rfc3987-syntax, which builds a grammar: 1.3-1.9 s of CPU in
    every notebook kernel and every process that reads a notebook."""
    probe = "import sys, nbformat, nbformat.validator, jsonschema; print('rfc3987_syntax' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False", "jsonschema imports rfc3987_syntax: is jsonschema >= 4.25?"
