"""Check the built book as a reader sees it: every page opened in headless Chromium.

`check_site` serves ``_build/html`` on loopback, drives Debian's ``chromium`` over the DevTools
protocol (websocket-client, no browser download) and fails a page that does not load, logs a
JavaScript error, shows a local image that does not load, lacks its Colab launch button (pages
built from a notebook) or links to a page or anchor of the site that does not exist. It saves one
screenshot per page. Resources from other hosts (the Colab badge image, a CDN) are not fetched: the
browser resolves no outside name, so the check is the same offline and online, and each page lists
them as notes. Used by `make check-site` (`medlearn check-site`).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: The Colab entry of the launch-button menu (sphinx-book-theme; Bootstrap moves its `title`).
LAUNCH_SELECTOR = '.dropdown-launch-buttons a[href^="https://colab.research.google.com/"]'

_PAGE_JS = """(async () => {
  const load = (src) => new Promise((res) => {
    const im = new Image();
    im.onload = () => res(im.naturalWidth > 0);
    im.onerror = () => res(false);
    im.src = src;
  });
  const images = [];
  for (const img of document.images) {
    const src = img.currentSrc || img.src;
    const ok = (img.complete && img.naturalWidth > 0) || await load(src);
    images.push({src: src, ok: ok});
  }
  const launch = [...document.querySelectorAll(LAUNCH)].map(a => a.href);
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  return {images: images, launch: launch, links: links, title: document.title,
          text: (document.body ? document.body.innerText.length : 0)};
})()"""


class SiteCheckError(RuntimeError):
    """The check could not run (no site, no browser); the message says what to do."""


@dataclass
class PageResult:
    """One page: what failed (`problems`), what was not checked (`notes`), its screenshot."""

    page: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshot: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class SiteReport:
    """All pages of one check; `.ok` is False when any page has a problem."""

    pages: list[PageResult]
    screenshots: str | None = None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pages)

    def problems(self) -> list[str]:
        """Return every problem as "page: problem"."""
        return [f"{p.page}: {x}" for p in self.pages for x in p.problems]

    def summary(self) -> str:
        """Return the counts, what was not checked, then every problem (one per line)."""
        lines = []
        bad = self.problems()
        external = sorted({n for p in self.pages for n in p.notes})
        lines.append(f"{len(self.pages)} page(s), {sum(not p.ok for p in self.pages)} with problems"
                     + (f"; screenshots in {self.screenshots}" if self.screenshots else ""))
        if external:
            lines.append(f"not checked (other hosts, not fetched): {len(external)} resource(s), e.g. "
                         + ", ".join(external[:3]))
        return "\n".join(lines + bad)


# --------------------------------------------------------------------------- browser plumbing

def find_browser(browser: str | None = None) -> str:
    """Return the Chromium executable: `browser`, $CHROMIUM, or chromium/chromium-browser on PATH."""
    for name in (browser, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SiteCheckError("no Chromium found. Debian/Ubuntu: sudo apt-get install -y chromium "
                         "(`make check-site` installs it), or pass --browser / set CHROMIUM")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on the console
        pass


class _CDP:
    """A minimal DevTools-protocol client over one websocket (flat sessions)."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline)
            if reply is None:
                raise TimeoutError(f"{method}: no answer from the browser in {timeout:.0f} s")
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> bool:
        """Return True when event `method` arrived (or had arrived) within `timeout` seconds."""
        if any(e["method"] == method for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline)
            if reply is None:
                return False
            if "method" in reply:
                self.events.append(reply)
                if reply["method"] == method:
                    return True

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next `seconds` (errors thrown after load)."""
        deadline = time.monotonic() + seconds
        while (reply := self._recv(deadline)) is not None:
            if "method" in reply:
                self.events.append(reply)

    def _recv(self, deadline: float) -> dict | None:
        import websocket

        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.ws.settimeout(left)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001  (the browser may be gone already)
            pass


def _start_browser(exe: str, profile: Path, timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Start headless Chromium; return the process and its browser websocket URL."""
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update", "--mute-audio",
           # no outside name resolves: the same result offline and online, and no waiting on DNS
           "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
           "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
           "--window-size=1280,900", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SiteCheckError(f"{exe} exited with code {proc.returncode} at start "
                                 "(run it by hand with --headless to see why)")
        if port_file.is_file():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return proc, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    _stop_browser(proc)
    raise SiteCheckError(f"{exe} did not open its DevTools port within {timeout:.0f} s")


