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

from medlearn.course.book import toc_files
from medlearn.course.notebooks import collect_notebooks

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


#: The book's code column: a code line longer than this gets a horizontal scroll bar on the page
#: (STYLE.md, "Fit the page"). Black's default; every book notebook keeps to it.
CODE_LINE_LIMIT = 88


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_book_notebook_code_lines_fit_the_page(path):
    nb = nbformat.read(path, as_version=4)
    long = [f"cell {i} line {n} ({len(line)} chars): {line.strip()[:50]}"
            for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for n, line in enumerate(c.source.splitlines(), 1) if len(line) > CODE_LINE_LIMIT]
    assert not long, (f"{_id(path)}: {len(long)} code lines over {CODE_LINE_LIMIT} characters "
                      "(wrap them):\n" + "\n".join(long[:10]))


_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def test_3_1_architecture_prose_matches_the_built_model():
    """Chapter 3.1 describes MONAI's Classifier in words: block count, channels, sizes. Build it and compare."""
    import torch
    from monai.networks.nets import Classifier

    path = ROOT / "book" / "part3" / "3_1_classification_with_fastmonai.ipynb"
    nb = nbformat.read(path, as_version=4)
    i = next(k for k, c in enumerate(nb.cells)
             if c.cell_type == "code" and re.search(r"^model = Classifier\(", c.source, flags=re.M))
    prose = nb.cells[i - 1].source
    call = next(n for n in ast.walk(ast.parse(nb.cells[i].source))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Classifier")
    chain = re.search(r"\d+³(?:\s*→\s*\d+³)+", prose)
    assert chain, "3.1: say how the blocks shrink the volume, e.g. '28³ → 14³ → 7³ → 4³'"
    sizes = [int(v) for v in re.findall(r"(\d+)³", chain.group(0))]
    size = [sizes[0]] * 3
    model = eval(compile(ast.Expression(call), "3.1", "eval"), {"Classifier": Classifier, "size": size})
    blocks = list(model.net.children())
    shapes = []
    for b in blocks:
        b.register_forward_hook(lambda m, inp, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 1, *size))

    count = re.search(r"\b(one|two|three|four|five|six)\b\W*\s+strided", prose, flags=re.I)
    assert count, "3.1: state the number of strided blocks in words ('three strided ...')"
    assert _NUMBER_WORDS[count.group(1).lower()] == len(blocks), \
        f"3.1 says {count.group(1)} strided blocks; the model has {len(blocks)}"
    assert sizes[1:] == [s[-1] for s in shapes], f"3.1 says {sizes}; the blocks give {shapes}"
    channels = re.search(r"\(([\d, and]+) channels", prose)
    assert channels, "3.1: list the blocks' channels, e.g. '(8, 16 and 32 channels'"
    said = [int(v) for v in re.findall(r"\d+", channels.group(1))]
    assert said == [s[1] for s in shapes], f"3.1 says channels {said}; the blocks give {[s[1] for s in shapes]}"
    features = shapes[-1][1] * shapes[-1][2] * shapes[-1][3] * shapes[-1][4]
    assert str(features) in prose, f"3.1: the linear layer receives {features} features; say so"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_book_notebook_self_check_has_answers_in_dropdowns(path):
    """Self-check answers sit in collapsible MyST dropdowns after the Self-check heading (STYLE.md)."""
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    heading = re.search(r"^#+\s*self[- ]check", md, flags=re.I | re.M)
    assert heading, f"{_id(path)}: no Self-check heading"
    assert re.search(r"^(```|:::)\{dropdown\}", md[heading.end():], flags=re.M), \
        f"{_id(path)}: put the self-check answers in ```{{dropdown}} blocks after the questions"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_no_markdown_hidden_as_comments_in_code_cells(path):
    """A heading or a MyST directive commented into a code cell never renders (chapter 1.2 had one)."""
    nb = nbformat.read(path, as_version=4)
    hidden = [f"cell {i}: {line.strip()[:60]}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for line in c.source.splitlines() if re.match(r"\s*#\s*(#{1,6}\s+\S|```\{)", line)]
    assert not hidden, f"{_id(path)}: markdown inside code cells; make it a markdown cell:\n" + \
        "\n".join(hidden)


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=_id)
def test_chapter_mirroring_a_paper_has_an_in_the_thesis_box(path):
    """A chapter whose header names a paper sets the paper's own numbers beside the reader's run."""
    nb = nbformat.read(path, as_version=4)
    header = nb.cells[0].source
    if not re.search(r"\bPapers? [A-E]\b", header):
        return
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^(```|:::)\{admonition\} In the thesis", md, flags=re.M), \
        f"{_id(path)}: add an 'In the thesis' admonition with the paper's numbers (STYLE.md)"
