"""Build the book: execute its notebooks with the runner, then Jupyter Book 1.x on the executed copies.

Used by `make book` (`medlearn build-book`) and ``tests/test_notebooks.py``/``tests/test_book.py``.
The sources under ``book/`` are never written to: the runner's executed copies and a copy of the
book's sources are staged in ``_build/stage``, and Jupyter Book writes the HTML to ``_build/html``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Files of the project root that the book needs beside book/**.
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")


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


def _stage(root: Path, stage: Path, executed: dict[Path, Path]) -> None:
    """Copy the book's sources to `stage`, with each executed notebook in place of its source."""
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
    # The executed copies are marked execution_mode "off"; any other notebook still lacking outputs
    # is executed ("auto"), and its errors still fail the build (nb_execution_raise_on_error).
    config_path = stage / "_config.yml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    config.setdefault("execute", {})["execute_notebooks"] = "auto"
    config["execute"]["cache"] = ""
    config.setdefault("sphinx", {}).setdefault("config", {})["nb_execution_raise_on_error"] = True
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def build_book(root: str | os.PathLike = ".", tier: str = "smoke", jobs: int = 1,
               use_cache: bool = True, *, run: bool = True) -> bool:
    """Return True when the book built without errors; the HTML is in ``<root>/_build/html``.

    Executes the notebooks listed in ``_toc.yml`` through `medlearn.notebooks.run_notebooks` in
    `tier` (executed copies in ``_build/executed``, cached), stages them with the book's sources in
    ``_build/stage`` and runs ``jupyter-book build -W --keep-going --all``: a notebook error, a
    missing page or a broken reference returns False. A notebook that only overran its budget is
    reported but still built (and reused on the next build). With ``run=False`` the runner is
    skipped and Jupyter Book executes the source notebooks itself (the plain
    ``jupyter-book build .`` path). Used by `make book`.
    """
    from medlearn.notebooks import run_notebooks

    root = Path(root).resolve()
    build = root / "_build"
    executed: dict[Path, Path] = {}
    if run:
        notebooks = toc_notebooks(root)
        report = run_notebooks(notebooks, tier=tier, jobs=jobs, out_dir=build / "executed",
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

    stage = build / "stage"
    _stage(root, stage, executed)
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
