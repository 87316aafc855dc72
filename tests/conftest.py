"""Shared fixtures: every test session gets its own data cache, seeded from the real samples.

The real samples live in ../shared/data (or $MEDLEARN_SHARED_DATA) and are never copied into
the repository; seeding runs the same md5-verifying code path a download would.
Notebooks executed by the tests inherit MEDLEARN_DATA, so they read the same seeded cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDLEARN_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


DATA_HELP = ("real sample data not found at {path}. Provide them: `make samples` (or `medlearn "
             "fetch-samples DIR`: downloads them, md5-checked) and set MEDLEARN_SHARED_DATA=DIR "
             "(make: SHARED_DATA=DIR); in CI the workflow restores them from its cache first.")


def _required(what: str) -> bool:
    from medlearn.course.book import required

    return required(what)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real sample files; tests that need it skip only off CI (CI=true: they fail)."""
    if not SHARED_DATA.is_dir():
        if _required("data"):
            pytest.fail("CI=true (or MEDLEARN_REQUIRE_DATA=1): " + DATA_HELP.format(path=SHARED_DATA),
                        pytrace=False)
        pytest.skip(DATA_HELP.format(path=SHARED_DATA))
    return SHARED_DATA


def _pacs_skip_is_a_failure(report) -> None:
    """Where a PACS is required (CI, `make test`), turn a skip for a missing Orthanc into a failure."""
    if report.skipped and "Orthanc" in str(report.longrepr) and _required("pacs"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = ("a real PACS is required here (CI=true or MEDLEARN_REQUIRE_PACS=1, as "
                           "`make test` sets) and Orthanc is missing: " + reason)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _pacs_skip_is_a_failure(report)  # test_pacs.py skips the whole module without Orthanc
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _pacs_skip_is_a_failure(report)
    return report


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    """A fresh MEDLEARN_DATA cache for the session, seeded from the real samples when present."""
    cache = tmp_path_factory.mktemp("medlearn-cache")
    os.environ["MEDLEARN_DATA"] = str(cache)
    if SHARED_DATA.is_dir():
        from medlearn.data import seed_cache

        seed_cache(SHARED_DATA)
    return cache


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:  # nothing listens (a closed port may linger in TIME_WAIT: reusable)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            s.listen()
            return True
        except OSError:
            return False


@pytest.fixture
def port_free():
    """Return a function: True when nothing listens on a TCP port (no orphaned server holds it)."""
    return _port_free


# ----------------------------------------------------------------------------- parallel runs
# `make test` runs pytest-xdist workers with `--dist loadgroup --no-loadscope-reorder`: every test of
# a group runs on one worker, so a group's expensive module or session fixture (the smoke run of all
# notebooks, one assignment's nbgrader round trip, a module's Orthanc) runs once. Groups are handed
# out in the order below, the longest first, so the slowest chain starts at once.
LONGEST_FIRST = ["notebooks", "grade-a3_classification", "grade-a1_vision_basics",
                 "grade-a4_segmentation", "grade-a5_data_centric", "grade-a6_deployment",
                 "grade-a2_dicom_pacs", "test_grading", "test_runner_reliability", "test_pacs"]


def test_group(item) -> str:
    """The xdist group of a test: its module, one nbgrader round trip, or all the notebooks."""
    module = item.path.stem
    if module == "test_notebooks":
        return "notebooks"
    params = getattr(getattr(item, "callspec", None), "params", {})
    if module == "test_grading" and "round_trip" in params:
        return f"grade-{params['round_trip']}"
    return module


test_group.__test__ = False  # a helper, not a test


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group to each test's id
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(test_group(item)))
    items.sort(key=lambda item: rank.get(test_group(item), len(rank)))  # stable: the rest keep their order
