"""A real PACS inside the notebook: Orthanc on loopback, with credentials, temporary storage and a clean stop.

Introduced in part 2 ("2.3 PACS"); used again in part 6 (deployment: DICOM SEG stored back into the PACS).

    from medlearn.pacs import Orthanc
    with Orthanc() as pacs:                # starts `Orthanc` on free ports; stops and deletes on exit
        pacs.echo()                        # C-ECHO
        pacs.store(files)                  # C-STORE (pynetdicom)
        pacs.find("STUDY", PatientID="*")  # C-FIND
        pacs.move(series_uid, folder)      # C-MOVE into a storage SCP run here
        client = pacs.dicomweb()           # dicomweb_client.DICOMwebClient: QIDO / WADO / STOW

The DIMSE and DICOMweb protocols are spoken by pynetdicom and dicomweb-client; this module only starts
the server and adds the glue those libraries leave to the user (a storage receiver for C-MOVE).

Network exposure: the HTTP server refuses every client but this machine (`RemoteAccessAllowed: false`)
and every request without the generated password; the DICOM server answers C-STORE, C-FIND, C-MOVE and
C-GET only for the registered client AE title calling from 127.0.0.1 (`DicomAlwaysAllowStore: false`,
`DicomCheckModalityHost: true`); only C-ECHO answers anyone. Orthanc 1.10 (Debian 12) has no option to
bind its sockets to one interface, so the ports listen on all interfaces of the machine: another host
can connect, but cannot store, query or read without the AE title *and* this machine's address.

Lifecycle: Orthanc dies with the Python process that started it, even when that process is killed
(SIGKILL, a Colab restart): on Linux the kernel sends it SIGKILL (`PR_SET_PDEATHSIG`), and a small
watchdog process deletes its temporary folder. macOS has no parent-death signal: there the watchdog
stops Orthanc too, within a second.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

__all__ = ["Orthanc", "OrthancNotFound", "find_orthanc", "orthanc_available", "INSTALL_HELP"]

INSTALL_HELP = (
    "Orthanc is not installed on this machine. Get it in one of these ways:\n"
    "  * Debian/Ubuntu (and Colab):  sudo apt-get install -y orthanc orthanc-dicomweb\n"
    "    (in the course's folder `make system-deps` runs exactly that)\n"
    "  * container image:            docker run -p 4242:4242 -p 8042:8042 orthancteam/orthanc\n"
    "  * installers (Windows, macOS): https://www.orthanc-server.com/download.php\n"
    "then run this again, or point ORTHANC_EXECUTABLE at the `Orthanc` binary "
    "(and ORTHANC_PLUGINS at the folder holding libOrthancDicomWeb)."
)
_PLUGIN_DIRS = ["/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins"]


class OrthancNotFound(RuntimeError):
    """Orthanc (or its DICOMweb plugin) is not installed; the message says how to install it."""


def find_orthanc() -> tuple[Path, Path]:
    """Return the paths of the `Orthanc` executable and the DICOMweb plugin, or raise `OrthancNotFound`.

    Chapter 2.3. Looks at $ORTHANC_EXECUTABLE / $ORTHANC_PLUGINS first, then PATH and the Debian locations.
    """
    exe = os.environ.get("ORTHANC_EXECUTABLE") or shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if not exe or not Path(exe).exists():
        raise OrthancNotFound(INSTALL_HELP)
    dirs = ([os.environ["ORTHANC_PLUGINS"]] if os.environ.get("ORTHANC_PLUGINS") else []) + _PLUGIN_DIRS
    for d in dirs:
        for name in ("libOrthancDicomWeb.so", "libOrthancDicomWeb.dylib", "OrthancDicomWeb.dll"):
            if (Path(d) / name).exists():
                return Path(exe), Path(d) / name
    raise OrthancNotFound("Orthanc is installed but its DICOMweb plugin is not (libOrthancDicomWeb). "
                          "Debian/Ubuntu: sudo apt-get install -y orthanc-dicomweb; or set ORTHANC_PLUGINS.\n"
                          + INSTALL_HELP)


def orthanc_available() -> bool:
    """Return True when Orthanc and its DICOMweb plugin are installed (chapter 2.3 checks this first)."""
    try:
        find_orthanc()
        return True
    except OrthancNotFound:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_WATCHDOG = """
