"""The research PACS's "one click": a model attached to Orthanc, and the process that runs it.

Chapter 6.2 (thesis Fig. 4.5: the radiologist sends a series, the result comes back as images in the
PACS). Two halves:

* `oneclick_config(bundle)` returns the extra Orthanc configuration that loads Orthanc's Python
  plugin with `_orthanc_plugin.py` (in this folder; private, because it runs inside Orthanc and
  cannot be imported elsewhere) and names the bundle; pass it to
  `medlearn.pacs.Orthanc(extra_config=...)`. Storing a series then produces a SEG in the same
  study; `POST /medlearn/segment/<series id>` does the same on demand.
* `run_model(bundle, series_folder, out, report)` (also `python -m medlearn.deploy.oneclick run`)
  is what the plugin calls in a separate process: files in, a SEG file and a JSON report out.
  Every bad input becomes `{"status": "error", "message": ...}` naming the file and the problem.

Why the Python plugin and not Lua: Orthanc's Lua can only shell out and block its own event loop;
the Python plugin adds a REST route and a button, runs jobs in a thread, and keeps the model in a
child process, so the PACS survives whatever the model does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PLUGIN_SCRIPT = Path(__file__).with_name("_orthanc_plugin.py")
PYTHON_PLUGIN_DIRS = ["/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins"]


def find_python_plugin() -> Path:
    """Return the path of Orthanc's Python plugin, or raise `OrthancNotFound` saying how to install it."""
    from medlearn.pacs import OrthancNotFound

    for d in PYTHON_PLUGIN_DIRS:
        for name in ("libOrthancPython.so", "libOrthancPython.so.4.0"):
            if (Path(d) / name).exists():
                return Path(d) / name
    raise OrthancNotFound("Orthanc's Python plugin is not installed (libOrthancPython). "
                          "Debian/Ubuntu: sudo apt-get install -y orthanc-python")


def model_key(bundle_folder) -> str:
    """Return '<name> <version>' of a bundle: what idempotency is keyed on."""
    meta = json.loads((Path(bundle_folder) / "configs" / "metadata.json").read_text())
    return f"{meta['name']} {meta['version']}"


def oneclick_config(bundle_folder, *, trigger: str = "stable", runtime: str = "onnx",
                    python: str | None = None, timeout: int = 600) -> dict:
    """Return the extra Orthanc configuration that attaches the bundle's model to the PACS.

    Chapter 6.2. `trigger="stable"` runs the model on every series once it is complete;
    `trigger="rest"` only on `POST /medlearn/segment/<series id>` (or the Explorer button).
    """
    bundle_folder = Path(bundle_folder).resolve()
    return {
        "Plugins": [str(find_python_plugin())],
        "PythonScript": str(PLUGIN_SCRIPT),
        "PythonVerbose": False,
        "UserMetadata": {"MedlearnResult": 4301},
        "MedlearnOneClick": {"Bundle": str(bundle_folder), "ModelKey": model_key(bundle_folder),
                             "Python": python or sys.executable, "Trigger": trigger,
                             "Runtime": runtime, "Timeout": timeout},
    }


def run_model(bundle_folder, series, out, report, runtime: str = "onnx") -> dict:
    """Run the bundle on one series folder; write the SEG to `out` and a JSON report; return the report.

    Chapter 6.2. Never raises for bad input: the report says `"status": "error"` and why, and no
    SEG file is written.
    """
    from medlearn.deploy.export import load_bundle
    from medlearn.deploy.predict import predict_series
    from medlearn.deploy.seg import write_seg
    from medlearn.dicom import DicomSeriesError

    t0 = time.perf_counter()
    try:
        bundle = load_bundle(bundle_folder, runtime=runtime)
        pred = predict_series(bundle, series)
        label = next(iter(bundle.meta["network_data_format"]["outputs"]["pred"]["channel_def"].values()))
        write_seg(pred.mask, pred.files, out, label=label, algorithm=bundle.name, version=bundle.version)
        sx, sy, sz = pred.volume.spacing
        result = {"status": "done", "voxels": int(pred.mask.sum()),
                  "volume_ml": float(pred.mask.sum() * sx * sy * sz / 1000.0),
                  "source_series": pred.volume.meta.get("SeriesInstanceUID"),
                  "timing_s": {k: round(v, 3) for k, v in pred.seconds.items()}}
    except DicomSeriesError as e:
        result = {"status": "error", "message": str(e)}
    except Exception as e:  # anything else is a bug or a broken bundle: say so, keep the PACS running
        result = {"status": "error", "message": f"{type(e).__name__}: {e}"}
    if result["status"] != "done":
        Path(out).unlink(missing_ok=True)
    result["process_seconds"] = round(time.perf_counter() - t0, 3)
    Path(report).write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m medlearn.deploy.oneclick")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a bundle on a DICOM series folder; write a SEG and a report")
    r.add_argument("--bundle", required=True)
    r.add_argument("--series", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--report", required=True)
    r.add_argument("--runtime", default="onnx")
    a = p.parse_args(argv)
    result = run_model(a.bundle, a.series, a.out, a.report, a.runtime)
    return 0 if result["status"] == "done" else 2


if __name__ == "__main__":
    sys.exit(main())


def series_id(pacs, series_uid: str) -> str:
    """Return Orthanc's id of the series with this SeriesInstanceUID (REST `/tools/lookup`)."""
    found = [r for r in pacs.rest("/tools/lookup", method="POST", data=series_uid) if r["Type"] == "Series"]
    if not found:
        raise KeyError(f"series {series_uid} is not in the PACS at {pacs.url}")
    return found[0]["ID"]


def wait_for_result(pacs, series: str, timeout: float = 180.0) -> dict:
    """Return the one-click result of a series (Orthanc id or SeriesInstanceUID) once it is there.

    Chapter 6.2. Polls `GET /medlearn/result/<id>` until the status is "done" or "error".

    Raises:
        TimeoutError: naming Orthanc's log, if no result appears within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sid = series if "-" in series and "." not in series else series_id(pacs, series)
            result = pacs.rest(f"/medlearn/result/{sid}")
        except KeyError:
            result = {}
        if result.get("status") in ("done", "error"):
            return result
        time.sleep(0.3)
    raise TimeoutError(f"no one-click result for {series} after {timeout:.0f} s; "
                       f"see {pacs.workdir}/orthanc.log")