def _stop_browser(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------- the checks

def site_pages(html_dir: str | os.PathLike) -> list[str]:
    """Return every page of the site (POSIX paths relative to `html_dir`), skipping `_static` & co."""
    root = Path(html_dir)
    pages = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root)
        if any(part.startswith(("_", ".")) for part in rel.parts[:-1]):
            continue
        pages.append(rel.as_posix())
    return pages


class _Links:
    """Answers whether a same-site URL path (and its #anchor) exists in the built site."""

    def __init__(self, root: Path):
        self.root = root
        self._ids: dict[Path, set[str]] = {}

    def target(self, path: str) -> Path | None:
        rel = unquote(path).lstrip("/")
        f = (self.root / rel) if rel else self.root / "index.html"
        if f.is_dir():
            f = f / "index.html"
        return f if f.is_file() else None

    def has_anchor(self, f: Path, anchor: str) -> bool:
        if f not in self._ids:
            text = f.read_text(errors="replace") if f.suffix == ".html" else ""
            self._ids[f] = set(re.findall(r'\bid="([^"]+)"', text)) | set(
                re.findall(r'\bname="([^"]+)"', text))
        return unquote(anchor) in self._ids[f]


def _is_local(url: str, origin: str) -> bool:
    return url.startswith(origin)


def _check_page(cdp: _CDP, session: str, origin: str, rel: str, links: _Links, root: Path,
                shots: Path | None, timeout: float) -> PageResult:
    result = PageResult(rel)
    start = time.monotonic()
    url = f"{origin}/{rel}"
    cdp.events.clear()
    nav = cdp.send("Page.navigate", {"url": url}, session)
    if nav.get("errorText"):
        result.problems.append(f"page did not load: {nav['errorText']}")
        result.seconds = time.monotonic() - start
        return result
    if not cdp.wait_for("Page.loadEventFired", timeout):
        result.problems.append(f"page did not finish loading within {timeout:.0f} s")
    cdp.drain(0.5)

    requests: dict[str, str] = {}
    for e in cdp.events:
        if e.get("sessionId") != session:
            continue
        m, p = e["method"], e.get("params", {})
        if m == "Network.requestWillBeSent":
            requests[p["requestId"]] = p["request"]["url"]
        elif m == "Network.responseReceived":
            r_url, status = p["response"]["url"], p["response"]["status"]
            if p.get("type") == "Document" and r_url.split("#")[0] == url and status >= 400:
                result.problems.append(f"page did not load: HTTP {status}")
            elif (_is_local(r_url, origin) and status >= 400 and p.get("type") != "Document"
                  and r_url != f"{origin}/favicon.ico"):  # the browser asks for it by itself
                result.problems.append(f"resource missing (HTTP {status}): {r_url[len(origin):]}")
        elif m == "Network.loadingFailed":
            r_url = requests.get(p["requestId"], "?")
            if _is_local(r_url, origin):
                if not p.get("canceled"):
                    result.problems.append(f"resource failed ({p.get('errorText')}): {r_url[len(origin):]}")
            else:
                result.notes.append(r_url)
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text", "")
            result.problems.append(f"JavaScript error: {text.splitlines()[0] if text else d}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.problems.append(f"console error: {args[:300]}")
        elif m == "Log.entryAdded":
            entry = p.get("entry", {})
            # network errors are judged above (local: a problem; other hosts: a note)
            if entry.get("level") == "error" and entry.get("source") != "network":
                result.problems.append(f"console error ({entry.get('source')}): {entry.get('text', '')[:300]}")

    if any(x.startswith("page did not") for x in result.problems):
        result.seconds = time.monotonic() - start
        return result

    js = _PAGE_JS.replace("LAUNCH", json.dumps(LAUNCH_SELECTOR))
    info = cdp.send("Runtime.evaluate", {"expression": js, "awaitPromise": True, "returnByValue": True,
                                         "timeout": timeout * 1000}, session, timeout=timeout + 5)
    value = info.get("result", {}).get("value") or {}
    for img in value.get("images", []):
        if not img["ok"]:
            if _is_local(img["src"], origin):
                result.problems.append(f"image does not load: {img['src'][len(origin):]}")
            else:
                result.notes.append(img["src"])
    source = root / "_sources" / (rel[:-len(".html")] + ".ipynb")
    if source.is_file():
        wanted = "/" + rel[:-len(".html")] + ".ipynb"
        launch = value.get("launch", [])
        if not any(h.endswith(wanted) for h in launch):
            result.problems.append(f"no Colab launch button for {wanted.lstrip('/')}"
                                   + (f" (found {launch})" if launch else ""))
    for href in sorted(set(value.get("links", []))):
        if not _is_local(href, origin):
            continue
        parts = urlsplit(href)
        target = links.target(parts.path)
        if target is None:
            result.problems.append(f"broken link: {href[len(origin):]}")
        elif parts.fragment and target.suffix == ".html" and not links.has_anchor(target, parts.fragment):
            result.problems.append(f"broken anchor: {href[len(origin):]}")

    if shots is not None:
        try:
            metrics = cdp.send("Page.getLayoutMetrics", {}, session)
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            clip = {"x": 0, "y": 0, "width": max(1, int(size.get("width", 1280))),
                    "height": max(1, min(int(size.get("height", 900)), 12000)), "scale": 1}
            shot = cdp.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                       "captureBeyondViewport": True}, session)
            dest = shots / (rel[:-len(".html")].replace("/", "__") + ".png")
            dest.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = str(dest)
        except (RuntimeError, TimeoutError) as err:
            result.notes.append(f"no screenshot: {err}")
    result.seconds = time.monotonic() - start
    return result


