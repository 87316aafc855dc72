"""Print the full tier's notebooks (book + assignment sources), longest expected run first.

Used by .ci/full. The expected time of a notebook: its wall time in the previous full report
(argv[1]) when there is one, else the time its header cell states (on one GPU when it says so,
else the first "full tier ≈ N min|s"), else 5 min.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from medlearn.course.notebooks import collect_notebooks  # noqa: E402

_ON_GPU = re.compile(r"(\d+(?:\.\d+)?)\s*(min|s)\s+on one GPU", re.IGNORECASE)
_STATED = re.compile(r"full tier[^0-9\n]{0,20}?(\d+(?:\.\d+)?)\s*(min|s)\b", re.IGNORECASE)
# A notebook with one run time for every tier (the assignments): "**Run time.** ≈ 15 s".
_ANY = re.compile(r"Run time[^0-9\n]{0,30}?(\d+(?:\.\d+)?)\s*(min|s)\b", re.IGNORECASE)


def stated_seconds(nb: Path) -> float | None:
    """Return the full-tier run time the notebook's first markdown cell states, in seconds."""
    cells = json.loads(nb.read_text()).get("cells", [])
    for cell in cells[:3]:
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        m = _ON_GPU.search(src) or _STATED.search(src) or _ANY.search(src)
        if m:
            return float(m[1]) * (60 if m[2].lower() == "min" else 1)
    return None


def main(argv: list[str]) -> int:
    notebooks = collect_notebooks([ROOT / "book"]) + sorted(ROOT.glob("exercises/source/*/*.ipynb"))
    previous: dict[str, float] = {}
    report = Path(argv[1]) if len(argv) > 1 else None
    if report and report.is_file():
        for r in json.loads(report.read_text()).get("results", []):
            if r.get("status") in ("ok", "over-budget"):
                previous[r["path"]] = float(r["wall_s"])

    def expected(nb: Path) -> float:
        rel = nb.relative_to(ROOT).as_posix()
        return previous.get(rel) or stated_seconds(nb) or 300.0

    for nb in sorted(notebooks, key=expected, reverse=True):
        print(nb.relative_to(ROOT).as_posix())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
