"""`medlearn check-site` opens every page in headless Chromium and catches what a reader would meet.

A tiny generated site: good pages pass (an image, an anchor link, a notebook page with its Colab
launch button, an outside image that is not fetched), and each faulty page is caught for exactly
its fault: a JavaScript error, a console error, a missing or corrupt image, a notebook page
without its launch button, a broken link or anchor, a page that does not load.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from medlearn.course.book import required
from medlearn.course.site_check import SiteCheckError, check_site, find_browser, site_pages

try:
    find_browser()
except SiteCheckError as err:  # `make test` installs it (site-deps); on CI a missing browser fails
    if required("browser"):
        raise
    pytest.skip(str(err), allow_module_level=True)

PNG = base64.b64decode(  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
LAUNCH = ('<div class="dropdown dropdown-launch-buttons"><ul class="dropdown-menu"><li><a '
          'href="https://colab.research.google.com/github/o/r/blob/main/{nb}.ipynb">Colab</a></li>'
          '</ul></div>')


def page(body: str, title: str = "Page") -> str:
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"


def make_site(root: Path) -> Path:
    (root / "_images").mkdir(parents=True)
    (root / "_sources" / "book").mkdir(parents=True)
    (root / "_images" / "fig.png").write_bytes(PNG)
    (root / "_images" / "corrupt.png").write_bytes(b"not a png at all")
    good = {
        "index.html": '<h1>Home</h1><img src="_images/fig.png" alt="figure"><a href="book/other.html#sec">x</a>'
                      '<a href="book/">dir</a><a href="https://example.org/">outside</a>'
                      '<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="badge">',
        "book/index.html": "<h1>Book</h1>",
        "book/other.html": '<h1 id="sec">Section</h1><a href="../index.html">home</a>',
        "book/nb.html": "<h1>Notebook</h1>" + LAUNCH.format(nb="book/nb"),
    }
    bad = {
        "book/js_error.html": "<script>notDefinedAnywhere();</script>",
        "book/console_error.html": "<script>console.error('boom from the page');</script>",
        "book/missing_image.html": '<img src="../_images/missing.png" alt="gone">',
        "book/corrupt_image.html": '<img src="../_images/corrupt.png" alt="corrupt">',
        "book/no_launch.html": "<h1>Notebook without its button</h1>",
        "book/wrong_launch.html": LAUNCH.format(nb="book/some_other"),
        "book/broken_link.html": '<a href="nowhere.html">gone</a>',
        "book/broken_anchor.html": '<a href="other.html#no-such-section">gone</a>',
    }
    for rel, body in {**good, **bad}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(page(body))
    for nb in ("nb", "no_launch", "wrong_launch"):
        (root / "_sources" / "book" / f"{nb}.ipynb").write_text("{}")
    (root / "book" / "not_loading.html").symlink_to(root / "book" / "deleted.html")  # a 404
    return root


def test_check_site_passes_good_pages_and_catches_each_fault(tmp_path):
    site = make_site(tmp_path / "html")
    shots = tmp_path / "shots"
    report = check_site(site, screenshots=shots, timeout=20, quiet=True)
    by_page = {p.page: p for p in report.pages}
    assert sorted(by_page) == site_pages(site)
    assert "_images" not in " ".join(by_page) and len(by_page) == 13

    for good in ("index.html", "book/index.html", "book/other.html", "book/nb.html"):
        assert by_page[good].ok, (good, by_page[good].problems)
    assert any("colab-badge.svg" in n for n in by_page["index.html"].notes), "outside image: a note"

    expected = {
        "book/js_error.html": "JavaScript error: ReferenceError: notDefinedAnywhere is not defined",
        "book/console_error.html": "console error: boom from the page",
        "book/missing_image.html": "image does not load: /_images/missing.png",
        "book/corrupt_image.html": "image does not load: /_images/corrupt.png",
        "book/no_launch.html": "no Colab launch button for book/no_launch.ipynb",
        "book/wrong_launch.html": "no Colab launch button for book/wrong_launch.ipynb",
        "book/broken_link.html": "broken link: /book/nowhere.html",
        "book/broken_anchor.html": "broken anchor: /book/other.html#no-such-section",
        "book/not_loading.html": "page did not load: HTTP 404",
    }
    for name, problem in expected.items():
        problems = by_page[name].problems
        assert any(p.startswith(problem) for p in problems), (name, problems)
    assert not report.ok
    assert len(report.problems()) == sum(len(by_page[n].problems) for n in expected)

    for p in report.pages:
        if p.page != "book/not_loading.html":
            assert Path(p.screenshot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p.page


def test_check_site_needs_a_built_site(tmp_path):
    with pytest.raises(SiteCheckError, match="make book"):
        check_site(tmp_path / "nothing", screenshots=None, quiet=True)


def test_cli_check_site_exit_code(tmp_path):
    from medlearn.course.cli import main

    site = tmp_path / "ok"
    site.mkdir()
    (site / "index.html").write_text(page("<h1>Fine</h1>"))
    assert main(["check-site", str(site), "--screenshots", str(tmp_path / "s")]) == 0
    (site / "bad.html").write_text(page("<script>boom()</script>"))
    assert main(["check-site", str(site), "--screenshots", str(tmp_path / "s")]) == 1
