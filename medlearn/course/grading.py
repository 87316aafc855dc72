"""The nbgrader round trip that proves an assignment is sound, and the student versions students open.

`grade_check()` (CLI: `medlearn grade-check`) works in a temporary copy of the course with its own
gradebook, so nothing is written into the repository. For each assignment it

1. generates the student version with nbgrader's Python API (``NbGraderAPI.generate_assignment``);
2. autogrades (a) the source version with the solutions: every autograded cell must get full marks;
   (b) the untouched student version: every autograded cell must get 0, and the run must complete;
   (c) each wrong submission in ``tests/submissions/<assignment>/``: every autograded cell must get
   exactly the points ``expected.json`` gives it;
3. checks that the released notebook holds no line of any solution region and no hidden test (by
   comparing text, not just the markers);
4. generates feedback HTML for every submission and checks that none shows a hidden-test line.

Student code runs in the course's grading sandbox (`medlearn.course.sandbox`, configured in
exercises/nbgrader_config.py): it cannot read the source notebooks or the gradebook, has a memory
cap and a time cap per submission. The hostile submissions in tests/submissions/a1_vision_basics/
prove it.

Scores are read per cell from nbgrader's gradebook (``nbgrader.api.Gradebook``), never from the CLI's
exit status, which hides failures. `write_student_versions()` (CLI: `medlearn grade-check
--write-student`) writes the released notebook of each assignment to ``exercises/student/`` where the
book's "Open in Colab" badges point. Used by the instructor guide (exercises/README.md) and the book's
exercises page.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from medlearn._atomic import atomic_write_text

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END)
SOLUTION_STUDENT = "solution"   # the pseudo-student whose submission is the source notebook
STUDENT_STUDENT = "student"     # the pseudo-student who submits the untouched student version
_MIN_LEAK_CHARS = 6             # shorter lines ("else:", "return x") are too generic to call a leak


@dataclass
class SubmissionResult:
    """One autograded submission: per grade cell (score, max score), and whether it matched."""

    label: str
    scores: dict[str, tuple[float, float]]
    expected: dict[str, float]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total(self) -> float:
        return sum(score for score, _ in self.scores.values())


@dataclass
class AssignmentReport:
    """The round trip of one assignment: submissions graded, leaks found, feedback files, time taken."""

    assignment: str
    grade_ids: list[str] = field(default_factory=list)
    max_scores: dict[str, float] = field(default_factory=dict)
    submissions: list[SubmissionResult] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    feedback: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sandbox: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.leaks and all(s.ok for s in self.submissions)

    def table(self) -> str:
        """Return the score table: one row per submission, one column per autograded cell."""
        width = max([len(s.label) for s in self.submissions] + [10])
        short = [_short_id(g) for g in self.grade_ids]
        head = f"{'submission':<{width}}  " + "  ".join(f"{s:>9}" for s in short) + "      total   time  verdict"
        lines = [f"== {self.assignment} ({self.seconds:.0f} s)"] + ([self.sandbox] if self.sandbox else []) + [head]
        total_max = sum(self.max_scores.values())
        for sub in self.submissions:
            cells = []
            for gid in self.grade_ids:
                score, max_score = sub.scores.get(gid, (float("nan"), self.max_scores.get(gid, 0)))
                cells.append(f"{score:>4g}/{max_score:<4g}")
            verdict = "ok" if sub.ok else "FAIL: " + "; ".join(sub.problems)
            lines.append(f"{sub.label:<{width}}  " + "  ".join(f"{c:>9}" for c in cells)
                         + f"  {sub.total:>4g}/{total_max:<4g}  {sub.seconds:>4.0f} s  {verdict}")
        lines.append("leak check: " + ("no solution or hidden-test text in the release" if not self.leaks
                                       else f"{len(self.leaks)} leaked line(s): " + "; ".join(self.leaks[:5])))
        lines.append(f"feedback: {len(self.feedback)} HTML file(s), no hidden-test line in any"
                     if self.feedback and not any("hidden-test line" in p for p in self.problems)
                     else f"feedback: {len(self.feedback)} HTML file(s)")
        lines.extend(f"PROBLEM: {p}" for p in self.problems)
        return "\n".join(lines)


def _short_id(grade_id: str) -> str:
    return re.sub(r"_tests?$", "", grade_id)[:9]


# ----------------------------------------------------------------------------- notebook text

def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def autograded_cells(notebook_path: str | Path) -> dict[str, float]:
    """Return {grade_id: points} for every autograded cell (a grade cell that is not a solution cell)."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    return {_nbgrader(c)["grade_id"]: float(_nbgrader(c).get("points", 0)) for c in nb.cells
            if _nbgrader(c).get("grade") and not _nbgrader(c).get("solution")}


