"""Build the book: execute its notebooks with the runner, then Jupyter Book 1.x on the executed copies.

Used by `make book` (`medlearn build-book`) and ``tests/test_notebooks.py``/``tests/test_book.py``.
The sources under ``book/`` are never written to: the runner's executed copies and a copy of the
book's sources are staged in ``_build/stage``, and Jupyter Book writes the HTML to ``_build/html``.
"""

from __future__ import annotations

import datetime
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: Files of the project root that the book needs beside book/**.
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")

#: What a code cell calls -> what the chapter needs: a PACS (Orthanc), and for the research-PACS
#: "one click" of part 6 Orthanc's Python plugin too. A notebook may also say so in its metadata:
#: ``"medlearn": {"needs": ["orthanc"]}`` (or ``"orthanc-python"``).
_NEEDS_CALLS = {"orthanc": re.compile(r"\bOrthanc\s*\("),
                "orthanc-python": re.compile(r"\boneclick_config\s*\(")}
_TRUE = ("1", "true", "yes", "on")


def required(what: str) -> bool:
    """Return True when a missing `what` ("pacs" or "data") must be an error, not a note or a skip.

    On CI (``CI=true``, as GitHub Actions sets it) both are required; ``MEDLEARN_REQUIRE_PACS=1``
    (set by `make test`) or ``MEDLEARN_REQUIRE_DATA=1`` require one of them anywhere.
    """
    names = ("CI", f"MEDLEARN_REQUIRE_{what.upper()}")
    return any(os.environ.get(n, "").strip().lower() in _TRUE for n in names)


def notebook_needs(path: str | os.PathLike) -> set[str]:
    """Return what a notebook needs beyond Python packages: ``{"orthanc"}`` for the PACS chapters.

    Read from the metadata flag ``medlearn.needs`` and from code cells that call ``Orthanc(``
    (and ``oneclick_config(``: ``"orthanc-python"``, which implies ``"orthanc"``).
    """
    nb = json.loads(Path(path).read_text())
    needs = {str(n).lower() for n in nb.get("metadata", {}).get("medlearn", {}).get("needs", []) or []}
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if cell.get("cell_type") == "code":
            needs |= {need for need, call in _NEEDS_CALLS.items() if call.search(src)}
    if "orthanc-python" in needs:
        needs.add("orthanc")
    return needs


def missing_requirements(notebooks) -> dict[Path, str]:
    """Return {notebook: why it cannot run here} for the notebooks whose needs this machine lacks."""
    from medlearn.pacs import OrthancNotFound, find_orthanc

    def python_plugin():
        from medlearn.deploy.oneclick import find_python_plugin

        return find_python_plugin()

    checks = {"orthanc": find_orthanc, "orthanc-python": python_plugin}  # in this order
    missing: dict[Path, str] = {}
    for nb in notebooks:
        for need in [n for n in checks if n in notebook_needs(nb)]:
            try:
                checks[need]()
            except OrthancNotFound as err:
                missing[Path(nb)] = str(err)
                break
    return missing


_NOT_EXECUTED = """```{{admonition}} Not executed in this build: no PACS on the machine that built it
:class: warning

This chapter starts a real PACS (Orthanc), and the machine that built this book could not
start one: {why} The code below is shown **without its outputs**. To see them, do one of these:

- in the course's folder: `make system-deps` (installs `orthanc` and `orthanc-dicomweb` with
  apt-get; needs root or sudo), then `make book`;
- install Orthanc another way (the container image `orthancteam/orthanc`, or the installers at
  <https://www.orthanc-server.com/download.php>), set `ORTHANC_EXECUTABLE` (and `ORTHANC_PLUGINS`,
  the folder of `libOrthancDicomWeb`), then `make book`;
- open this chapter in Colab (the launch button above): its setup cell installs Orthanc there.
```
"""


def _stage_not_executed(src: Path, target: Path, why: str) -> None:
    """Copy a source notebook to the stage unexecuted, with a visible note of what is missing."""
    nb = json.loads(src.read_text())
    nb.setdefault("metadata", {}).setdefault("mystnb", {})["execution_mode"] = "off"
    # An executed notebook names its lexer; without it a setup cell's `!apt-get` fails to lex as
    # plain Python, a warning that -W turns into a failed build.
    info = nb["metadata"].setdefault("language_info", {"name": "python"})
    info.setdefault("pygments_lexer", "ipython3")
    first = why.strip().splitlines()[0] if why.strip() else "Orthanc is not installed."
    reason = first.split(". ")[0].rstrip(".:") + "."
    note = {"cell_type": "markdown", "id": "medlearn-not-executed",
            "metadata": {"tags": ["medlearn-not-executed"]},
            "source": _NOT_EXECUTED.format(why=reason)}
    cells = nb.setdefault("cells", [])
    at = 1 if cells and cells[0].get("cell_type") == "markdown" else 0  # after the title cell
    cells.insert(at, note)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


_PROVENANCE = re.compile(r"^(?P<title>\S[^\n]*?) — (?P<kind>real data|SYNTHETIC)", re.MULTILINE)


def data_provenance(executed) -> tuple[list[str], list[str]]:
    """Return (real, synthetic): the data set titles the executed notebooks' outputs announce.

    Reads the one provenance line `medlearn.data.load` prints ("<title> — real data (...)" or
    "<title> — SYNTHETIC ...").
    """
    real, synthetic = set(), set()
    for path in executed:
        try:
            nb = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []) or []:
                text = out.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                for m in _PROVENANCE.finditer(text):
                    (real if m["kind"] == "real data" else synthetic).add(m["title"].strip())
    return sorted(real), sorted(synthetic)


_TIER_TEXT = {
    "smoke": ("Smoke-tier build", "FAST=True: small subsets and one or two epochs on a CPU, so its "
              "numbers are from toy runs"),
    "full": ("Full-tier build", 'FAST=False, DATA="real": full-size runs on a GPU'),
    "source": ("Build with the notebooks' own parameters", "FAST=False, executed by Jupyter Book"),
}


def banner(tier: str, real: list[str], synthetic: list[str], *, not_executed: int = 0,
           date: str | None = None) -> str:
    """Return the HTML of the banner shown on every page: tier, data provenance and build date."""
    date = date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    name, what = _TIER_TEXT.get(tier, (f"{tier} build", ""))
    esc = html_lib.escape
    parts = [f"<strong>{esc(name)}</strong> of {esc(date)} ({esc(what)})."]
    if real:
        parts.append("Real data: " + esc(", ".join(real)) + ".")
    if synthetic:
        parts.append("Synthetic stand-ins: " + esc(", ".join(synthetic)) + ".")
    if not real and not synthetic:
        parts.append("Data: see each chapter's provenance line.")
    if tier != "full":
        parts.append("The “What the full run shows” boxes in the chapters record full-tier runs "
                     "(FAST=False).")
    if not_executed:
        parts.append(f"{not_executed} chapter(s) could not be executed here (marked on the page).")
    return " ".join(parts)


def toc_files(root: str | os.PathLike = ".") -> list[str]:
    """Return every `file:` entry of `<root>/_toc.yml` (root page first), without suffix, in order."""
    import yaml

    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"{toc_path} not found; run from the project root or pass root=")
    toc = yaml.safe_load(toc_path.read_text())
    files: list[str] = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f for f in files]


def toc_notebooks(root: str | os.PathLike = ".") -> list[Path]:
    """Return the notebooks `_toc.yml` lists (absolute paths); pages and missing entries are skipped."""
    root = Path(root).resolve()
    return [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").is_file()]


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else ["jupyter-book"]


def _stage_executed(done: Path, target: Path) -> None:
    """Copy an executed notebook to the stage, marked "do not execute" and labelled with its tier."""
    nb = json.loads(done.read_text())
    tier = nb.get("metadata", {}).get("medlearn", {}).get("tier")
    # Already executed: Jupyter Book's "auto" mode would rerun any notebook with one output-less
    # code cell (an import), so switch execution off for this file only (myst-nb file-level config).
    nb.setdefault("metadata", {}).setdefault("mystnb", {})["execution_mode"] = "off"
    for cell in nb.get("cells", []):
        if tier and "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            cell["source"] = (f"# Injected by the course's runner: this page was executed in the "
                              f"{tier} tier.\n" + src)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _stage(root: Path, stage: Path, executed: dict[Path, Path], *,
           not_executed: dict[Path, str] | None = None, announcement: str | None = None) -> None:
    """Copy the book's sources to `stage`, with each executed notebook in place of its source.

    Notebooks in `not_executed` are staged unexecuted with a note saying why; `announcement` is the
    banner every page shows (``html.announcement``).
    """
    import yaml

    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in BOOK_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, stage / name)
    # book/** and any page the toc lists outside book/
    # Model weights a chapter saved next to itself (fastai's models/) are not part of the book.
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "_build", "models",
                                    "*.pth", "*.pt", "*.pkl", "*.ckpt")
    if (root / "book").is_dir():
        shutil.copytree(root / "book", stage / "book", ignore=ignore)
    for f in toc_files(root):
        for suffix in (".md", ".ipynb"):
            src = root / f"{f}{suffix}"
            if src.is_file() and not (stage / f"{f}{suffix}").exists():
                (stage / f"{f}{suffix}").parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, stage / f"{f}{suffix}")
    for src, done in executed.items():
        _stage_executed(done, stage / src.relative_to(root))
    for src, why in (not_executed or {}).items():
        _stage_not_executed(src, stage / src.relative_to(root), why)
    # The executed copies are marked execution_mode "off"; any other notebook still lacking outputs
    # is executed ("auto"), and its errors still fail the build (nb_execution_raise_on_error).
    config_path = stage / "_config.yml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    config.setdefault("execute", {})["execute_notebooks"] = "auto"
    config["execute"]["cache"] = ""
    config.setdefault("sphinx", {}).setdefault("config", {})["nb_execution_raise_on_error"] = True
    if announcement:
        config.setdefault("html", {})["announcement"] = announcement
    extensions = config["sphinx"].setdefault("extra_extensions", []) or []
    if __name__ not in extensions:
        config["sphinx"]["extra_extensions"] = [*extensions, "medlearn.course.book"]  # setup() below
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def build_book(root: str | os.PathLike = ".", tier: str = "smoke", jobs: int = 1,
               use_cache: bool = True, *, run: bool = True,
               executed_dir: str | os.PathLike | None = None) -> bool:
    """Return True when the book built without errors; the HTML is in ``<root>/_build/html``.

    Executes the notebooks listed in ``_toc.yml`` through `medlearn.course.notebooks.run_notebooks` in
    `tier` (executed copies in `executed_dir`, default ``_build/executed``, cached; `make full`
    leaves its runs in ``_build/full/executed``), stages them with the book's sources in
    ``_build/stage`` and runs ``jupyter-book build -W --keep-going --all``: a notebook error, a
    missing page or a broken reference returns False. A notebook that only overran its budget is
    reported but still built (and reused on the next build). With ``run=False`` the runner is
    skipped and Jupyter Book executes the source notebooks itself (the plain
    ``jupyter-book build .`` path). Used by `make book`.

    Chapters that need a PACS (`notebook_needs`) when Orthanc is missing: rendered unexecuted with a
    visible note of what is missing and how to get it, unless `required("pacs")` (CI, `make test`),
    where the build stops at once with that message. Every page carries a banner (`banner`) with the
    tier, the data the notebooks announced and the date.
    """
    from medlearn.course.notebooks import run_notebooks

    root = Path(root).resolve()
    build = root / "_build"
    executed: dict[Path, Path] = {}
    notebooks = toc_notebooks(root)
    not_executed = missing_requirements(notebooks)
    if not_executed:
        names = ", ".join(nb.relative_to(root).as_posix() for nb in not_executed)
        why = next(iter(not_executed.values()))
        if required("pacs"):
            print(f"book NOT built: {names} need(s) a PACS (Orthanc), and it is required here "
                  f"(CI=true or MEDLEARN_REQUIRE_PACS=1), but:\n{why}\n"
                  "Fix: `make system-deps` (apt-get; root or sudo), then rerun.", file=sys.stderr)
            return False
        print(f"note: {names} will be shown WITHOUT outputs (a note on the page says why): "
              f"{why.splitlines()[0].split('. ')[0]}. `make system-deps` installs it.",
              file=sys.stderr)
        notebooks = [nb for nb in notebooks if nb not in not_executed]
    if run:
        out_dir = Path(executed_dir).resolve() if executed_dir else build / "executed"
        report = run_notebooks(notebooks, tier=tier, jobs=jobs, out_dir=out_dir,
                               report_path=build / "reports" / f"book-{tier}.json",
                               use_cache=use_cache, root=root,
                               # a run that completed but overran its budget still makes a page
                               cache_statuses=("ok", "over-budget"))
        # failed, or killed at the hard limit (an incomplete notebook makes no page)
        failed = [r for r in report.results if r.status == "failed" or r.error == "Timeout"]
        if failed:
            print("book NOT built: these notebooks failed (fix them, then rerun `make book`):\n"
                  + "\n".join("  " + r.describe() for r in failed), file=sys.stderr)
            return False
        for r in report.results:
            if r.status == "over-budget":
                print(f"warning: {r.describe()}", file=sys.stderr)
        executed = {nb: Path(r.output) for nb, r in zip(notebooks, report.results)}

    real, synthetic = data_provenance(executed.values())
    announcement = banner(tier if run else "source", real, synthetic, not_executed=len(not_executed))
    stage = build / "stage"
    _stage(root, stage, executed, not_executed=not_executed, announcement=announcement)
    html = build / "html"
    if html.exists():
        shutil.rmtree(html)  # a failed build must not leave the previous book looking current
    cmd = _jupyter_book() + ["build", str(stage), "--path-output", str(root),
                             "-W", "--keep-going", "--all"]
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # notebooks Jupyter Book executes must draw figures inline
    proc = subprocess.run(cmd, cwd=root, env=env)
    index = html / "index.html"
    if proc.returncode != 0:
        print(f"book build FAILED (jupyter-book exited {proc.returncode}); the warnings above name "
              "the page and the problem", file=sys.stderr)
        return False
    if not index.is_file():
        print(f"book build FAILED: {index} was not written", file=sys.stderr)
        return False
    print(f"book built: open {index}", flush=True)
    return True


# --------------------------------------------------------------------------- Sphinx extension
# The staged _config.yml loads this module as a Sphinx extension: it fixes two console errors of
# the theme stack that a reader's browser shows on every page (`make check-site` finds them).

def _one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline scripts: sphinx-thebe adds its `const THEBE_JS_URL = ...` once per
    read pass, and a second copy is a SyntaxError ("already been declared") in the browser."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""),  # None and "" both mean inline
               str(getattr(script, "attributes", {}).get("body", "")))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _theme_mode(app, config) -> None:
    """Give pydata-sphinx-theme a default mode: without one its script logs "Got invalid theme
    mode" as a console error on a reader's first visit."""
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")
    config.html_context = context


def _book_css(app, config) -> None:
    """Serve medlearn/course/book_static/ and load its stylesheet (code wraps instead of scrolling)."""
    config.html_static_path = [*config.html_static_path, str(Path(__file__).parent / "book_static")]


def setup(app) -> dict:
    """Sphinx entry point (``sphinx.extra_extensions: [medlearn.course.book]`` in the staged config)."""
    app.connect("config-inited", _theme_mode)
    app.connect("config-inited", _book_css)
    app.add_css_file("medlearn-book.css")
    # early: Sphinx stops calling html-page-context handlers after the first that returns a value
    app.connect("html-page-context", _one_copy_of_each_script, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
