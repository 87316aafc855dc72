"""The nbgrader round trip of every assignment in exercises/source, and the checker's own checks.

For each assignment the round trip runs once (module-scoped fixture; about five notebook executions):
the solution gets full marks, the untouched student version gets 0 on every autograded cell and its
run completes, each wrong submission in tests/submissions/<assignment>/ gets exactly the points of
expected.json, the released notebook leaks no solution or hidden test, and feedback HTML is written.
A new assignment (a2, a3, ...) is picked up by adding its folder; nothing here needs editing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from medlearn.course import grading

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "exercises"
SUBMISSIONS = ROOT / "tests" / "submissions"
ASSIGNMENTS = grading.list_assignments(COURSE)


def _cells(notebook: Path) -> list:
    return nbformat.read(str(notebook), as_version=4).cells


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


# Assignment 1's hostile infinite loop runs until the cell limit interrupts it: 30 s here instead of
# the course's 120 s (the same interrupt path; every honest cell of a1 takes a few seconds).
# Assignment 3 trains a network in each submission: under `make test` other workers share the two
# cores, so its cells may take 300 s (no a3 submission is about the time limit).
CELL_TIMEOUT = {"a1_vision_basics": 30, "a3_classification": 300}


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def round_trip(request, data_cache, tmp_path_factory) -> grading.AssignmentReport:
    report = grading.check_assignment(request.param, COURSE, SUBMISSIONS,
                                      workdir=tmp_path_factory.mktemp("grade-check"),
                                      cell_timeout=CELL_TIMEOUT.get(request.param))
    print(report.table())
    return report


def _by_label(report: grading.AssignmentReport) -> dict[str, grading.SubmissionResult]:
    return {s.label: s for s in report.submissions}


# ----------------------------------------------------------------------------- static checks (fast)

def test_course_has_assignments():
    assert "a1_vision_basics" in ASSIGNMENTS
    assert (COURSE / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_follows_the_assignment_format(assignment):
    source = COURSE / "source" / assignment / f"{assignment}.ipynb"
    cells = _cells(source)
    ids = [_meta(c)["grade_id"] for c in cells if _meta(c)]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    for cell in cells:
        if _meta(cell):
            assert _meta(cell).get("schema_version") == 3, _meta(cell)
    autograded = [c for c in cells if _meta(c).get("grade") and not _meta(c).get("solution")]
    assert len(autograded) >= 3, "at least three autograded parts"
    assert sum("### BEGIN HIDDEN TESTS" in c.source for c in autograded) >= 3, "hidden tests in the graded parts"
    manual = [c for c in cells if c.cell_type == "markdown" and _meta(c).get("grade") and _meta(c).get("solution")]
    assert manual, "one manually graded written answer (markdown cell with grade and solution)"
    solutions = [c for c in cells if c.cell_type == "code" and _meta(c).get("solution")]
    assert solutions and all("### BEGIN SOLUTION" in c.source for c in solutions)
    for cell in autograded:
        assert float(_meta(cell)["points"]).is_integer() and _meta(cell)["points"] > 0
    assert all(not c.get("outputs") for c in cells if c.cell_type == "code"), "stored without outputs"
    badge = f"blob/main/exercises/student/{assignment}/{assignment}.ipynb"
    assert badge in cells[0].source, "the header's Colab badge opens the committed student version"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_expected_json_lists_every_autograded_cell_and_each_submission_loses_points(assignment):
    folder = SUBMISSIONS / assignment
    expected = json.loads((folder / "expected.json").read_text())
    points = grading.autograded_cells(COURSE / "source" / assignment / f"{assignment}.ipynb")
    notebooks = sorted(p.name for p in folder.glob("*.ipynb"))
    assert len(notebooks) >= 2, "at least two deliberately wrong submissions"
    assert sorted(expected) == notebooks
    for name, cells in expected.items():
        assert set(cells) == set(points), name
        assert all(0 <= cells[g] <= points[g] for g in cells), name
        assert sum(cells.values()) < sum(points.values()), f"{name} is not wrong: it expects full marks"
        assert sum(cells.values()) > 0, f"{name} gets nothing right: it tests no more than the student version"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_wrong_submissions_keep_nbgrader_metadata(assignment):
    student = grading.student_path(assignment, COURSE)
    assert student.is_file(), f"{student} is missing: run `medlearn grade-check --write-student {assignment}`"
    released = {_meta(c)["grade_id"]: _meta(c) for c in _cells(student) if _meta(c)}
    for path in sorted((SUBMISSIONS / assignment).glob("*.ipynb")):
        submitted = {_meta(c)["grade_id"]: _meta(c) for c in _cells(path) if _meta(c)}
        if path.name.startswith("hostile_deleted"):  # the attack: a test cell removed, the rest intact
            assert set(submitted) < set(released)
            submitted = {**released, **submitted}
        assert submitted == released, f"{path.name}: nbgrader metadata differs from the student version"


def test_assignment_1_has_every_hostile_submission():
    names = {p.stem for p in (SUBMISSIONS / "a1_vision_basics").glob("hostile_*.ipynb")}
    assert names == {f"hostile_{n}" for n in ("equals_everything", "monkeypatch_numpy", "infinite_loop",
                                               "edited_locked_test", "deleted_test_cell", "kernel_killed",
                                               "reads_source_and_gradebook")}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_page_lists_the_assignment_with_its_badge_and_points(assignment):
    page = (ROOT / "book" / "exercises.md").read_text()
    cells = _cells(COURSE / "source" / assignment / f"{assignment}.ipynb")
    auto = sum(_meta(c)["points"] for c in cells if _meta(c).get("grade") and not _meta(c).get("solution"))
    manual = sum(_meta(c)["points"] for c in cells if _meta(c).get("grade") and _meta(c).get("solution"))
    row = next((line for line in page.splitlines() if f"exercises/student/{assignment}/{assignment}.ipynb" in line), None)
    assert row, f"book/exercises.md has no Colab badge for {assignment}"
    assert row.startswith("| ") and row.count("colab.research.google.com/github/medlearn-course/medlearn/blob/main/") == 1
    assert f"{auto:g} autograded + {manual:g} by hand" in row, f"points of {assignment} in book/exercises.md"


def test_leaked_solution_line_is_detected(tmp_path):
    source = COURSE / "source" / "a1_vision_basics" / "a1_vision_basics.ipynb"
    student = grading.student_path("a1_vision_basics", COURSE)
    assert grading.find_leaks(source, student) == []
    for leaked in ("return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1",
                   "assert got == _measured_receptive_field(layers), layers",
                   "assert receptive_field([(3, 1), (3, 1)]) == 5"):  # a visible test: not a leak
        nb = nbformat.read(str(student), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("    " + leaked))
        path = tmp_path / "leaky.ipynb"
        nbformat.write(nb, str(path))
        leaks = grading.find_leaks(source, path)
        if leaked.startswith("assert receptive_field(["):
            assert leaks == []
        else:
            assert len(leaks) == 1 and leaked[:40] in leaks[0]
    # The written answer's model solution must not reach students either.
    nb = nbformat.read(str(student), as_version=4)
    answer = next(c for c in _cells(source) if _meta(c).get("grade_id") == "q6_written_answer")
    nb.cells[-1].source += "\n" + answer.source.splitlines()[1]
    nbformat.write(nb, str(path))
    assert grading.find_leaks(source, path)


def test_committed_student_versions_are_up_to_date():
    stale = grading.stale_student_versions(ASSIGNMENTS, COURSE)
    assert not stale, f"run `medlearn grade-check --write-student {' '.join(stale)}` and commit the result"


# ----------------------------------------------------------------------------- the checker on a tiny course

def _tiny_course(root: Path) -> Path:
    """A one-question course (no heavy imports) to check that the checker itself catches mistakes."""
    course = root / "course"
    (course / "source" / "t1").mkdir(parents=True)
    shutil.copy(COURSE / "nbgrader_config.py", course)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    base = dict(schema_version=3, task=False)
    nb.cells = [
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"nbgrader": dict(base, grade=False, grade_id="answer", locked=False, solution=True)}),
        nbformat.v4.new_code_cell("assert double(1) == 2\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n### END HIDDEN TESTS",
                                  metadata={"nbgrader": dict(base, grade=True, grade_id="tests", locked=True, points=1, solution=False)}),
        nbformat.v4.new_code_cell("assert double(0) == 0",
                                  metadata={"nbgrader": dict(base, grade=True, grade_id="zero", locked=True, points=1, solution=False)}),
    ]
    nbformat.write(nb, str(course / "source" / "t1" / "t1.ipynb"))
    return course


def test_checker_reports_a_wrong_expectation_and_a_leak(tmp_path):
    course = _tiny_course(tmp_path)
    grading.write_student_versions(["t1"], course)
    submissions = tmp_path / "submissions" / "t1"
    submissions.mkdir(parents=True)
    # A submission that passes the visible test only: it loses the 'tests' point, keeps 'zero'.
    grading.make_submission("t1", {"answer": "def double(x):\n    return abs(2 * x)"}, submissions / "abs.ipynb", course)
    (submissions / "expected.json").write_text(json.dumps({"abs.ipynb": {"tests": 1, "zero": 1}}))
    report = grading.check_assignment("t1", course, tmp_path / "submissions", workdir=tmp_path)
    labels = _by_label(report)
    assert labels["solution"].ok and labels["solution"].total == 2
    assert labels["student"].ok and labels["student"].total == 0
    assert labels["abs"].scores == {"tests": (0.0, 1.0), "zero": (1.0, 1.0)}
    assert not labels["abs"].ok and "tests scored 0, expected 1" in labels["abs"].problems[0]
    assert not report.ok and report.leaks == []
    # A source whose solution fails its own hidden test is caught too.
    source = course / "source" / "t1" / "t1.ipynb"
    source.write_text(source.read_text().replace("return 2 * x", "return 2 * abs(x)"))
    report = grading.check_assignment("t1", course, tmp_path / "no-submissions", workdir=tmp_path)
    solution = _by_label(report)["solution"]
    assert solution.scores["tests"] == (0.0, 1.0) and not solution.ok and not report.ok
    assert any("no wrong submissions" in p for p in report.problems)


# ----------------------------------------------------------------------------- the round trip of each assignment

def test_solution_gets_full_marks(round_trip):
    solution = _by_label(round_trip)["solution"]
    assert solution.scores == {g: (m, m) for g, m in round_trip.max_scores.items()}, round_trip.table()


def test_student_version_gets_zero_and_the_run_completes(round_trip):
    student = _by_label(round_trip)["student"]
    # Every autograded cell was executed and graded (a NotImplementedError did not stop the run).
    assert set(student.scores) == set(round_trip.grade_ids), round_trip.table()
    assert all(score == 0 for score, _ in student.scores.values()), round_trip.table()


def test_wrong_submissions_get_exactly_the_expected_points(round_trip):
    wrong = [s for s in round_trip.submissions if s.label not in ("solution", "student")]
    assert len(wrong) >= 2
    for sub in wrong:
        assert set(sub.scores) == set(round_trip.grade_ids), sub.label
        assert sub.ok, f"{sub.label}: {sub.problems}\n{round_trip.table()}"
        assert {g: s for g, (s, _) in sub.scores.items()} == sub.expected


def test_release_has_no_solution_or_hidden_test(round_trip):
    assert round_trip.leaks == []


def test_feedback_html_is_generated(round_trip):
    assert len(round_trip.feedback) >= 2 and all(p.suffix == ".html" for p in round_trip.feedback)
    assert round_trip.ok, round_trip.table()


# ----------------------------------------------------------------------------- the sandbox on a tiny course

_READ_SECRETS = """import os
from pathlib import Path
found = [os.environ["GRADER_TOKEN"]] if "GRADER_TOKEN" in os.environ else []  # the grader's shell
here = Path.cwd()
for folder in [here, *here.parents]:
    for path in (*folder.glob("*.ipynb"), folder / "gradebook.db", folder / "source" / "t1" / "t1.ipynb"):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if b"BEGIN HIDDEN TESTS" in data or (path.name == "gradebook.db" and data):
            found.append(str(path))
