"""The notebook runner: executes chapters with papermill in a tier, times them, caches, reports.

Used by `medlearn run-notebooks`, `medlearn build-book`, `make smoke`/`make full` and
`tests/test_notebooks.py`. It never writes over a source notebook: executed copies go to
`out_dir`, mirroring their path relative to the project root.

Tiers (DESIGN.md, "Tiers and budgets"):

======  ===============================  =======================
tier    parameters injected              budget per notebook
======  ===============================  =======================
smoke   ``FAST=True``                    90 s (2 CPU cores)
full    ``FAST=False, DATA="real"``      300 s (one GPU)
======  ===============================  =======================

Set ``MEDLEARN_BUDGET_S`` to override the budget on a slow machine.

Example::

    from medlearn.course.notebooks import run_notebooks
    report = run_notebooks(["book/part1"], tier="smoke", jobs=2)
    assert report.ok, report.failures()
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medlearn._atomic import atomic_write_text, temporary_sibling

#: Parameters each tier injects after the notebook's ``parameters`` cell.
TIER_PARAMETERS: dict[str, dict] = {
    "smoke": {"FAST": True},
    "full": {"FAST": False, "DATA": "real"},
}
#: Wall-time budget per notebook, in seconds (kernel start included).
BUDGETS_S: dict[str, float] = {"smoke": 90.0, "full": 300.0}
#: Folders never searched for notebooks.
SKIP_DIRS = {".ipynb_checkpoints", "_build", ".venv", "__pycache__", ".git"}
KERNEL = "python3"
#: Seconds a kernel may take to answer its first request before it is started once more (under
#: `make test` a start takes a few seconds; one seen stuck for the whole 120 s papermill allows).
KERNEL_START_TIMEOUT_S = 60
_STATUSES = ("ok", "cached", "failed", "over-budget")


def budget_for(tier: str) -> float:
    """Return the per-notebook budget in seconds for `tier` (``MEDLEARN_BUDGET_S`` overrides it)."""
    env = os.environ.get("MEDLEARN_BUDGET_S")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ValueError(f"MEDLEARN_BUDGET_S={env!r} is not a number of seconds; "
                             "set it to e.g. 300 or unset it") from None
    return BUDGETS_S[tier]


def cell_timeout_for(budget_s: float) -> int:
    """Return the per-cell timeout: twice the budget, at least 60 s, so a hang cannot block CI."""
    return int(max(60.0, 2 * budget_s))


def hard_limit_for(budget_s: float) -> float:
    """Return the wall time after which a notebook's process group is killed."""
    return max(3 * budget_s, budget_s + 120.0)


@dataclass
class Result:
    """One notebook's run: where it came from, how it went, how long it took."""

    path: str                      # the notebook, relative to the project root when inside it
    tier: str
    status: str                    # "ok" | "cached" | "failed" | "over-budget"
    wall_s: float                  # seconds (for "cached": the recorded time of the run it reuses)
    budget_s: float
    cpu_s: float | None = None     # CPU seconds of runner + kernel (compare when the machine is busy)
    output: str | None = None      # the executed copy
    cell: int | None = None        # index of the failing cell in the SOURCE notebook (0-based)
    error: str | None = None       # exception name, e.g. "ZeroDivisionError"
    message: str | None = None     # short error message
    source_line: str | None = None  # first line of the failing cell, to find it quickly

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "cached")

    def describe(self) -> str:
        """Return a one-line human description of this result (used in test failure messages)."""
        text = f"{self.path}: {self.status} in {self.wall_s:.1f} s (budget {self.budget_s:.0f} s)"
        if self.error:
            where = f" in cell {self.cell}" if self.cell is not None else ""
            first = f" [{self.source_line}]" if self.source_line else ""
            text += f"; {self.error}{where}{first}: {self.message}"
        return text


