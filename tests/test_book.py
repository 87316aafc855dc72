"""The runner and the book build catch what they must: errors, overruns, parameters, cache, broken refs.

Everything runs on tiny throwaway notebooks in a temporary mini-book that uses the project's own
_config.yml and references.bib, so a regression in either (e.g. losing nb_execution_raise_on_error)
fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from medlearn import notebooks as runner
from medlearn.book import build_book, toc_files
from medlearn.cli import main as cli_main

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
        assert tags[1] == ["parameters"] and tags[2] == ["injected-parameters"]
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