def check_site(html_dir: str | os.PathLike = "_build/html", *, screenshots: str | os.PathLike | None =
               "_build/site-check", browser: str | None = None, timeout: float = 30.0,
               quiet: bool = False) -> SiteReport:
    """Return a `SiteReport` after opening every page of `html_dir` in headless Chromium.

    A page fails when it does not load (HTTP error, or no load event within `timeout` s), logs a
    JavaScript or console error, shows a local image that does not load, requests a local file
    that is missing, lacks its Colab launch button (pages built from a notebook: those with a
    ``_sources/<page>.ipynb``), or links to a missing page or anchor of the site. Screenshots (one
    PNG per page) go to `screenshots` (None: none). Raises `SiteCheckError` when there is no site
    or no browser. Used by `make check-site`.
    """
    root = Path(html_dir).resolve()
    if not (root / "index.html").is_file():
        raise SiteCheckError(f"{root / 'index.html'} not found: build the book first (`make book`)")
    exe = find_browser(browser)
    shots = None
    if screenshots is not None:
        shots = Path(screenshots).resolve()
        if shots.exists():
            shutil.rmtree(shots)
        shots.mkdir(parents=True)
    pages = site_pages(root)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    profile = Path(tempfile.mkdtemp(prefix="medlearn-chromium-"))
    proc = cdp = None
    results: list[PageResult] = []
    try:
        proc, ws_url = _start_browser(exe, profile)
        cdp = _CDP(ws_url)
        links = _Links(root)

        def open_tab() -> tuple[str, str]:
            target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.send(f"{domain}.enable", {}, session)
            cdp.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900,
                                                            "deviceScaleFactor": 1, "mobile": False}, session)
            return target, session

        target, session = open_tab()
        for rel in pages:
            try:
                r = _check_page(cdp, session, origin, rel, links, root, shots, timeout)
            except TimeoutError as err:
                r = PageResult(rel, problems=[f"page did not respond: {err}"])
            results.append(r)
            if not quiet:
                print(f"  {'ok' if r.ok else 'FAIL':<5}{r.seconds:>6.1f} s  {rel}", flush=True)
            if any(x.startswith("page did not") for x in r.problems):
                # a hung page: drop its tab and continue in a fresh one
                try:
                    cdp.send("Target.closeTarget", {"targetId": target}, timeout=10)
                except (RuntimeError, TimeoutError):
                    pass
                target, session = open_tab()
    finally:
        if cdp is not None:
            cdp.close()
        if proc is not None:
            _stop_browser(proc)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    report = SiteReport(results, str(shots) if shots else None)
    if not quiet:
        print(report.summary(), flush=True)
    return report