def _protected_lines(source_nb) -> tuple[set[str], set[str]]:
    """Return (lines inside solution/hidden-test regions, lines visible outside them) of a source notebook."""
    secret, visible = set(), set()
    for cell in source_nb.cells:
        meta = _nbgrader(cell)
        text = _cell_source(cell)
        has_markers = any(m in text for m in MARKERS)
        if cell.cell_type == "markdown" and meta.get("solution") and not has_markers:
            # A markdown solution cell without markers is replaced as a whole by the text stub.
            secret.update(line.strip() for line in text.splitlines())
            continue
        inside = False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped in (SOLUTION_BEGIN, HIDDEN_BEGIN):
                inside = True
            elif stripped in (SOLUTION_END, HIDDEN_END):
                inside = False
            elif inside:
                secret.add(stripped)
            else:
                visible.add(stripped)
    return secret, visible


def find_leaks(source_path: str | Path, release_path: str | Path) -> list[str]:
    """Return the lines of the released notebook that come from a solution or hidden-test region.

    A line counts when it is identical (ignoring indentation) to a line inside a region of the source
    notebook, is not also visible elsewhere in the source, and has at least six characters; the four
    region markers themselves always count.
    """
    import nbformat

    source_nb = nbformat.read(str(source_path), as_version=4)
    release_nb = nbformat.read(str(release_path), as_version=4)
    secret, visible = _protected_lines(source_nb)
    secret = {s for s in secret - visible if len(s) >= _MIN_LEAK_CHARS}
    leaks = []
    for index, cell in enumerate(release_nb.cells):
        for line in _cell_source(cell).splitlines():
            stripped = line.strip()
            if stripped in secret or any(m in stripped for m in MARKERS):
                leaks.append(f"cell {index}: {stripped[:60]}")
    return leaks


def hidden_test_lines(source_path: str | Path) -> set[str]:
    """Return the hidden-test lines of a source notebook that appear nowhere outside a region."""
    import nbformat

    from medlearn.course.sandbox import hidden_lines

    nb = nbformat.read(str(source_path), as_version=4)
    _, visible = _protected_lines(nb)
    return hidden_lines(nb) - visible


def sandbox_description(config) -> str:
    """Return one line saying how the course's configuration runs student code (the table prints it)."""
    steps = [str(getattr(p, "__name__", p)) for p in config.Autograde.get("autograde_preprocessors", [])]
    if not any(s.endswith("SandboxedExecute") for s in steps):
        return "sandbox: OFF (nbgrader's Execute: student code runs with your rights; exercises/README.md)"
    from medlearn.course.sandbox import SandboxedExecute, bwrap_mode

    settings = {name: config.SandboxedExecute.get(name, SandboxedExecute.class_traits()[name].default_value)
                for name in ("sandbox", "memory_limit_mb", "submission_timeout")}
    if not settings["sandbox"]:
        where = "OFF (c.SandboxedExecute.sandbox = False)"
    else:
        where = {"userns": "bubblewrap, as nobody in user/PID/mount namespaces",
                 "root": "bubblewrap, mount/PID namespaces (no user namespaces here)"}.get(
            bwrap_mode(), "UNAVAILABLE: install bubblewrap")
    return (f"sandbox: {where}; memory cap {settings['memory_limit_mb']} MiB; "
            f"time cap {settings['submission_timeout']} s per submission")


def _own_lines(notebook: Path) -> set[str]:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    return {line.strip() for cell in nb.cells for line in _cell_source(cell).splitlines()}


def feedback_hidden_lines(html_path: str | Path, secret: set[str]) -> list[str]:
    """Return the lines of a feedback HTML file's text (tags removed) that are hidden-test lines."""
    import html as html_lib

    text = html_lib.unescape(re.sub(r"<[^>]+>", "", Path(html_path).read_text(errors="replace")))
    return [line.strip() for line in text.splitlines() if line.strip() in secret]


# ----------------------------------------------------------------------------- nbgrader plumbing

