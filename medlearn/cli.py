"""The `medlearn` command: the instructor's tasks (run notebooks, build the book, check grading, data)."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medlearn", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run-notebooks", help="execute notebooks with papermill in a tier; report times")
    r.add_argument("paths", nargs="*", default=["book"], help="notebooks or folders (default: book)")
    r.add_argument("--tier", choices=["smoke", "full"], default="smoke")
    r.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel")
    r.add_argument("--report", default=None, help="JSON report file (default: <out>/report-<tier>.json)")
    r.add_argument("--out", default="_build/executed", help="folder for the executed copies")
    r.add_argument("--no-cache", action="store_true", help="re-execute even if an identical run succeeded")

    b = sub.add_parser("build-book", help="execute the book's notebooks in a tier, then build the HTML")
    b.add_argument("--tier", choices=["smoke", "full"], default="smoke")
    b.add_argument("--jobs", type=int, default=1)
    b.add_argument("--root", default=".", help="project root holding _config.yml and _toc.yml")
    b.add_argument("--no-cache", action="store_true")

    g = sub.add_parser("grade-check", help="nbgrader round trip: solution full marks, student 0, wrong partial, no leak")
    g.add_argument("assignments", nargs="*", help="assignment names (default: all in exercises/source)")
    g.add_argument("--course", default="exercises", help="the nbgrader course folder")
    g.add_argument("--write-student", action="store_true",
                   help="only write each assignment's student version to <course>/student/ (commit it)")

    s = sub.add_parser("seed-cache", help="copy real sample files into the data cache (md5-verified)")
    s.add_argument("source", help="folder with the real samples, e.g. ../shared/data")

    sub.add_parser("datasets", help="list the data sets the course knows, and which are cached")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run-notebooks":
        from medlearn.notebooks import run_notebooks

        report = run_notebooks(args.paths, tier=args.tier, jobs=args.jobs, out_dir=args.out,
                               report_path=args.report, use_cache=not args.no_cache)
        return 0 if report.ok else 1
    if args.command == "build-book":
        from medlearn.book import build_book

        return 0 if build_book(args.root, tier=args.tier, jobs=args.jobs, use_cache=not args.no_cache) else 1
    if args.command == "grade-check":
        from medlearn.grading import grade_check, write_student_versions

        if args.write_student:
            write_student_versions(args.assignments or None, course_dir=args.course)
            return 0
        return 0 if grade_check(args.assignments or None, course_dir=args.course) else 1
    if args.command == "seed-cache":
        from medlearn.data import seed_cache

        seed_cache(args.source)
        return 0
    if args.command == "datasets":
        from medlearn.data import print_datasets

        print_datasets()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