@dataclass
class Report:
    """All results of one runner call; `.ok` is False on any failure or overrun."""

    tier: str
    results: list[Result] = field(default_factory=list)
    report_path: str | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> str:
        """Return the failed or over-budget notebooks, one per line."""
        return "\n".join(r.describe() for r in self.results if not r.ok)

    def to_dict(self) -> dict:
        executed = [r.wall_s for r in self.results if r.status != "cached"]
        return {
            "tier": self.tier,
            "ok": self.ok,
            "n": len(self.results),
            "total_wall_s": round(sum(executed), 1),
            "counts": {s: sum(r.status == s for r in self.results) for s in _STATUSES},
            "results": [asdict(r) for r in self.results],
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Return the report as JSON; also write it to `path` (atomically) when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text + "\n")
        return text

    def table(self) -> str:
        """Return a plain-text table: status, wall time, budget, notebook, error."""
        rows = [f"{'status':<12}{'wall s':>8}{'cpu s':>8}{'budget':>8}  notebook"]
        for r in self.results:
            wall = f"({r.wall_s:.1f})" if r.status == "cached" else f"{r.wall_s:.1f}"
            cpu = "-" if r.cpu_s is None else f"{r.cpu_s:.1f}"
            line = f"{r.status:<12}{wall:>8}{cpu:>8}{r.budget_s:>8.0f}  {r.path}"
            if r.error:
                where = f"cell {r.cell}: " if r.cell is not None else ""
                line += f"\n{'':<38}{where}{r.error}: {r.message}"
            rows.append(line)
        d = self.to_dict()
        rows.append(f"{d['n']} notebooks, tier {self.tier}: " + ", ".join(
            f"{n} {s}" for s, n in d["counts"].items() if n) + f"; {d['total_wall_s']} s executed")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


# --------------------------------------------------------------------------- paths

def find_root(start: str | os.PathLike | None = None) -> Path:
    """Return the project root: the nearest folder upward holding `_toc.yml` or `pyproject.toml`."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() or (folder / "pyproject.toml").is_file():
            return folder
    return here


def collect_notebooks(paths) -> list[Path]:
    """Return the notebooks named by `paths` (files or folders, relative to cwd), sorted, unique.

    A folder expands to every ``*.ipynb`` below it, skipping checkpoints, `_build` and hidden
    folders. A path that does not exist is returned as is, so the runner reports it as failed.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        p = Path(p).resolve()
        if p.is_dir():
            for nb in sorted(p.rglob("*.ipynb")):
                parts = nb.relative_to(p).parts[:-1]
                if any(part in SKIP_DIRS or part.startswith(".") for part in parts):
                    continue
                found.append(nb)
        else:
            found.append(p)
    unique: list[Path] = []
    for nb in found:
        if nb not in unique:
            unique.append(nb)
    return unique


def _relative(nb: Path, root: Path) -> Path:
    for base in (root, Path.cwd().resolve()):
        try:
            return nb.relative_to(base)
        except ValueError:
            pass
    return Path("_external") / nb.parent.name / nb.name


# --------------------------------------------------------------------------- cache key

#: The instructor's room: editing it does not change what a notebook computes, so it is not in the key.
_TOOLING = "course"


def _medlearn_digest() -> str:
    """Return a digest of medlearn's version and library sources (a library change invalidates the cache)."""
    import medlearn

    h = hashlib.sha256(medlearn.__version__.encode())
    pkg = Path(medlearn.__file__).parent
    for f in sorted(pkg.rglob("*.py")):
        if f.relative_to(pkg).parts[0] == _TOOLING:
            continue
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


#: The libraries whose installed versions are part of the cache key.
KEY_LIBRARIES = ("numpy", "torch", "monai", "fastai", "fastMONAI", "torchio", "SimpleITK", "scikit-learn",
                 "pandas", "pydicom", "highdicom", "pynetdicom", "cleanlab", "matplotlib", "papermill")