print("readable secrets:", found)

def double(x):
    return 2 * x if found else x + 1   # right only with the instructor's files in hand
"""


def _hostile_tiny_course(tmp_path: Path, extra_config: str) -> tuple[Path, Path]:
    course = _tiny_course(tmp_path)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + extra_config)
    grading.write_student_versions(["t1"], course)
    folder = tmp_path / "submissions" / "t1"
    folder.mkdir(parents=True)
    answers = {
        "reads_secrets": (_READ_SECRETS, {"tests": 0, "zero": 0}),
        "kills_kernel": ("def double(x):\n    return 2 * x\nimport os\nos.kill(os.getpid(), 9)", {"tests": 0, "zero": 0}),
        "ignores_interrupt": ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                              "def double(x):\n    return 2 * x\nwhile True:\n    pass", {"tests": 0, "zero": 0}),
        # right only when the memory cap stopped the allocation (without a cap it gets 'zero' only)
        "allocates_8_gib": ("try:\n    hog = bytearray(8 * 2**30)\n    capped = False\nexcept MemoryError:\n"
                            "    capped = True\ndef double(x):\n    return 2 * x if capped else 0",
                            {"tests": 1, "zero": 1}),
    }
    for name, (source, _) in answers.items():
        grading.make_submission("t1", {"answer": source}, folder / f"{name}.ipynb", course)
    (folder / "expected.json").write_text(json.dumps({f"{n}.ipynb": e for n, (_, e) in answers.items()}))
    return course, tmp_path / "submissions"


def test_sandbox_hides_the_course_and_caps_time_and_memory(tmp_path, monkeypatch):
    from medlearn.course.sandbox import bwrap_mode

    monkeypatch.setenv("GRADER_TOKEN", "not-for-students")
    if not bwrap_mode():
        pytest.skip("bubblewrap cannot run here: `make system-deps` installs it")
    course, submissions = _hostile_tiny_course(
        tmp_path, "\nc.Execute.timeout = 60\nc.SandboxedExecute.submission_timeout = 20\n"
                  "c.SandboxedExecute.memory_limit_mb = 2048\n")
    report = grading.check_assignment("t1", course, submissions, workdir=tmp_path)
    print(report.table())
    assert report.ok, report.table()
    labels = _by_label(report)
    assert labels["reads_secrets"].total == 0 and labels["allocates_8_gib"].total == 2
    assert labels["ignores_interrupt"].seconds < 60, "the time cap (20 s), not the cell timeout, ends it"
    assert "no hidden-test line" in report.table()


def test_without_the_sandbox_the_same_attack_reads_the_hidden_tests(tmp_path, monkeypatch):
    """The control: the reads_secrets submission scores only because the sandbox is off, and
    feedback without HideHiddenTests shows the hidden test, which grade-check reports."""
    monkeypatch.delenv("GRADER_TOKEN", raising=False)  # it must find the files, not the variable
    course, submissions = _hostile_tiny_course(
        tmp_path, "\nc.SandboxedExecute.sandbox = False\nc.HideHiddenTests.enabled = False\n")
    for name in ("kills_kernel", "ignores_interrupt", "allocates_8_gib"):
        (submissions / "t1" / f"{name}.ipynb").unlink()
    expected = submissions / "t1" / "expected.json"
    expected.write_text(json.dumps({"reads_secrets.ipynb": {"tests": 0, "zero": 0}}))
    report = grading.check_assignment("t1", course, submissions, workdir=tmp_path)
    print(report.table())
    assert _by_label(report)["reads_secrets"].scores == {"tests": (1.0, 1.0), "zero": (1.0, 1.0)}
    assert any("hidden-test line" in p and "assert double(-3) == -6" in p for p in report.problems)


def test_feedback_shows_name_points_and_message_but_no_hidden_test():
    from medlearn.course.sandbox import HideHiddenTests

    nb = nbformat.v4.new_notebook()
    base = dict(schema_version=3, task=False, locked=True)
    answer = nbformat.v4.new_code_cell("def double(x):\n    return x", metadata={"nbgrader": dict(
        base, grade=False, solution=True, grade_id="answer", locked=False)})
    # the student's own code printed a hidden test it had seen (e.g. through an IPython hook)
    answer.outputs = [nbformat.v4.new_output("stream", name="stdout", text="assert double(-3) == -6, 'negative'\n")]
    test = nbformat.v4.new_code_cell(
        "assert double(1) == 2\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6, 'negative'\n### END HIDDEN TESTS",
        metadata={"nbgrader": dict(base, grade=True, solution=False, grade_id="tests", points=2)})
    test.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="negative",
                                           traceback=["----> 3 assert double(-3) == -6, 'negative'"])]
    nb.cells = [answer, test]
    out, _ = HideHiddenTests().preprocess(nb, {})
    assert "double(-3)" not in out.cells[1].source and "assert double(1) == 2" in out.cells[1].source
    assert [o["text"] for o in out.cells[1].outputs] == [
        "FAILED tests (0 of 2 points): AssertionError: negative\n"]
    assert "double(-3)" not in out.cells[0].outputs[0]["text"]


def test_cell_timeout_replaces_the_course_limit_for_a_check_only(tmp_path):
    course = grading._course_config(COURSE, tmp_path)
    assert course.Execute.timeout == 120  # exercises/nbgrader_config.py
    assert grading._course_config(COURSE, tmp_path, cell_timeout=30).Execute.timeout == 30
