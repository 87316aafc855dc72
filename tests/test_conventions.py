"""Notebook conventions (CONTRIBUTING.md, "Notebooks") and the book's configuration, checked statically.

Book notebooks: stored without outputs; header cell (title, Colab badge pointing at
repository.url + blob/main/ + the notebook's path, objectives, thesis, run time); the Colab-only
setup cell; a `parameters` cell with FAST = False and DATA = "auto"; a Summary, a Self-check and a
link to the assignment. Exercise source notebooks: stored without outputs. Every book notebook is
in _toc.yml and every toc entry exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from medlearn.book import toc_files
from medlearn.notebooks import collect_notebooks

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"].get("branch", "main")
BOOK_NOTEBOOKS = collect_notebooks([ROOT / "book"])
EXERCISE_NOTEBOOKS = sorted(ROOT.glob("exercises/source/*/*.ipynb"))


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def colab_url(rel: str) -> str:
    """Return the Colab URL a notebook at `rel` (relative to the repository root) must link to."""
    github = re.sub(r"^https://github\.com/", "", REPO_URL)
    return f"https://colab.research.google.com/github/{github}/blob/{BRANCH}/{rel}"


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return cells[0] if len(cells) == 1 else None


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS + EXERCISE_NOTEBOOKS, ids=_id)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{_id(path)}: cells {dirty} have outputs or execution counts; strip them with "
                       f"`jupyter nbconvert --clear-output --inplace {_id(path)}`")


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_book_notebook_has_the_header_cell(path):
    nb = nbformat.read(path, as_version=4)
    rel = _id(path)
    header = nb.cells[0]
    assert header.cell_type == "markdown", f"{rel}: the first cell must be the markdown header"
    text = header.source
    assert re.match(r"#\s+\S", text), f"{rel}: the header starts with a '# ' title"
    badges = re.findall(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                        r"\(([^)\s]+)\)", text)
    assert badges, f"{rel}: no Colab badge in the header (CONTRIBUTING.md, 'Notebooks')"
    assert badges[0] == colab_url(rel), f"{rel}: the Colab badge must point to {colab_url(rel)}"
    for word in ("objectives", "thesis", "run time"):
        assert word in text.lower(), f"{rel}: the header lacks '{word}'"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_book_notebook_has_setup_and_parameters_cells(path):
    nb = nbformat.read(path, as_version=4)
    rel = _id(path)
    params = _parameters_cell(nb)
    assert params is not None, f"{rel}: exactly one code cell must carry the tag `parameters`"
    assigned = {}
    for node in ast.parse(params.source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = node.value.value
    assert assigned.get("FAST") is False, f"{rel}: the parameters cell must set FAST = False"
    assert assigned.get("DATA") == "auto", f'{rel}: the parameters cell must set DATA = "auto"'
    before = nb.cells[: nb.cells.index(params)]
    setup = [c for c in before if c.cell_type == "code" and "google.colab" in c.source]
    assert setup, f"{rel}: a Colab-only setup cell (`if \"google.colab\" in sys.modules:`) must precede `parameters`"
    assert "medlearn" in setup[0].source and "pip install" in setup[0].source, \
        f"{rel}: the Colab setup cell installs medlearn with %pip"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_book_notebook_ends_with_summary_self_check_and_assignment(path):
    nb = nbformat.read(path, as_version=4)
    rel = _id(path)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    headings = [h.lower() for s in md for h in re.findall(r"^#+\s*(.+)$", s, flags=re.M)]
    assert any("summary" in h for h in headings), f"{rel}: no 'Summary' heading"
    assert any(re.search(r"self[- ]check", h) for h in headings), f"{rel}: no 'Self-check' heading"
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                 and re.search(r"^#+\s*summary", c.source, flags=re.I | re.M))
    tail = "\n".join(c.source for c in nb.cells[start:] if c.cell_type == "markdown")
    if not re.match(r"book/part\d", rel):
        return  # pages outside the parts (e.g. book/data) have no assignment
    assert re.search(r"\]\([^)]*(exercise|assignment)[^)]*\)", tail, flags=re.I), \
        f"{rel}: after the Summary, link to the chapter's assignment (e.g. [assignment 1](../exercises.md))"


def test_every_book_notebook_is_in_the_toc_and_every_entry_exists():
    entries = toc_files(ROOT)
    missing = [e for e in entries if not any((ROOT / f"{e}{s}").is_file() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    listed = {f"{e}.ipynb" for e in entries}
    orphans = [_id(nb) for nb in BOOK_NOTEBOOKS if _id(nb) not in listed]
    assert not orphans, f"notebooks under book/ missing from _toc.yml: {orphans}"
    assert len(entries) == len(set(entries)), "a page is listed twice in _toc.yml"


def test_book_configuration_fails_on_errors_and_points_at_the_repository():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] in ("cache", "auto", "force")
    assert execute.get("allow_errors") is False
    assert execute.get("timeout", 0) > 0
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO_URL)
    assert CONFIG["bibtex_bibfiles"] == ["references.bib"]
    assert (ROOT / "references.bib").is_file()


def test_references_bib_has_the_thesis_and_papers_and_unique_keys():
    keys = re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text(), flags=re.M)
    assert len(keys) == len(set(keys)), "duplicate keys in references.bib"
    for key in ("kaliyugarasan2023thesis", "paperA_fastmonai", "paperB_skullstripping",
                "paperC_nodules", "paperD_cervical", "paperE_spine", "yang2023medmnist"):
        assert key in keys