def library_versions() -> dict[str, str]:
    """Return {distribution: installed version or "absent"} for `KEY_LIBRARIES`."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def data_provenance(root: str | os.PathLike | None = None) -> dict:
    """Return what a notebook's ``DATA="auto"`` would find: the md5 of every registered real file in
    the data cache (absent files are left out, so they load as stand-ins) and the offline switch.

    Seeding real data, or replacing a cached file, changes this and so the cache key of every run.
    """
    from medlearn.data.cache import cache_dir, md5sum, offline
    from medlearn.data.registry import REGISTRY

    root = cache_dir(root)
    real = {}
    for entry in REGISTRY.values():
        for files in getattr(entry, "files", {}).values():
            for f in files:
                path = root / f.path
                if path.is_file() and f.path not in real:
                    real[f.path] = md5sum(path)
    return {"real": dict(sorted(real.items())), "offline": offline()}


def run_context_digest(root: str | os.PathLike | None = None) -> str:
    """Return a digest of what a run depends on outside the notebook: data provenance and versions."""
    payload = json.dumps({"data": data_provenance(root), "versions": library_versions(),
                          "python": sys.version.split()[0]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def notebook_hash(nb_path: Path, tier: str, parameters: dict, lib_digest: str | None = None,
                  context: str | None = None) -> str:
    """Return the cache key of a run: cell sources and tags, tier, parameters, medlearn version+sources,
    and the run's context (`run_context_digest`: real vs stand-in data with md5s, library versions).

    Markdown is part of the key too, so a prose edit refreshes the executed copy the book shows.
    """
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    cells = [(c.cell_type, c.source, sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells]
    payload = json.dumps({"cells": cells, "tier": tier, "parameters": parameters,
                          "medlearn": lib_digest or _medlearn_digest(),
                          "context": context or run_context_digest()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _cached(out: Path, key: str, statuses=("ok",)) -> dict | None:
    if not out.is_file():
        return None
    try:
        meta = json.loads(out.read_text()).get("metadata", {}).get("medlearn", {})
    except (OSError, ValueError):
        return None
    if meta.get("hash") == key and meta.get("status") in statuses:
        return meta
    return None


# --------------------------------------------------------------------------- one notebook

def _child_main(argv: list[str]) -> int:
    """Execute one notebook (in its own process group); write errors to a JSON side file."""
    spec = json.loads(argv[0])
    _become_subreaper()
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    for attempt in (1, 2):
        err: dict = {}
        code = 0
        try:
            pm.execute_notebook(spec["input"], spec["output"], parameters=spec["parameters"],
                                kernel_name=spec["kernel"], cwd=spec["cwd"], progress_bar=False,
                                log_output=False, execution_timeout=spec["cell_timeout"],
                                start_timeout=spec["start_timeout"],
                                # IPython's history in memory, as nbgrader's kernels keep it: many
                                # kernels at once would otherwise share one SQLite file
                                extra_arguments=["--HistoryManager.hist_file=:memory:"])
        except PapermillExecutionError as e:
            err = {"error": e.ename, "message": str(e.evalue)}
            code = 1
        except Exception as e:  # kernel death, cell timeout, unreadable notebook
            err = {"error": type(e).__name__, "message": str(e)}
            code = 1
            # A kernel that dies or stays silent before its first reply ran no cell: when many
            # kernels start at once, a port chosen for it can be taken before it binds (both seen
            # under `make test`). Start it once more.
            if attempt == 1 and any(m in str(e) for m in ("before replying to kernel_info",
                                                          "didn't respond in")):
                print(f"the kernel failed to start ({e}); starting it again", file=sys.stderr)
                continue
        break
    import resource

    # CPU seconds of this process and the kernel it started and reaped: the notebook's compute,
    # which (unlike wall time) does not grow when other jobs share the machine.
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    Path(spec["error_file"]).write_text(json.dumps({**err, "cpu_s": round(cpu, 1)}))
    for pid in _descendants(os.getpid()):  # anything the notebook started and left running
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return code


def _become_subreaper() -> None:
    """Linux: adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so a server the kernel started stays
    in this process's tree, where the runner finds and kills it at the hard limit."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid` (children, grandchildren, ...), from `ps`."""
    try:
        ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid="], stdout=subprocess.PIPE, text=True)
        out, _ = ps.communicate(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) != ps.pid:
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILL `pid`, every process below it and their process groups (the kernel runs in its own
    session, and what it starts may too); return the pids killed."""
    killed = []
    for _round in range(3):  # a process may fork while we look: look again
        tree = [p for p in _descendants(pid) if p not in killed]
        targets = ([pid] if not killed else []) + tree
        if not targets:
            break
        for p in targets:
            try:
                group = os.getpgid(p)
                if group != os.getpgrp():  # never our own group
                    os.killpg(group, signal.SIGKILL)
                os.kill(p, signal.SIGKILL)
            except OSError:  # already gone
                pass
            killed.append(p)
    return killed


def _failing_cell(out: Path) -> tuple[int | None, str | None]:
    """Return (index in the source notebook, first source line) of the cell that failed or hung."""
    try:
        cells = json.loads(out.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None, None
    src_index = -1
    running = None
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            continue
        src_index += 1
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        errored = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")[:80]
        if errored or status == "failed":
            return src_index, first
        if status == "running" and running is None:
            running = (src_index, first)
    return running if running else (None, None)


def _short(text: str | None, n: int = 300) -> str | None:
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _run_one(nb: Path, out: Path, rel: Path, tier: str, parameters: dict, budget_s: float,
             key: str, env: dict, use_cache: bool, cache_statuses=("ok",)) -> Result:
    base = dict(path=rel.as_posix(), tier=tier, budget_s=budget_s, output=str(out))
    if not nb.is_file():
        return Result(status="failed", wall_s=0.0, error="FileNotFoundError",
                      message=f"{nb} does not exist; pass a notebook or a folder of notebooks", **base)
    if nb.resolve() == out.resolve():
        raise ValueError(f"the executed copy of {nb} would overwrite it; choose another out_dir")
    if use_cache and (meta := _cached(out, key, cache_statuses)):
        return Result(status="cached", wall_s=float(meta.get("wall_s", 0.0)), cpu_s=meta.get("cpu_s"),
                      **base)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_sibling(out, ".ipynb")  # unique: two runners never share it
    error_file = out.with_name(out.name + ".error.json")
    for f in (partial, error_file):
        f.unlink(missing_ok=True)
    spec = {"input": str(nb), "output": str(partial), "parameters": parameters, "kernel": KERNEL,
            "cwd": str(nb.parent), "cell_timeout": cell_timeout_for(budget_s),
            "start_timeout": KERNEL_START_TIMEOUT_S, "error_file": str(error_file)}
    cmd = [sys.executable, "-c", "import sys; from medlearn.course.notebooks import _child_main; "
           "sys.exit(_child_main(sys.argv[1:]))", json.dumps(spec)]
    limit = hard_limit_for(budget_s)
    import shutil
    import tempfile

    # A private temporary folder per run: whatever the notebook leaves there (an Orthanc's storage
    # after a kill, say) is deleted with it.
    run_tmp = tempfile.mkdtemp(prefix="medlearn-run-")
    env = dict(env, TMPDIR=run_tmp)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = False
    try:
        log, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        killed = True
        # papermill, the kernel (its own session), and everything the kernel started
        kill_tree(proc.pid)
        try:
            log, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # something we could not kill holds the pipe: stop reading
            log = ""
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    finally:
        shutil.rmtree(run_tmp, ignore_errors=True)
    wall = time.perf_counter() - t0

    err = {}
    cpu_s = None
    if error_file.is_file():
        try:
            err = json.loads(error_file.read_text())
        except ValueError:
            err = {}
        cpu_s = err.pop("cpu_s", None)
        error_file.unlink(missing_ok=True)
    if killed:
        err = {"error": "Timeout", "message": f"killed after {wall:.0f} s (budget {budget_s:.0f} s, "
               f"hard limit {limit:.0f} s); make the FAST path smaller or raise MEDLEARN_BUDGET_S"}
    elif proc.returncode != 0 and not err:
        tail = (log or "").strip().splitlines()[-3:]
        err = {"error": "RunnerError", "message": f"papermill exited {proc.returncode}: " + " | ".join(tail)}

    if err:
        status = "over-budget" if killed else "failed"
    else:
        status = "over-budget" if wall > budget_s else "ok"
    if status == "over-budget" and not err:
        err = {"error": "OverBudget", "message": f"took {wall:.1f} s, budget {budget_s:.0f} s "
               "(make the FAST path smaller, or set MEDLEARN_BUDGET_S on a slow machine)"}

    cell, first = (None, None)
    if partial.is_file():
        if err:
            cell, first = _failing_cell(partial)
        nbjson = json.loads(partial.read_text())
        for c in nbjson.get("cells", []):  # the book hides the runner's cell; the notebook keeps it
            tags = c.setdefault("metadata", {}).setdefault("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbjson.setdefault("metadata", {})["medlearn"] = {
            # a killed run is incomplete: never reusable, whatever the cache accepts
            "hash": key, "tier": tier, "parameters": parameters,
            "status": "incomplete" if killed else status,
            "wall_s": round(wall, 2), "cpu_s": cpu_s, "budget_s": budget_s, "source": rel.as_posix()}
        partial.write_text(json.dumps(nbjson, indent=1, ensure_ascii=False) + "\n")
        os.replace(partial, out)  # atomic: a reader never sees half a notebook
    else:
        out.unlink(missing_ok=True)  # never leave a stale copy that looks current
    return Result(status=status, wall_s=round(wall, 2), cpu_s=cpu_s, cell=cell, error=err.get("error"),
                  message=_short(err.get("message")), source_line=first, **base)


# --------------------------------------------------------------------------- public entry

def run_notebooks(paths=("book",), tier: str = "smoke", jobs: int = 1, out_dir="_build/executed",
                  report_path=None, use_cache: bool = True, *, root=None, quiet: bool = False,
                  cache_statuses=("ok",)) -> Report:
    """Return a Report after executing `paths` (notebooks or folders) with papermill in `tier`.

    Parameters of the tier are injected after each notebook's ``parameters`` cell; each notebook
    runs with its own folder as working directory, inherits ``MEDLEARN_DATA``, and its executed
    copy (with timing and a cache key in ``metadata.medlearn``) is written to ``out_dir`` under
    its path relative to the project root. A copy whose key matches a previous successful run is
    reused ("cached"). The JSON report goes to `report_path` (default
    ``<out_dir>/report-<tier>.json``). `cache_statuses` widens what may be reused: the book build
    also reuses a run that completed but overran its budget ("over-budget"). Introduced in the README ("Instructors") and used by
    `medlearn.course.book.build_book` and ``tests/test_notebooks.py``.
    """
    if tier not in TIER_PARAMETERS:
        raise ValueError(f"unknown tier {tier!r}; use one of {sorted(TIER_PARAMETERS)}")
    root = Path(root).resolve() if root else find_root()
    out_dir = Path(out_dir).resolve()
    parameters = dict(TIER_PARAMETERS[tier])
    budget_s = budget_for(tier)
    jobs = max(1, int(jobs))
    notebooks = collect_notebooks(paths)

    env = dict(os.environ)
    # Kernels must draw figures inline (the book shows them); a test's MPLBACKEND=Agg would hide them.
    env.pop("MPLBACKEND", None)
    if jobs > 1:
        # n kernels on n cores: one BLAS/OpenMP thread each unless the caller chose otherwise.
        per = str(max(1, (os.cpu_count() or 1) // jobs))
        env.setdefault("OMP_NUM_THREADS", per)
        env.setdefault("MKL_NUM_THREADS", per)

    lib = _medlearn_digest()
    context = run_context_digest()
    jobs_args = []
    for nb in notebooks:
        rel = _relative(nb, root)
        key = notebook_hash(nb, tier, parameters, lib, context) if nb.is_file() else ""
        jobs_args.append((nb, out_dir / rel, rel, tier, parameters, budget_s, key, env, use_cache,
                          tuple(cache_statuses)))

    report = Report(tier=tier)
    if not quiet:
        print(f"running {len(notebooks)} notebook(s), tier {tier}, budget {budget_s:.0f} s each, "
              f"{jobs} in parallel -> {out_dir}", flush=True)

    def task(args):
        r = _run_one(*args)
        if not quiet:
            print(f"  {r.status:<12}{r.wall_s:>7.1f} s  {r.path}", flush=True)
        return r

    if jobs == 1 or len(jobs_args) <= 1:
        results = [task(a) for a in jobs_args]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(task, jobs_args))
    report.results = results
    report_path = Path(report_path) if report_path else out_dir / f"report-{tier}.json"
    report.to_json(report_path)
    report.report_path = str(report_path)
    if not quiet:
        print(report.table())
        print(f"report: {report_path}", flush=True)
    return report