def _course_config(course_dir: Path, root: Path, cell_timeout: int | None = None):
    """Return the course's nbgrader config, re-rooted in the temporary course `root`
    (with `cell_timeout`, each cell may run that many seconds instead of the course's limit)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config_file = course_dir / "nbgrader_config.py"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: an nbgrader course folder needs its "
                                "nbgrader_config.py (see exercises/README.md)")
    config = PyFileConfigLoader(config_file.name, path=str(course_dir)).load_config()
    overrides = Config()
    overrides.CourseDirectory.root = str(root)
    overrides.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    overrides.Exchange.root = str(root / "exchange")
    overrides.NbGraderAPI.log_level = "WARN"
    if cell_timeout is not None:
        overrides.Execute.timeout = int(cell_timeout)
    config.merge(overrides)
    return config


def _cache_alembic_head() -> None:
    """Make nbgrader ask alembic for its schema head once per process, not once per new gradebook.

    nbgrader stamps every new gradebook with the head revision it gets from an `alembic heads`
    subprocess (seconds per call on a busy 2-core machine); the answer is a constant of the install.
    """
    import functools

    import nbgrader.api

    if not hasattr(nbgrader.api.get_alembic_version, "cache_info"):
        nbgrader.api.get_alembic_version = functools.lru_cache(maxsize=1)(nbgrader.api.get_alembic_version)


def _interpreter_bin_on_path() -> None:
    """Put this interpreter's bin folder on PATH: nbgrader runs `alembic` by name, and a virtual
    environment used without activation (`.venv/bin/medlearn`, `make test`) must still find it."""
    import os
    import sys

    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _api(course_dir: Path, root: Path, cell_timeout: int | None = None):
    from nbgrader.apps import NbGraderAPI

    _interpreter_bin_on_path()
    _cache_alembic_head()

    (root / "exchange").mkdir(parents=True, exist_ok=True)
    return NbGraderAPI(config=_course_config(course_dir, root, cell_timeout))


def _require(result: dict, what: str) -> None:
    if not result.get("success"):
        detail = (result.get("error") or "") + "\n" + (result.get("log") or "")
        raise RuntimeError(f"nbgrader failed to {what}:\n{detail.strip()[-3000:]}")


def _notebook_of(folder: Path, assignment: str) -> Path:
    notebooks = sorted(folder.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise FileNotFoundError(f"{folder} must hold exactly one notebook (found {len(notebooks)}); "
                                f"name it {assignment}.ipynb")
    return notebooks[0]


def _generate(api, assignment: str) -> Path:
    """Return the released notebook after generating the student version of `assignment`."""
    _require(api.generate_assignment(assignment, force=True, create=True),
             f"generate the student version of {assignment}")
    release = Path(api.coursedir.format_path(api.coursedir.release_directory, ".", assignment))
    return _notebook_of(release, assignment)


def _grade(api, assignment: str, student: str, notebook: Path, notebook_id: str) -> dict[str, tuple]:
    """Return {grade_id: (score, max_score)} after autograding `notebook` submitted by `student`."""
    submitted = Path(api.coursedir.format_path(api.coursedir.submitted_directory, student, assignment))
    submitted.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(notebook, submitted / f"{notebook_id}.ipynb")
    _require(api.autograde(assignment, student, force=True, create=True),
             f"autograde {notebook.name} as {student}")
    autograded = Path(api.coursedir.format_path(api.coursedir.autograded_directory, student, assignment))
    if not (autograded / f"{notebook_id}.ipynb").is_file():
        raise RuntimeError(f"nbgrader could not autograde {notebook.name} as {student} "
                           f"(no notebook in {autograded})")
    gradebook = api.gradebook
    try:
        sub = gradebook.find_submission_notebook(notebook_id, assignment, student)
        return {g.name: (float(g.score or 0.0), float(g.max_score)) for g in sub.grades}
    finally:
        gradebook.close()


# ----------------------------------------------------------------------------- the round trip

def check_assignment(assignment: str, course_dir: str | Path = "exercises",
                     submissions_dir: str | Path | None = None,
                     workdir: str | Path | None = None,
                     cell_timeout: int | None = None) -> AssignmentReport:
    """Return the round-trip report of one assignment (see the module docstring for what is checked).

    `cell_timeout` (seconds) replaces the course's per-cell limit for this check only: the tests use a
    short one so that the hostile infinite loop is interrupted sooner, through the same code path.
    """
    course_dir = Path(course_dir).resolve()
    submissions_dir = Path(submissions_dir) if submissions_dir else course_dir.parent / "tests" / "submissions"
    submissions_dir = submissions_dir / assignment
    source_folder = course_dir / "source" / assignment
    source_nb = _notebook_of(source_folder, assignment)
    notebook_id = source_nb.stem
    report = AssignmentReport(assignment)
    report.max_scores = autograded_cells(source_nb)
    report.grade_ids = list(report.max_scores)
    if not report.grade_ids:
        report.problems.append(f"{source_nb} has no autograded cell (nbgrader metadata grade=True, solution=False)")
        return report

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"grade-check-{assignment}-", dir=workdir) as tmp, \
            warnings.catch_warnings():
        # nbgrader's gradebook triggers harmless SQLAlchemy session warnings on every autograde.
        warnings.filterwarnings("ignore", message=".*not in session.*")
        root = Path(tmp)
        shutil.copytree(source_folder, root / "source" / assignment)
        api = _api(course_dir, root, cell_timeout)
        report.sandbox = sandbox_description(api.config)
        release_nb = _generate(api, assignment)
        report.leaks = find_leaks(source_nb, release_nb)

        runs = [(SOLUTION_STUDENT, source_nb, dict(report.max_scores)),
                (STUDENT_STUDENT, release_nb, {g: 0.0 for g in report.grade_ids})]
        expected_file = submissions_dir / "expected.json"
        wrong = sorted(submissions_dir.glob("*.ipynb")) if submissions_dir.is_dir() else []
        if not wrong:
            report.problems.append(f"no wrong submissions in {submissions_dir}: add at least two "
                                   "(see exercises/README.md, 'Wrong submissions')")
        elif not expected_file.is_file():
            report.problems.append(f"{expected_file} is missing: map each submission file to "
                                   "{grade_id: expected points} for every autograded cell")
        else:
            expected_all = json.loads(expected_file.read_text())
            for path in wrong:
                expected = expected_all.get(path.name)
                if expected is None:
                    report.problems.append(f"{expected_file} has no entry for {path.name}")
                    continue
                runs.append((path.stem, path, {k: float(v) for k, v in expected.items()}))

        for label, notebook, expected in runs:
            result = SubmissionResult(label, {}, expected)
            report.submissions.append(result)
            missing = set(report.grade_ids) - set(expected)
            extra = set(expected) - set(report.grade_ids)
            if missing or extra:
                result.problems.append(f"expected.json must list exactly the autograded cells: "
                                       f"missing {sorted(missing)}, unknown {sorted(extra)}")
            started = time.perf_counter()
            try:
                grades = _grade(api, assignment, label, notebook, notebook_id)
                result.seconds = time.perf_counter() - started
            except RuntimeError as error:
                result.problems.append(str(error).splitlines()[0])
                report.problems.append(str(error))
                continue
            result.scores = {g: grades[g] for g in report.grade_ids if g in grades}
            for gid in report.grade_ids:
                if gid not in grades:
                    result.problems.append(f"{gid} was not graded (cell deleted or metadata changed?)")
                elif gid in expected and abs(grades[gid][0] - expected[gid]) > 1e-9:
                    result.problems.append(f"{gid} scored {grades[gid][0]:g}, expected {expected[gid]:g}")

        # Feedback for every graded submission (what a student receives): no hidden test in it.
        secret = hidden_test_lines(source_nb)
        for sub, (_, notebook, _) in zip(report.submissions, runs):
            if not sub.scores:
                continue
            label = sub.label
            _require(api.generate_feedback(assignment, label, force=True), f"generate feedback for {label}")
            folder = Path(api.coursedir.format_path(api.coursedir.feedback_directory, label, assignment))
            html = folder / f"{notebook_id}.html"
            if html.is_file() and html.stat().st_size > 0:
                report.feedback.append(html.relative_to(root))
                # a line the student wrote in their own notebook is theirs, not a leak
                shown = feedback_hidden_lines(html, secret - _own_lines(notebook))
                if shown:
                    report.problems.append(f"feedback for {label} shows {len(shown)} hidden-test "
                                           f"line(s), e.g. {shown[0][:60]!r}")
            else:
                report.problems.append(f"no feedback HTML for {label} at {html}")
    report.seconds = time.perf_counter() - start
    return report


def list_assignments(course_dir: str | Path = "exercises") -> list[str]:
    """Return the names of the assignments in `course_dir`/source, sorted."""
    source = Path(course_dir) / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and list(p.glob("*.ipynb"))) \
        if source.is_dir() else []


def grade_check(assignments: list[str] | None = None, course_dir: str | Path = "exercises",
                submissions_dir: str | Path | None = None) -> bool:
    """Return True when every assignment passes the nbgrader round trip; print a score table for each.

    Used by `medlearn grade-check` and tests/test_grading.py; exercises/README.md explains the checks.
    """
    names = assignments or list_assignments(course_dir)
    if not names:
        print(f"no assignments found in {Path(course_dir) / 'source'}")
        return False
    ok = True
    for name in names:
        if not (Path(course_dir) / "source" / name).is_dir():
            print(f"== {name}: no folder {Path(course_dir) / 'source' / name}; "
                  f"known: {', '.join(list_assignments(course_dir)) or 'none'}")
            ok = False
            continue
        report = check_assignment(name, course_dir, submissions_dir)
        print(report.table(), flush=True)
        ok &= report.ok
    print("grade-check: " + ("PASSED" if ok else "FAILED"))
    return ok


# ----------------------------------------------------------------------------- student versions

def release_notebooks(assignments: list[str] | None = None,
                      course_dir: str | Path = "exercises") -> dict[str, str]:
    """Return {assignment: released notebook JSON text}, generated by nbgrader in a temporary course."""
    import nbformat

    course_dir = Path(course_dir).resolve()
    names = assignments or list_assignments(course_dir)
    released = {}
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        root = Path(tmp)
        for name in names:
            shutil.copytree(course_dir / "source" / name, root / "source" / name)
        api = _api(course_dir, root)
        for name in names:
            nb = nbformat.read(str(_generate(api, name)), as_version=4)
            released[name] = nbformat.writes(nb) + "\n"
    return released


def student_path(assignment: str, course_dir: str | Path = "exercises") -> Path:
    """Return where the committed student version of `assignment` lives (the Colab badges' target)."""
    return Path(course_dir) / "student" / assignment / f"{assignment}.ipynb"


def write_student_versions(assignments: list[str] | None = None,
                           course_dir: str | Path = "exercises") -> list[Path]:
    """Return the paths written: each assignment's student version under `course_dir`/student/.

    Run `medlearn grade-check --write-student` after editing a source notebook, and commit the result;
    tests/test_grading.py fails while a committed student version is out of date.
    """
    written = []
    for name, text in release_notebooks(assignments, course_dir).items():
        path = student_path(name, course_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)  # never a half-written notebook
        written.append(path)
        print(f"wrote {path}")
    return written


def stale_student_versions(assignments: list[str] | None = None,
                           course_dir: str | Path = "exercises") -> list[str]:
    """Return the assignments whose committed student version is missing or differs from a fresh release."""
    import nbformat

    stale = []
    for name, text in release_notebooks(assignments, course_dir).items():
        path = student_path(name, course_dir)
        if not path.is_file() or nbformat.reads(path.read_text(), as_version=4) != nbformat.reads(text, as_version=4):
            stale.append(name)
    return stale


def make_submission(assignment: str, answers: dict[str, str], path: str | Path,
                    course_dir: str | Path = "exercises") -> Path:
    """Return `path` after writing a filled-in copy of the committed student version.

    `answers` maps a solution cell's grade_id to the source a student would type into it; every other
    cell, and all nbgrader metadata, stay as released. Used to make the wrong submissions under
    tests/submissions/<assignment>/ (exercises/README.md, 'Wrong submissions').
    """
    import nbformat

    student = student_path(assignment, course_dir)
    if not student.is_file():
        raise FileNotFoundError(f"{student} is missing: run `medlearn grade-check --write-student {assignment}`")
    nb = nbformat.read(str(student), as_version=4)
    unknown = set(answers) - {_nbgrader(c).get("grade_id") for c in nb.cells if _nbgrader(c).get("solution")}
    if unknown:
        raise KeyError(f"{student} has no solution cell with grade_id {sorted(unknown)}")
    for cell in nb.cells:
        gid = _nbgrader(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid].strip("\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
