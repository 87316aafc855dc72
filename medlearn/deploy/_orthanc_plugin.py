"""Orthanc Python plugin: the research PACS's "one click" (runs INSIDE Orthanc, standard library only).

Chapter 6.2. Loaded by Orthanc's Python plugin (Debian package `orthanc-python`) through the
configuration key `PythonScript`; medlearn.deploy.oneclick writes that configuration. It

* runs the model when a series becomes stable (all its instances arrived) - `Trigger: "stable"`;
* answers one REST call, `POST /medlearn/segment/<orthanc series id>`, and a button on the series
  page of Orthanc Explorer that makes that call;
* shows the result (or the error, in plain words) as series metadata `MedlearnResult` and at
  `GET /medlearn/result/<series id>`.

The network itself runs in a separate process (`python -m medlearn.deploy.oneclick run ...`), in
the course's virtual environment: a crash, a hang or an out-of-memory there cannot take the PACS
down, and Orthanc's embedded interpreter needs no PyTorch. Files go in and come out through a
temporary folder; the SEG is stored only when complete, and a series already segmented by this
model version is not segmented again (idempotent).
"""

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

import orthanc

CONFIG = json.loads(orthanc.GetConfiguration()).get("MedlearnOneClick", {})
META = "MedlearnResult"
_jobs = queue.Queue()
_busy = set()
_lock = threading.Lock()


def _get_json(uri):
    return json.loads(orthanc.RestApiGet(uri))


def _result(series_id):
    try:
        return json.loads(orthanc.RestApiGet(f"/series/{series_id}/metadata/{META}"))
    except Exception:  # no metadata yet
        return None


def _set_result(series_id, result):
    orthanc.RestApiPut(f"/series/{series_id}/metadata/{META}", json.dumps(result).encode())


def _done_before(series_id):
    old = _result(series_id)
    if old and old.get("status") == "done" and old.get("model") == CONFIG["ModelKey"]:
        return old
    return None


def segment(series_id):
    """Run the model on one series; store the SEG in the same study; return the result dict."""
    with _lock:
        if series_id in _busy:
            return {"status": "running", "series": series_id, "model": CONFIG["ModelKey"]}
        _busy.add(series_id)
    start = time.time()
    work = tempfile.mkdtemp(prefix="medlearn-oneclick-")
    try:
        old = _done_before(series_id)
        if old:
            return dict(old, status="done", note="already segmented by this model version; nothing stored")
        series = _get_json(f"/series/{series_id}")
        modality = series["MainDicomTags"].get("Modality", "")
        src = os.path.join(work, "series")
        os.mkdir(src)
        for i, inst in enumerate(series["Instances"]):
            with open(os.path.join(src, f"{i:05d}-{inst}.dcm"), "wb") as f:
                f.write(orthanc.RestApiGet(f"/instances/{inst}/file"))
        out = os.path.join(work, "seg.dcm")
        report = os.path.join(work, "report.json")
        cmd = [CONFIG["Python"], "-m", "medlearn.deploy.oneclick", "run", "--bundle", CONFIG["Bundle"],
               "--series", src, "--out", out, "--report", report,
               "--runtime", CONFIG.get("Runtime", "onnx")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CONFIG.get("Timeout", 600))
        if os.path.exists(report):
            with open(report) as f:
                result = json.load(f)
        else:
            tail = (proc.stderr or proc.stdout or "")[-600:]
            result = {"status": "error", "message": f"the model process failed (exit {proc.returncode}): {tail}"}
        if result.get("status") == "done":
            with open(out, "rb") as f:
                stored = json.loads(orthanc.RestApiPost("/instances", f.read()))
            result["seg_instance"] = stored["ID"]
            result["seg_series"] = stored.get("ParentSeries")
        result.update(model=CONFIG["ModelKey"], series=series_id, modality=modality,
                      seconds=round(time.time() - start, 2))
    except Exception as e:  # the PACS keeps running whatever happens; the user reads the message
        result = {"status": "error", "model": CONFIG["ModelKey"], "series": series_id,
                  "message": f"{type(e).__name__}: {e}"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with _lock:
            _busy.discard(series_id)
    try:
        _set_result(series_id, result)
    except Exception as e:
        orthanc.LogWarning(f"medlearn: cannot store the result of {series_id}: {e}")
    orthanc.LogWarning(f"medlearn one-click {series_id}: {result.get('status')} "
                       f"{result.get('message', '')}")
    return result


def _worker():
    while True:
        series_id = _jobs.get()
        if series_id is None:
            return
        segment(series_id)


def _is_own_output(series_id):
    tags = _get_json(f"/series/{series_id}")["MainDicomTags"]
    return tags.get("Modality") in ("SEG", "SR", "PR", "KO")


def on_change(change_type, level, resource_id):
    if change_type == orthanc.ChangeType.STABLE_SERIES and CONFIG.get("Trigger") == "stable":
        if not _is_own_output(resource_id) and not _done_before(resource_id):
            _jobs.put(resource_id)
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        _jobs.put(None)


def rest_segment(output, uri, **request):
    if request["method"] != "POST":
        output.SendMethodNotAllowed("POST")
        return
    series_id = request["groups"][0]
    try:
        _get_json(f"/series/{series_id}")
    except Exception:
        output.AnswerBuffer(json.dumps({"status": "error", "message": f"no series {series_id} in this PACS"}),
                            "application/json")
        return
    output.AnswerBuffer(json.dumps(segment(series_id)), "application/json")


def rest_result(output, uri, **request):
    output.AnswerBuffer(json.dumps(_result(request["groups"][0]) or {"status": "none"}), "application/json")


BUTTON = """
$('#series').live('pagebeforeshow', function() {
  $('#medlearn-segment').remove();
  var b = $('<a id="medlearn-segment" data-role="button" data-icon="gear">Segment with %(model)s</a>');
  b.insertBefore($('#series-delete').parent().parent());
  b.click(function() {
    var id = $.mobile.pageData.uuid;
    $.post('../medlearn/segment/' + id, '', function(r) {
      alert(r.status === 'done' ? 'SEG stored in this study' : 'Not segmented: ' + r.message);
    }, 'json');
  });
  $('#series').trigger('create');
});
"""

orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterRestCallback("/medlearn/segment/(.*)", rest_segment)
orthanc.RegisterRestCallback("/medlearn/result/(.*)", rest_result)
try:
    orthanc.ExtendOrthancExplorer(BUTTON % {"model": CONFIG.get("ModelKey", "the model")})
except Exception:  # older plugin versions: the REST route still works
    pass
threading.Thread(target=_worker, name="medlearn-oneclick", daemon=True).start()
orthanc.LogWarning(f"medlearn one-click ready: model {CONFIG.get('ModelKey')}, trigger {CONFIG.get('Trigger')}")
