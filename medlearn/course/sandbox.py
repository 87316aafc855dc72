"""Autograding that survives hostile students: a sandboxed kernel, time and memory caps, safe feedback.

nbgrader runs a student's notebook with the grader's rights, so by default the student's code can
read the instructor's source notebook (solutions and hidden tests) and the gradebook, use all the
memory and loop forever. The course configuration (exercises/nbgrader_config.py) plugs in three
classes from here; `medlearn grade-check` and `nbgrader autograde` both use them:

- `SandboxedExecute` (nbgrader's `Execute` preprocessor) starts the kernel inside a bubblewrap
  sandbox (Debian's ``bubblewrap``): a private mount namespace where only the system folders, the
  Python environment, the medlearn package and the data cache are visible read-only, and the
  submission's own folder read-write; the course folder, gradebook and source notebooks do not
  exist there. The kernel runs as ``nobody`` in a user namespace when the system allows one, in its
  own PID namespace, with an address-space cap (``prlimit --as``); an overall time cap per
  submission kills the sandbox, and a kernel that dies (killed, out of memory) scores 0 on the cells
  from there on while the rest of the notebook is still graded.
- `HideHiddenTests` (a feedback preprocessor) replaces every autograded test cell by its visible
  part and one line per result: the cell's name, points and the assertion message, never the hidden
  tests or their traceback; any output line equal to a hidden-test line is redacted.

exercises/README.md ("Grading safely") explains how to run it and what it does not protect against.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from traitlets import Bool, Integer, List, Unicode

from nbgrader.preprocessors import Execute

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_MIN_SECRET_CHARS = 6
_ENV_KEPT = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED", "NBGRADER_EXECUTION", "CUDA_VISIBLE_DEVICES",
             "MPLBACKEND", "VIRTUAL_ENV", "PYDEVD_DISABLE_FILE_VALIDATION"}
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@functools.lru_cache(maxsize=None)
def bwrap_mode() -> str:
    """Return how bubblewrap can run here: "userns" (as nobody), "root" (mount namespace only) or ""."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return ""
    base = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]
    for mode, extra in (("userns", ["--unshare-user", "--uid", "65534", "--gid", "65534"]), ("root", [])):
        try:
            done = subprocess.run(base + extra + ["true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return mode
    return ""


def _data_dirs() -> list[Path]:
    """Return the data cache and the folders its seeded files link into (read-only in the sandbox)."""
    from medlearn.data.cache import cache_dir

    root = cache_dir()
    dirs = {root}
    for path in root.rglob("*"):
        if path.is_symlink():
            dirs.add(Path(os.path.realpath(path)).parent)
    return sorted(dirs)


def sandbox_command(workdir: str | os.PathLike, readable: list[str | os.PathLike] = (),
                    memory_bytes: int = 0) -> list[str]:
    """Return the command prefix that runs a program in the grading sandbox.

    Only the system folders, this Python (base and virtual environment), the medlearn package, the
    data cache and `readable` are visible (read-only); `workdir` is the only writable folder and the
    working directory, and the notebooks in it read as empty files. Raises RuntimeError when
    bubblewrap cannot run here.
    """
    mode = bwrap_mode()
    if not mode:
        raise RuntimeError("the grading sandbox needs bubblewrap with namespaces: `apt-get install "
                           "bubblewrap` (make system-deps), or see exercises/README.md 'Grading safely'")
    import medlearn

    workdir = Path(workdir).resolve()
    cmd = []
    if memory_bytes:
        cmd += [shutil.which("prlimit") or "prlimit", f"--as={int(memory_bytes)}", "--"]
    cmd += [shutil.which("bwrap"), "--die-with-parent", "--new-session", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if mode == "userns":
        cmd += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    visible = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent,
               Path(medlearn.__file__).resolve().parent, *_data_dirs(), *map(Path, readable)}
    for path in sorted(p.resolve() for p in visible):
        if path.exists() and not any(path.is_relative_to(d) for d in map(Path, _SYSTEM_DIRS)):
            cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", str(workdir), str(workdir)]
    for notebook in sorted(workdir.glob("*.ipynb")):
        # nbgrader executes the restored notebook (hidden tests included) from this folder: blank it.
        cmd += ["--ro-bind", "/dev/null", str(notebook)]
    cmd += ["--chdir", str(workdir), "--unsetenv", "JPY_PARENT_PID",  # ppid is 1 in the PID namespace
            "--setenv", "HOME", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib"]
    return cmd


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that launches the kernel inside `sandbox_command` (see the module docstring)."""

    memory_limit = Integer(0, help="address-space cap of the kernel in bytes (0: none)").tag(config=True)
    readable = List(Unicode(), help="extra folders the kernel may read").tag(config=True)

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        workdir = kw.get("cwd") or os.getcwd()
        readable = list(self.readable) + [self.connection_file]
        prefix = sandbox_command(workdir, readable, self.memory_limit)
        # Interrupt through the kernel's control channel: a signal to bwrap would not reach it.
        self.kernel_spec.interrupt_mode = "message"
        # Only what a notebook needs: no tokens or passwords of the grader's shell reach student code.
        env = dict(kw.get("env") or os.environ)
        kw["env"] = {k: v for k, v in env.items() if k in _ENV_KEPT or k.startswith("MEDLEARN_")}
        # The grader's data cache, named explicitly: with HOME=/tmp the kernel would otherwise look
        # in an empty cache and `load("auto")` would quietly fall back to a stand-in.
        from medlearn.data.cache import cache_dir

        kw["env"]["MEDLEARN_DATA"] = str(cache_dir())
        return prefix + cmd, kw


class SandboxedExecute(Execute):
    """nbgrader's Execute with the kernel in the sandbox, a memory cap and an overall time cap.

    A kernel that dies (killed by the student's code, by the memory cap or by the time cap) does not
    abort grading: the cell it died in and every later cell get an error output (0 points) and the
    notebook is still scored and saved.
    """

    sandbox = Bool(True, help="run the kernel in the bubblewrap sandbox (exercises/README.md)").tag(config=True)
    memory_limit_mb = Integer(16384, help="address-space cap of the kernel in MiB (0: none)").tag(config=True)
    submission_timeout = Integer(600, help="seconds one submission may run in all").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sandbox:
            self.kernel_manager_class = SandboxedKernelManager

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            km.memory_limit = self.memory_limit_mb * 2**20
        return km

    def preprocess(self, nb, resources=None, km=None):
        self._dead = None
        self._deadline = time.monotonic() + self.submission_timeout
        self._timer = threading.Timer(self.submission_timeout, self._on_time_cap)
        self._timer.daemon = True
        self._timer.start()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._timer.cancel()

    def _on_time_cap(self) -> None:
        self._dead = f"the submission ran past its time cap of {self.submission_timeout} s"
        self._kill_kernel()

    def _kill_kernel(self) -> None:
        """Kill the kernel and with it the whole sandbox (bwrap's PID namespace dies with it)."""
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()

    def _fail(self, cell: NotebookNode, ename: str, evalue: str) -> NotebookNode:
        cell.outputs = list(cell.get("outputs", [])) + [
            NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])]
        return cell

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._dead:
            return self._fail(cell, "KernelDied", self._dead + "; this cell was not run"), resources
        self.timeout_func = lambda _cell: max(1, min(self.timeout or 1e9, self._deadline - time.monotonic()))
        meta = cell.get("metadata", {}).get("nbgrader", {})
        is_test = bool(meta.get("grade")) and not meta.get("solution")
        self._check_assign_resources(resources)
        try:
            # Test cells stay out of the kernel's history (`In`, `_ih`), so later student code
            # cannot print the hidden tests it has just been graded with.
            return self.execute_cell(cell, index, store_history=not is_test), self.resources
        except Exception as error:  # the kernel died, or a cell ignored the interrupt at its timeout
            from nbclient.exceptions import CellTimeoutError, DeadKernelError

            if isinstance(error, CellTimeoutError) and not self._dead:
                self._kill_kernel()
                self._dead = f"a cell ran past {self.timeout} s and ignored the interrupt: kernel stopped"
            elif not isinstance(error, DeadKernelError) and not self._dead:
                raise
            self._dead = self._dead or "the kernel died (killed, or out of memory)"
            return self._fail(cell, "KernelDied", self._dead), resources


def hidden_lines(nb) -> set[str]:
    """Return the stripped lines (at least six characters) inside hidden-test regions of `nb`."""
    secret = set()
    for cell in nb.cells:
        inside = False
        for line in cell.get("source", "").splitlines():
            stripped = line.strip()
            if stripped == HIDDEN_BEGIN:
                inside = True
            elif stripped == HIDDEN_END:
                inside = False
            elif inside and len(stripped) >= _MIN_SECRET_CHARS:
                secret.add(stripped)
    return secret


def _redact(text: str, secret: set[str]) -> str:
    return "\n".join("[hidden test line removed]" if line.strip() in secret else line
                     for line in text.split("\n"))


class HideHiddenTests(Preprocessor):
    """Feedback without the hidden tests: each autograded test cell shows its visible asserts and a
    one-line result (cell name, points, assertion message); no hidden-test code or traceback."""

    enabled = Bool(True, help="hide hidden tests in feedback (the course default)").tag(config=True)

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        secret = hidden_lines(nb)
        visible = set()
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
                cell.source = self._visible_part(cell.source)
                cell.outputs = [self._result(cell, meta)]
            else:
                visible.update(line.strip() for line in cell.get("source", "").splitlines())
        secret -= visible
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                for key in ("text", "evalue"):
                    if isinstance(output.get(key), str):
                        output[key] = _redact(output[key], secret)
                if "traceback" in output:
                    output["traceback"] = [_redact(t, secret) for t in output["traceback"]]
                for mime, value in dict(output.get("data", {})).items():
                    if isinstance(value, str):
                        output["data"][mime] = _redact(value, secret)
        return nb, resources

    @staticmethod
    def _visible_part(source: str) -> str:
        lines, inside = [], False
        for line in source.splitlines():
            if line.strip() == HIDDEN_BEGIN:
                inside = True
                lines.append("# hidden tests: not shown in feedback")
            elif line.strip() == HIDDEN_END:
                inside = False
            elif not inside:
                lines.append(line)
        return "\n".join(lines)

    @staticmethod
    def _result(cell, meta) -> NotebookNode:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        name, points = meta.get("grade_id", "?"), meta.get("points", 0)
        if errors:
            message = (errors[-1].get("evalue") or "").strip()[:300]
            text = f"FAILED {name} (0 of {points:g} points): {errors[-1].get('ename')}" \
                   + (f": {message}" if message else "") + "\n"
        else:
            text = f"passed {name} ({points:g} of {points:g} points)\n"
        return NotebookNode(output_type="stream", name="stdout", text=text)
