"""Every notebook of the book and every assignment's source notebook runs in the smoke tier.

ONE session-scoped runner call executes them all (two at a time, three under xdist; FAST=True,
the session's seeded data cache); each notebook is then its own test, so a failure names the
notebook, the cell and the error. The last test builds the book from those executed copies (cache hits, nothing re-executed)
in a temporary copy of the project, so book/ and the project's _build are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from medlearn.course.notebooks import _medlearn_digest, collect_notebooks, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = collect_notebooks([ROOT / "book"]) + sorted(ROOT.glob("exercises/source/*/*.ipynb"))
IDS = [nb.relative_to(ROOT).as_posix() for nb in NOTEBOOKS]

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="session")
def book_copy(tmp_path_factory) -> Path:
    """A temporary copy of the book's sources (the runner writes its executed copies inside it)."""
    copy = tmp_path_factory.mktemp("book-copy")
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / "book", copy / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return copy


@pytest.fixture(scope="session")
def smoke_report(book_copy, data_cache):
    """Run every notebook once per session, in the smoke tier, two at a time."""
    digest = _medlearn_digest()
    # under `make test` (xdist) three at a time: this group is the longest, the others mostly wait
    jobs = 3 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    report = run_notebooks(NOTEBOOKS, tier="smoke", jobs=jobs, out_dir=book_copy / "_build" / "executed",
                           report_path=ROOT / "_build" / "reports" / "smoke.json",  # CI uploads it
                           use_cache=False, root=ROOT)
    return {r.path: r for r in report.results}, report, digest


def within_budget(r) -> bool:
    """Alone (plain `pytest`, `make smoke`) a notebook's wall time must fit the budget. Under
    `make test` other xdist workers share the two cores, so the wall time also counts their work:
    there the notebook's own CPU time (runner and kernel) is compared with the budget, and the
    runner's hard limit (three times the budget, wall) still stops a hang."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return r.cpu_s is not None and r.cpu_s <= r.budget_s
    return r.wall_s <= r.budget_s


@pytest.mark.parametrize("notebook", IDS)
def test_notebook_runs_in_the_smoke_tier(smoke_report, notebook):
    results, _, _ = smoke_report
    r = results[notebook]
    assert r.status in ("ok", "over-budget") and r.error in (None, "OverBudget"), r.describe()
    assert within_budget(r), f"{r.describe()} (cpu {r.cpu_s} s)"


def test_book_builds_from_the_executed_notebooks(smoke_report, book_copy):
    from medlearn.course.book import build_book, toc_notebooks

    results, report, digest = smoke_report
    in_book = [nb.relative_to(book_copy).as_posix() for nb in toc_notebooks(book_copy)]
    # Over-budget runs completed (their own tests fail); only an error stops the book.
    not_ok = [results[p].describe() for p in in_book if p in results and results[p].status == "failed"]
    if not_ok:
        pytest.fail("the book cannot build while its notebooks fail:\n" + "\n".join(not_ok))

    assert build_book(book_copy, tier="smoke", jobs=2), "jupyter-book build failed (see the log above)"
    book_report = json.loads((book_copy / "_build" / "reports" / "book-smoke.json").read_text())
    reran = [r["path"] for r in book_report["results"] if r["status"] != "cached"]
    if _medlearn_digest() != digest:
        # Someone edited medlearn/ during the session (shared dev machine): re-running was right.
        print(f"\nmedlearn changed during the session; the book build re-executed {len(reran)} notebook(s)")
    else:
        assert not reran, f"the book build re-executed {reran} instead of reusing the smoke run"

    html = book_copy / "_build" / "html"
    assert (html / "index.html").is_file()
    part1 = sorted((html / "book" / "part1").glob("*.html"))
    assert part1, "part 1 was not rendered"
    for page in part1:
        text = page.read_text()
        assert re.search(r"<img[^>]+src=\"[^\"]*\.png", text), f"{page.name} has no rendered figure"
    print(f"\nbook: {html / 'index.html'}")


def test_built_book_passes_the_browser_check(smoke_report, book_copy):
    """Every page of the book just built opens in headless Chromium without a problem.

    Runs after the build test above (same module, same `book_copy`): page loads, JavaScript and
    console errors, images, the Colab button of each notebook page, internal links and anchors.
    A plain `pytest` run also saves screenshots to _build/site-check for a maintainer to look
    at; `make test` (xdist) skips them, as nothing checks them (`make check-site` writes them).
    """
    from medlearn.course.site_check import check_site

    html = book_copy / "_build" / "html"
    if not (html / "index.html").is_file():
        pytest.fail("the book was not built (see test_book_builds_from_the_executed_notebooks)")
    # code wraps instead of scrolling sideways (medlearn/course/book_static/medlearn-book.css)
    assert "medlearn-book.css" in (html / "book" / "part1" / "1_1_learning_from_images.html").read_text()
    assert "pre-wrap" in (html / "_static" / "medlearn-book.css").read_text()
    shots = None if os.environ.get("PYTEST_XDIST_WORKER") else ROOT / "_build" / "site-check"
    report = check_site(html, screenshots=shots, timeout=60)
    assert len(report.pages) >= 20, [p.page for p in report.pages]
    assert report.ok, "\n" + report.summary()
