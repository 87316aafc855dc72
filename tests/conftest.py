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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real sample files; tests that need it are skipped only if it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set MEDLEARN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> Path:
    """A fresh MEDLEARN_DATA cache for the session, seeded from the real samples when present."""
    cache = tmp_path_factory.mktemp("medlearn-cache")
    os.environ["MEDLEARN_DATA"] = str(cache)
    if SHARED_DATA.is_dir():
        from medlearn.data import seed_cache

        seed_cache(SHARED_DATA)
    return cache
