"""nbgrader configuration of the medlearn course (run nbgrader from this folder: `cd exercises`).

Layout (nbgrader's defaults, spelled out): source/<assignment>/ holds the instructor's notebooks with
solutions and hidden tests; release/, submitted/<student>/, autograded/<student>/ and
feedback/<student>/ are made by nbgrader and are not committed (see ../.gitignore).
`medlearn grade-check` reads this file and then works in a temporary copy of the course.
"""

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "medlearn"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
# Assignments are graded one notebook per assignment; data files come from the medlearn cache.
c.CourseDirectory.notebook_id = "*"

# Students' notebooks are executed with the standard Python 3 kernel of the course environment.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# A cell may run for 2 minutes (each assignment runs in well under a minute on 2 CPU cores); the
# kernel is interrupted, not left hanging, and the run goes on to grade the other cells.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0
# Students must not be able to turn a failing test into a pass by editing a locked cell.
c.LockCells.lock_grade_cells = True
c.LockCells.lock_readonly_cells = True

# Grading safely (exercises/README.md, "Grading safely"): the kernel runs in a bubblewrap sandbox
# that cannot see this folder, the gradebook or the source notebooks, with a memory cap and a time
# cap per submission; a kernel that dies scores 0 on the cells it did not finish.
c.Autograde.autograde_preprocessors = [
    "medlearn.course.sandbox.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.sandbox = True              # False only on a machine where only you submit
c.SandboxedExecute.memory_limit_mb = 16384     # address space (not resident memory) of the kernel
c.SandboxedExecute.submission_timeout = 600    # seconds for a whole notebook
# Feedback shows each test cell's name, points and assertion message, never the hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "medlearn.course.sandbox.HideHiddenTests",
]
c.HideHiddenTests.enabled = True