import os, shutil, signal, sys, time
parent, pid, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
while os.getppid() == parent and os.path.isdir(folder):
    time.sleep(0.5)
if os.path.isdir(folder):  # the parent died without stopping Orthanc: stop it, delete its folder
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    time.sleep(0.5)
    shutil.rmtree(folder, ignore_errors=True)
"""


def _die_with_parent() -> None:
    """In the child before exec (Linux): ask the kernel to SIGKILL it when its parent dies."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _watchdog(pid: int, workdir: Path) -> subprocess.Popen:
    """Start the process that stops Orthanc `pid` and deletes `workdir` if this process dies first."""
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pid), str(workdir)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen | None, workdir: Path | None, watchdog=None) -> None:
    """Stop the Orthanc process and delete its folder (also called from atexit and the finalizer)."""
    if watchdog is not None and watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait(timeout=5)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class Orthanc:
    """A running Orthanc PACS (a context manager): ports, credentials, storage, and DIMSE/DICOMweb helpers.

    Chapter 2.3. `Orthanc()` only prepares; `start()` (or `with Orthanc() as pacs:`) starts the server on
    free ports with its own configuration (never the system's /etc/orthanc or ports 4242/8042), HTTP basic
    authentication with a generated password, the DICOMweb plugin at `/dicom-web`, and storage in a new
    temporary folder. `stop()` (run on leaving the `with` block, on any exception including
    KeyboardInterrupt, at interpreter exit, and when the object is garbage collected) ends the process
    and deletes the folder.
    """

    def __init__(self, aet: str = "MEDLEARN_PACS", client_aet: str = "MEDLEARN", *, startup_timeout: float = 60.0,
                 verbose: bool = False, extra_config: dict | None = None):
        self.aet, self.client_aet = aet, client_aet
        # part 6: keys added to the configuration ("Plugins" entries are appended), e.g. the
        # Python plugin of medlearn.deploy.oneclick
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self.verbose = verbose
        self.username = "medlearn"
        self.password = secrets.token_urlsafe(16)
        self.host = "127.0.0.1"
        self.http_port = self.dicom_port = self.client_port = None
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None
        self._finalizer = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The base URL of Orthanc's REST API, e.g. http://127.0.0.1:40123."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def storage(self) -> Path | None:
        """The folder where Orthanc keeps its files and index (deleted by `stop`)."""
        return None if self.workdir is None else self.workdir / "storage"

    def config(self) -> dict:
        """Return the Orthanc configuration this server runs with (password included)."""
        return {
            "Name": "medlearn-course-pacs",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,   # only the registered modality below may store
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowMove": False,
            "DicomAlwaysAllowGet": False,
            "DicomModalities": {"medlearn": {"AET": self.client_aet, "Host": self.host, "Port": self.client_port,
                                             "AllowEcho": True, "AllowFind": True, "AllowMove": True,
                                             "AllowGet": True, "AllowStore": True}},
            "DicomScuTimeout": 30,
            "DicomAssociationCloseDelay": 0,
            "Plugins": [str(self._plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "SaveJobs": False,
            "HttpThreadsCount": 8,
            "DicomThreadsCount": 2,
            "ConcurrentJobs": 1,
            "StableAge": 2,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }

    def start(self) -> "Orthanc":
        """Start Orthanc and wait until its REST API answers; return self. Raises `OrthancNotFound`."""
        if self.process is not None and self.process.poll() is None:
            return self
        exe, self._plugin = find_orthanc()
        last_error = None
        for _attempt in range(3):  # a free port can be taken between choosing it and Orthanc binding it
            self.workdir = Path(tempfile.mkdtemp(prefix="medlearn-orthanc-"))
            self.storage.mkdir()
            self.http_port, self.dicom_port, self.client_port = _free_port(), _free_port(), _free_port()
            cfg = self.workdir / "orthanc.json"
            config = self.config()
            for key, value in self.extra_config.items():
                config[key] = config.get("Plugins", []) + list(value) if key == "Plugins" else value
            cfg.write_text(json.dumps(config, indent=2))
            log = open(self.workdir / "orthanc.log", "wb")
            try:
                self.process = subprocess.Popen([str(exe), "--verbose" if self.verbose else "--no-jobs", str(cfg)],
                                                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                                start_new_session=True,
                                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            finally:
                log.close()
            watchdog = _watchdog(self.process.pid, self.workdir)
            # runs on stop(), on garbage collection, and at interpreter exit (finalize's atexit hook)
            self._finalizer = weakref.finalize(self, _stop, self.process, self.workdir, watchdog)
            try:
                self._wait_ready()
                return self
            except (RuntimeError, TimeoutError) as e:
                last_error = e
                self._finalizer()
                self.process = None
        raise RuntimeError(f"Orthanc did not start after 3 attempts: {last_error}")

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc exited with code {self.process.returncode}; its log ends:\n{log}")
            try:
                r = requests.get(f"{self.url}/system", auth=(self.username, self.password), timeout=2)
                if r.status_code == 200:
                    plugins = requests.get(f"{self.url}/plugins", auth=(self.username, self.password), timeout=2)
                    if "dicom-web" not in plugins.text:
                        raise RuntimeError("Orthanc started without its DICOMweb plugin; "
                                           "install orthanc-dicomweb (Debian/Ubuntu)")
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not answer on {self.url} within {self.startup_timeout:.0f} s; "
                           f"see {self.workdir / 'orthanc.log'}")

    def stop(self) -> None:
        """Stop the server and delete its storage folder (safe to call twice)."""
        if self._finalizer is not None:
            self._finalizer()
        self.process = None
        self.workdir = None

    @property
    def running(self) -> bool:
        """True while the Orthanc process is alive."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "Orthanc":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()  # also on KeyboardInterrupt: __exit__ runs for every BaseException

    def __repr__(self) -> str:
        state = f"running at {self.url}, DICOM {self.aet}@{self.host}:{self.dicom_port}" if self.running else "stopped"
        return f"Orthanc({state})"

    # ------------------------------------------------------------------ REST and DICOMweb
    def session(self):
        """Return a `requests.Session` logged in to the REST API (Orthanc's own API, chapter 2.3)."""
        import requests

        s = requests.Session()
        s.auth = (self.username, self.password)
        return s

    def rest(self, path: str, method: str = "GET", **kw):
        """Return the JSON answer of one REST call, e.g. `pacs.rest('/statistics')`."""
        r = self.session().request(method, f"{self.url}/{path.lstrip('/')}", timeout=60, **kw)
        r.raise_for_status()
        return r.json()

    def dicomweb(self):
        """Return a `dicomweb_client.DICOMwebClient` for this server (QIDO-RS, WADO-RS, STOW-RS)."""
        from dicomweb_client.api import DICOMwebClient

        return DICOMwebClient(url=self.dicomweb_url, session=self.session())

    # ------------------------------------------------------------------ DIMSE (pynetdicom)
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.client_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        return ae

    def _associate(self, ae):
        assoc = ae.associate(self.host, self.dicom_port, ae_title=self.aet)
        if not assoc.is_established:
            raise ConnectionError(f"no DICOM association with {self.aet}@{self.host}:{self.dicom_port} "
                                  f"(is the server running? is the called AE title right?)")
        return assoc

    def echo(self) -> int:
        """Send C-ECHO ("DICOM ping"); return the status (0x0000 = success)."""
        from pynetdicom.sop_class import Verification

        ae = self._ae()
        ae.add_requested_context(Verification)
        assoc = self._associate(ae)
        try:
            return int(assoc.send_c_echo().Status)
        finally:
            assoc.release()

    def store(self, files) -> int:
        """C-STORE every file (a folder, or a list of paths or Datasets); return how many were stored.

        Raises `RuntimeError` naming the first file the PACS refused.
        """
        import pydicom
        from pynetdicom import StoragePresentationContexts

        if isinstance(files, (str, Path)) and Path(files).is_dir():
            files = sorted(p for p in Path(files).rglob("*") if p.is_file())
        datasets = [(f, f if isinstance(f, pydicom.Dataset) else pydicom.dcmread(f)) for f in files]
        ae = self._ae()
        needed = {str(ds.SOPClassUID) for _, ds in datasets}
        ae.requested_contexts = [c for c in StoragePresentationContexts if c.abstract_syntax in needed][:128]
        assoc = self._associate(ae)
        stored = 0
        try:
            for f, ds in datasets:
                status = assoc.send_c_store(ds)
                if not status or int(status.Status) != 0:
                    raise RuntimeError(f"the PACS refused {f if not isinstance(f, pydicom.Dataset) else 'a dataset'} "
                                       f"(status {getattr(status, 'Status', 'none')})")
                stored += 1
        finally:
            assoc.release()
        return stored

    def find(self, level: str = "STUDY", **keys) -> list:
        """C-FIND at PATIENT, STUDY, SERIES or IMAGE level; return the matching identifiers (Datasets).

        Keys are DICOM keywords: `pacs.find("SERIES", StudyInstanceUID=uid, Modality="", SeriesInstanceUID="")`
        (an empty value asks for that attribute back; `*` is a wildcard). Uses the Study Root model,
        except at PATIENT level (Patient Root).
        """
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                          StudyRootQueryRetrieveInformationModelFind)

        level = level.upper()
        model = PatientRootQueryRetrieveInformationModelFind if level == "PATIENT" else StudyRootQueryRetrieveInformationModelFind
        query = Dataset()
        query.QueryRetrieveLevel = level
        unique = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
                  "IMAGE": "SOPInstanceUID"}[level]
        keys.setdefault(unique, "")
        for k, v in keys.items():
            setattr(query, k, v)
        ae = self._ae()
        ae.add_requested_context(model)
        assoc = self._associate(ae)
        found = []
        try:
            for status, identifier in assoc.send_c_find(query, model):
                if status and int(status.Status) in (0xFF00, 0xFF01) and identifier is not None:
                    found.append(identifier)
                elif status and int(status.Status) not in (0x0000, 0xFF00, 0xFF01):
                    raise RuntimeError(f"C-FIND failed with status 0x{int(status.Status):04X}")
        finally:
            assoc.release()
        return found

    def move(self, folder, *, study_uid: str | None = None, series_uid: str | None = None) -> list[Path]:
        """C-MOVE a study or series to this machine; return the paths of the files received in `folder`.

        Orthanc connects back to the client AE registered in its configuration: a storage SCP (pynetdicom)
        runs on `client_port` for the duration of the move and writes each received instance as
        `<SOPInstanceUID>.dcm`.
        """
        from pydicom.dataset import Dataset
        from pynetdicom import AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

        if not (study_uid or series_uid):
            raise ValueError("move needs study_uid=... or series_uid=...")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        received: list[Path] = []

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            received.append(path)
            return 0x0000

        ae = self._ae()
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        server = ae.start_server((self.host, self.client_port), block=False,
                                 evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            query = Dataset()
            if series_uid:
                query.QueryRetrieveLevel = "SERIES"
                query.SeriesInstanceUID = series_uid
                if study_uid:
                    query.StudyInstanceUID = study_uid
            else:
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = study_uid
            assoc = self._associate(ae)
            try:
                final = None
                for status, _ in assoc.send_c_move(query, self.client_aet, StudyRootQueryRetrieveInformationModelMove):
                    final = status
            finally:
                assoc.release()
            if final is None or int(final.Status) not in (0x0000,):
                raise RuntimeError(f"C-MOVE failed (status {getattr(final, 'Status', 'none')}); "
                                   f"see {self.workdir / 'orthanc.log'}")
        finally:
            server.shutdown()
        return sorted(received)
