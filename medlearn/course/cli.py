"""The `medlearn` command: the instructor's tasks (run notebooks, build the book, check grading, data)."""

from __future__ import annotations

import argparse
import sys


def fetch_samples(dest) -> list:
    """Return the paths of the real sample files in `dest`, downloading (md5-checked) what is missing.

    Every registry file with a sample copy (`seed_from`) is fetched from its official URL, else
    from its documented mirrors, into `dest/<seed_from>`: a folder laid out like ../shared/data,
    for `seed-cache` and the tests (MEDLEARN_SHARED_DATA). Files already there with an accepted
    md5 are kept. Used by CI (`make samples`) before `make test`.
    """
    from pathlib import Path

    from medlearn.data import REGISTRY, DownloadError, download
    from medlearn.data.cache import md5sum

    dest = Path(dest).expanduser().resolve()
    paths, fetched = [], 0
    for info in REGISTRY.values():
        for files in info.files.values():
            for f in files:
                if not f.seed_from:
                    continue
                target, accepted = dest / f.seed_from, f.accepted()
                paths.append(target)
                if target.is_file() and md5sum(target) in accepted:
                    continue
                urls = [f.url] + [m.url for m in f.mirrors if m.url]
                for i, url in enumerate(urls):
                    try:
                        download(url, target, f.md5, accepted=accepted, size=f.size)
                        fetched += 1
                        break
                    except DownloadError:
                        if i == len(urls) - 1:
                            raise
    print(f"{len(paths)} sample file(s) in {dest} ({fetched} downloaded, md5-checked); "
          f"use them with SHARED_DATA={dest} (make) or MEDLEARN_SHARED_DATA={dest} (pytest)")
    return paths


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
    b.add_argument("--executed", default=None,
                   help="folder of executed copies to reuse (default _build/executed; `make full`: "
                        "_build/full/executed)")

    g = sub.add_parser("grade-check", help="nbgrader round trip: solution full marks, student 0, wrong partial, no leak")
    g.add_argument("assignments", nargs="*", help="assignment names (default: all in exercises/source)")
    g.add_argument("--course", default="exercises", help="the nbgrader course folder")
    g.add_argument("--write-student", action="store_true",
                   help="only write each assignment's student version to <course>/student/ (commit it)")

    s = sub.add_parser("seed-cache", help="copy real sample files into the data cache (md5-verified)")
    s.add_argument("source", help="folder with the real samples, e.g. ../shared/data")

    sub.add_parser("datasets", help="list the data sets the course knows, and which are cached")

    f = sub.add_parser("fetch-samples", help="download the real sample files the tests and the book read "
                       "(every registered file with a sample copy), md5-checked, into DIR "
                       "(laid out like ../shared/data)")
    f.add_argument("dest", help="folder to fill, e.g. ~/medlearn-samples (then SHARED_DATA=DIR)")

    c = sub.add_parser("check-site", help="open every page of the built book in headless Chromium; "
                       "fail on load errors, console errors, broken images or links, a missing launch button")
    c.add_argument("html", nargs="?", default="_build/html", help="the built site (default _build/html)")
    c.add_argument("--screenshots", default="_build/site-check", help="folder for one PNG per page")
    c.add_argument("--browser", default=None, help="the Chromium executable (default: found on PATH)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run-notebooks":
        from medlearn.course.notebooks import run_notebooks

        report = run_notebooks(args.paths, tier=args.tier, jobs=args.jobs, out_dir=args.out,
                               report_path=args.report, use_cache=not args.no_cache)
        return 0 if report.ok else 1
    if args.command == "build-book":
        from medlearn.course.book import build_book

        return 0 if build_book(args.root, tier=args.tier, jobs=args.jobs, use_cache=not args.no_cache,
                               executed_dir=args.executed) else 1
    if args.command == "grade-check":
        from medlearn.course.grading import grade_check, write_student_versions

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
    if args.command == "fetch-samples":
        fetch_samples(args.dest)
        return 0
    if args.command == "check-site":
        from medlearn.course.site_check import check_site

        return 0 if check_site(args.html, screenshots=args.screenshots, browser=args.browser).ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
