"""The runner and the book build catch what they must: errors, overruns, parameters, cache, broken refs.

Everything runs on tiny throwaway notebooks in a temporary mini-book that uses the project's own
_config.yml and references.bib, so a regression in either (e.g. losing nb_execution_raise_on_error)
fails here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from medlearn.course import notebooks as runner
from medlearn.course.book import build_book, toc_files
from medlearn.course.cli import main as cli_main

pytestmark = pytest.mark.notebook


def write_notebook(path: Path, *cells: str, parameters: bool = True, title: str = "Sample") -> Path:
    """Write a notebook: a title, a `parameters` cell (FAST=False, DATA="auto"), then `cells`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    if parameters:
        p = nbformat.v4.new_code_cell('FAST = False\nDATA = "auto"')
        p.metadata["tags"] = ["parameters"]
        nb.cells.append(p)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def mini_book(root: Path, project_root: Path, pages: dict[str, str], notebooks: dict[str, list[str]]) -> Path:
    """Return a mini-book at `root` with the project's _config.yml and references.bib."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(project_root / "_config.yml", root / "_config.yml")
    shutil.copy(project_root / "references.bib", root / "references.bib")
    chapters = []
    for name, text in pages.items():
        (root / "book" / f"{name}.md").parent.mkdir(parents=True, exist_ok=True)
        (root / "book" / f"{name}.md").write_text(text)
        if name != "intro":
            chapters.append(f"book/{name}")
    for name, cells in notebooks.items():
        write_notebook(root / "book" / f"{name}.ipynb", *cells, title=name)
        chapters.append(f"book/{name}")
    toc = "format: jb-book\nroot: book/intro\nchapters:\n" + "".join(f"  - file: {c}\n" for c in chapters)
    (root / "_toc.yml").write_text(toc)
    return root


@pytest.fixture
def stable_cache_key(monkeypatch):
    """Pin the library part of the cache key: other people may edit medlearn/ while tests run."""
    monkeypatch.setattr(runner, "_medlearn_digest", lambda: "pinned-for-test")


def test_runner_records_the_failing_cell_and_exits_nonzero(tmp_path):
    src = write_notebook(tmp_path / "nb" / "broken.ipynb", "x = 1", "y = x / 0", "print('unreached')")
    before = src.read_text()
    out = tmp_path / "executed"
    report = runner.run_notebooks([src], tier="smoke", out_dir=out, root=tmp_path, quiet=True)

    assert not report.ok
    (r,) = report.results
    assert r.status == "failed"
    assert r.cell == 3, "cell index counts the SOURCE notebook's cells (title, parameters, x=1, y=x/0)"
    assert r.error == "ZeroDivisionError"
    assert "division by zero" in r.message
    assert r.source_line == "y = x / 0"
    assert src.read_text() == before, "the runner must never write over a source notebook"
    executed = out / "nb" / "broken.ipynb"
    assert executed.is_file() and not list(out.rglob("*.partial"))
    meta = json.loads(executed.read_text())["metadata"]["medlearn"]
    assert meta["status"] == "failed"
    saved = json.loads((out / "report-smoke.json").read_text())
    assert saved["ok"] is False and saved["results"][0]["cell"] == 3

    code = cli_main(["run-notebooks", str(src), "--out", str(tmp_path / "cli"), "--no-cache"])
    assert code == 1


def test_runner_injects_tier_parameters_after_the_parameters_cell(tmp_path):
    src = write_notebook(tmp_path / "params.ipynb", 'print(f"FAST={FAST} DATA={DATA}")')
    reports = {tier: runner.run_notebooks([src], tier=tier, out_dir=tmp_path / tier, root=tmp_path,
                                          quiet=True) for tier in ("smoke", "full")}
    for tier, expected in (("smoke", "FAST=True DATA=auto"), ("full", "FAST=False DATA=real")):
        assert reports[tier].ok, reports[tier].failures()
        cells = nbformat.read(tmp_path / tier / "params.ipynb", as_version=4).cells
        tags = [c.metadata.get("tags", []) for c in cells]
        assert tags[1] == ["parameters"] and "injected-parameters" in tags[2]
        assert "remove-cell" in tags[2], "the book hides the runner's injected cell"
        printed = "".join(o.get("text", "") for o in cells[-1].outputs)
        assert printed.strip() == expected


def test_runner_flags_a_notebook_over_its_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLEARN_BUDGET_S", "1")
    src = write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(2)")
    report = runner.run_notebooks([src], tier="smoke", out_dir=tmp_path / "out", root=tmp_path, quiet=True)
    (r,) = report.results
    assert r.status == "over-budget" and r.budget_s == 1.0 and r.wall_s > 2.0
    assert not report.ok
    assert cli_main(["run-notebooks", str(src), "--out", str(tmp_path / "out")]) == 1, \
        "an over-budget notebook is never cached, so the CLI reruns it and fails again"


def test_runner_reuses_an_identical_successful_run(tmp_path, stable_cache_key):
    src = write_notebook(tmp_path / "nb.ipynb", "import random\nprint(random.random())")
    out = tmp_path / "out"
    first = runner.run_notebooks([src], out_dir=out, root=tmp_path, quiet=True)
    assert first.results[0].status == "ok", first.failures()
    printed = (out / "nb.ipynb").read_text()

    second = runner.run_notebooks([src], out_dir=out, root=tmp_path, quiet=True)
    assert second.ok and second.results[0].status == "cached"
    assert (out / "nb.ipynb").read_text() == printed, "a cache hit must not re-execute"

    params = runner.TIER_PARAMETERS
    assert runner.notebook_hash(src, "full", params["full"]) != runner.notebook_hash(src, "smoke", params["smoke"]), \
        "another tier is another run"

    write_notebook(src, "import random\nprint('changed', random.random())")
    fourth = runner.run_notebooks([src], out_dir=out, root=tmp_path, quiet=True)
    assert fourth.results[0].status == "ok", "an edited notebook must be re-executed"
    fifth = runner.run_notebooks([src], out_dir=out, root=tmp_path, use_cache=False, quiet=True)
    assert fifth.results[0].status == "ok"


def test_runner_reports_a_missing_notebook_and_expands_folders(tmp_path):
    write_notebook(tmp_path / "book" / "a.ipynb", "1")
    write_notebook(tmp_path / "book" / ".ipynb_checkpoints" / "a-checkpoint.ipynb", "1")
    write_notebook(tmp_path / "book" / "_build" / "x.ipynb", "1")
    found = runner.collect_notebooks([tmp_path / "book"])
    assert found == [(tmp_path / "book" / "a.ipynb").resolve()]
    report = runner.run_notebooks([tmp_path / "nope.ipynb"], out_dir=tmp_path / "o", root=tmp_path, quiet=True)
    assert report.results[0].status == "failed" and report.results[0].error == "FileNotFoundError"


INTRO = "# Mini book\n\nCites {cite:p}`kaliyugarasan2023thesis`.\n\n```{bibliography}\n```\n"


def test_book_build_fails_on_a_broken_notebook(tmp_path, project_root):
    root = mini_book(tmp_path / "mini", project_root, {"intro": INTRO},
                     {"broken": ["raise RuntimeError('deliberately broken')"]})
    assert toc_files(root) == ["book/intro", "book/broken"]
    assert build_book(root, tier="smoke") is False, "the runner path must refuse to build"
    assert not (root / "_build" / "html" / "index.html").exists()
    # Without the runner, Jupyter Book executes the source itself; _config.yml must make it fail.
    assert build_book(root, tier="smoke", run=False) is False, \
        "Jupyter Book built a page from a failing notebook (raise_on_error or -W lost?)"
    cells = json.loads((root / "book" / "broken.ipynb").read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), \
        "the build must never write outputs into book/"


def test_book_build_fails_on_a_broken_reference_and_succeeds_when_fixed(tmp_path, project_root):
    broken = "# Page\n\nSee {doc}`no_such_page` and {cite:p}`no_such_key`.\n"
    root = mini_book(tmp_path / "refs", project_root, {"intro": INTRO, "page": broken}, {})
    assert build_book(root) is False
    (root / "book" / "page.md").write_text("# Page\n\nSee {doc}`intro` and {cite:p}`paperA_fastmonai`.\n")
    assert build_book(root) is True
    assert (root / "_build" / "html" / "index.html").is_file()


# ---------------------------------------------------------------- the PACS chapters and the banner
PACS_CELLS = ["import sys\nif 'google.colab' in sys.modules:  # a shell escape, as chapters have\n"
              "    !apt-get install -qq -y orthanc",
              "from medlearn import pacs\nserver = pacs.Orthanc()\nserver.start()\nprint('PACS up')"]


def test_notebook_needs_reads_the_metadata_flag_and_orthanc_calls(tmp_path):
    from medlearn.course.book import notebook_needs

    plain = write_notebook(tmp_path / "plain.ipynb", "print('Orthanc is a PACS')  # no call")
    calls = write_notebook(tmp_path / "calls.ipynb", *PACS_CELLS)
    flagged = write_notebook(tmp_path / "flagged.ipynb", "x = 1")
    nb = nbformat.read(flagged, as_version=4)
    nb.metadata["medlearn"] = {"needs": ["orthanc"]}
    nbformat.write(nb, flagged)
    assert notebook_needs(plain) == set()
    assert notebook_needs(calls) == {"orthanc"}
    assert notebook_needs(flagged) == {"orthanc"}
    oneclick = write_notebook(tmp_path / "oneclick.ipynb",
                              "pacs = Orthanc(extra_config=oneclick_config(bundle)).start()")
    assert notebook_needs(oneclick) == {"orthanc", "orthanc-python"}


def test_a_missing_python_plugin_marks_only_the_one_click_chapter(tmp_path, monkeypatch):
    from medlearn.course.book import missing_requirements
    from medlearn.deploy import oneclick as oneclick_module
    from medlearn.pacs import orthanc_available

    if not orthanc_available():
        pytest.skip("needs Orthanc itself installed (make system-deps)")
    monkeypatch.setattr(oneclick_module, "PYTHON_PLUGIN_DIRS", [str(tmp_path / "no-plugins")])
    plain_pacs = write_notebook(tmp_path / "pacs.ipynb", *PACS_CELLS)
    oneclick = write_notebook(tmp_path / "oneclick.ipynb",
                              "pacs = Orthanc(extra_config=oneclick_config(bundle)).start()")
    missing = missing_requirements([plain_pacs, oneclick])
    assert list(missing) == [oneclick]
    assert "apt-get install -y orthanc-python" in missing[oneclick]


def test_book_without_orthanc_marks_the_pacs_chapter_and_ci_refuses(tmp_path, project_root, monkeypatch,
                                                                      capsys):
    for name in ("CI", "MEDLEARN_REQUIRE_PACS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORTHANC_EXECUTABLE", str(tmp_path / "nowhere" / "Orthanc"))  # no PACS here
    root = mini_book(tmp_path / "pacsbook", project_root, {"intro": INTRO},
                     {"plain": ["print('sum =', 40 + 2)"], "pacs_chapter": PACS_CELLS})

    monkeypatch.setenv("CI", "true")
    assert build_book(root, tier="smoke") is False, "CI must require the PACS, not mark it"
    err = capsys.readouterr().err
    assert "book/pacs_chapter.ipynb" in err and "apt-get install -y orthanc orthanc-dicomweb" in err
    assert not (root / "_build" / "executed").exists(), "CI fails before executing anything"

    monkeypatch.delenv("CI")
    assert build_book(root, tier="smoke") is True
    html = root / "_build" / "html" / "book"
    pacs_page = re.sub(r"<[^>]+>", "", (html / "pacs_chapter.html").read_text())  # text only
    assert "Not executed in this build" in pacs_page and "make system-deps" in pacs_page
    assert "Orthanc is not installed on this machine." in pacs_page
    assert "PACS up" not in pacs_page.replace("print('PACS up')", ""), "it was not executed"
    assert "sum = 42" in (html / "plain.html").read_text(), "the other chapters still execute"
    for page in html.glob("*.html"):  # (the top index.html only redirects to book/intro.html)
        text = page.read_text()
        assert "Smoke-tier build" in text and "What the full run shows" in text, page.name
        assert "1 chapter(s) could not be executed" in text, page.name


def test_banner_names_the_tier_and_the_data_the_notebooks_announced(tmp_path):
    from medlearn.course.book import banner, data_provenance

    nb = write_notebook(tmp_path / "a.ipynb", "x = 1")
    data = nbformat.read(nb, as_version=4)
    data.cells[-1].outputs = [nbformat.v4.new_output(
        "stream", name="stdout",
        text="BreastMNIST (28×28) — real data (MedMNIST v2, CC BY 4.0), 546/78/156, seeded\n"
             "Heads — SYNTHETIC STAND-IN (no network): T1-like heads; not patient data\n")]
    nbformat.write(data, nb)
    real, synthetic = data_provenance([nb])
    assert real == ["BreastMNIST (28×28)"] and synthetic == ["Heads"]
    smoke = banner("smoke", real, synthetic, date="2026-01-02")
    assert "Smoke-tier build" in smoke and "2026-01-02" in smoke and "BreastMNIST" in smoke
    assert "Heads" in smoke and "What the full run shows" in smoke
    full = banner("full", real, [], date="2026-01-02")
    assert "Full-tier build" in full and "toy" not in full and "stand-in" not in full.lower()


def test_workflows_publish_after_ci_prefer_the_full_book_and_restore_the_data(project_root):
    """pages.yml: only after ci (or full) succeeded; the smoke build only when no full book exists."""
    import yaml

    wf = project_root / ".github" / "workflows"
    pages = yaml.safe_load((wf / "pages.yml").read_text())
    on = pages.get("on", pages.get(True))
    assert "push" not in on, "publishing must wait for CI"
    assert set(on["workflow_run"]["workflows"]) == {"ci", "full"}
    assert "conclusion == 'success'" in pages["jobs"]["build"]["if"]
    steps = pages["jobs"]["build"]["steps"]
    smoke = [s for s in steps if "make book" in s.get("run", "")]
    assert smoke and all(s.get("if") == "steps.full.outputs.run == ''" for s in smoke), \
        "a smoke build must never run when a full-tier book exists"
    pick = next(s for s in steps if s.get("id") == "full")["run"]
    assert "--workflow ci.yml --commit" in pick and "--status success" in pick

    ci = yaml.safe_load((wf / "ci.yml").read_text())
    runs = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    uses = [s.get("uses", "") for s in ci["jobs"]["test"]["steps"]]
    assert runs.index("make samples") < runs.index("bash .ci/run"), "data before the tests"
    assert any(u.startswith("actions/cache") for u in uses)
    assert (project_root / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"


def test_full_run_covers_every_notebook_longest_first(project_root, tmp_path):
    """`make full` (.ci/full) runs every book and assignment notebook; the slowest start first."""
    import subprocess
    import sys

    from medlearn.course.notebooks import collect_notebooks

    order = project_root / ".ci" / "full_order.py"
    every = {nb.relative_to(project_root).as_posix() for nb in
             collect_notebooks([project_root / "book"]) + sorted(project_root.glob("exercises/source/*/*.ipynb"))}
    listed = subprocess.run([sys.executable, str(order)], capture_output=True, text=True,
                            check=True).stdout.split()
    assert set(listed) == every and len(listed) == len(every)

    last, first = listed[-1], listed[0]  # a previous report's wall times decide the order
    report = tmp_path / "report-full.json"
    report.write_text(json.dumps({"results": [{"path": last, "status": "ok", "wall_s": 9999.0},
                                              {"path": first, "status": "ok", "wall_s": 0.5}]}))
    again = subprocess.run([sys.executable, str(order), str(report)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert again[0] == last and again.index(first) > again.index(last)
