"""The engine's Python dependencies inside a user's QGIS: what is missing and how pip installs it.

QGIS ships Python with numpy, GDAL's bindings and usually pyproj and Pillow, but not
onnxruntime, FAISS, tokenizers or ftfy. On first use (never at plugin load) the plugin:

1. puts its private folder (`private_folder()`: ``<QGIS profile>/python/geobridge_deps``) on
   ``sys.path`` with `activate()`, *after* QGIS's own paths, so QGIS's packages always win;
2. checks the imports with `missing()` (``importlib.util.find_spec``: nothing is imported);
3. if anything is missing, the dock's install dialog (`gui/install_dialog.py`) runs
   `pip_command()`: binary wheels only, into the private folder, with a constraints file
   (`constraints_text()`) that pins QGIS's numpy and every package QGIS already has, at the
   versions it has, so pip never upgrades them. pip's ``--target`` ignores what is installed
   elsewhere, so dependencies such as numpy may also land in the private folder, at the host's
   versions; being later on ``sys.path`` they are never the ones imported. pip runs with the
   interpreter of QGIS's own Python, proved by `find_python()` (same major.minor and prefix),
   never the first ``python3`` on PATH: another Python's wheels would not import in QGIS.

Processing algorithms never open a dialog: `require_for_processing()` raises a
QgsProcessingException naming what is missing.

Nothing here imports Qt, QGIS or a heavy package at import time.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .core.errors import UserError

logger = logging.getLogger(__name__)

# import name -> pip name; the first five never come with QGIS, the last two usually do.
REQUIREMENTS: dict[str, str] = {
    "onnxruntime": "onnxruntime",
    "faiss": "faiss-cpu",
    "tokenizers": "tokenizers",
    "ftfy": "ftfy",
    "cv2": "opencv-python-headless",
    "pyproj": "pyproj",
    "PIL": "pillow",
}

# The pins of the project's requirements.txt (numpy >= 2 hosts); tests check they agree.
PINS_NUMPY2: dict[str, str] = {
    "onnxruntime": "1.32.0",
    "faiss-cpu": "1.15.1",
    "tokenizers": "0.23.3",
    "ftfy": "6.3.1",
    "opencv-python-headless": "4.11.0.86",
    "pillow": "11.3.0",
    "pyproj": "3.7.1",
}

# Hosts with numpy 1.x (QGIS 3.22 on Debian 12: numpy 1.24.2, Python 3.11).
PINS_NUMPY1: dict[str, str] = {
    "onnxruntime": "1.20.1",
    "faiss-cpu": "1.8.0.post1",
    "tokenizers": "0.23.3",
    "ftfy": "6.3.1",
    "opencv-python-headless": "4.11.0.86",
    "pillow": "11.3.0",
    "pyproj": "3.7.1",
}

FOLDER_NAME = "geobridge_deps"

_PEP440 = re.compile(
    r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?$", re.I
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(requirements: Mapping[str, str] = REQUIREMENTS) -> list[str]:
    """pip names of the requirements whose top-level module cannot be found (none imported)."""
    out = []
    for module, pip_name in requirements.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken package, or a module without a spec
            found = False
        if not found:
            out.append(pip_name)
    return out


def private_folder(base: str | os.PathLike | None = None) -> Path:
    """The plugin-private package folder: `base` if given (tests), else
    ``QgsApplication.qgisSettingsDirPath()/python/geobridge_deps`` (the user's QGIS profile)."""
    if base is not None:
        return Path(base)
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / FOLDER_NAME


def activate(folder: str | os.PathLike | None = None) -> Path:
    """Append the private folder to ``sys.path`` (after QGIS's own paths: QGIS's packages win)
    and forget import caches, so what pip just put there is found. Idempotent; the folder."""
    path = private_folder(folder)
    entry = str(path)
    if entry not in sys.path:
        sys.path.append(entry)
    sys.path_importer_cache.pop(entry, None)  # cached as absent before pip made it
    importlib.invalidate_caches()
    return path


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)


def requirements_for(
    numpy_version: str, gpu: bool = False, names: Sequence[str] | None = None
) -> list[str]:
    """Pinned pip requirements that work with the host's numpy.

    ======================  ================  ================  ==========  =====  ======  =====
    host numpy              onnxruntime(-gpu) faiss-cpu         tokenizers  ftfy   pyproj  pillow
    ======================  ================  ================  ==========  =====  ======  =====
    < 2 (QGIS 3.22, Debian  1.20.1            1.8.0.post1       0.23.3      6.3.1  3.7.1   11.3.0
    12: numpy 1.24.2)
    >= 2                    1.32.0            1.15.1            0.23.3      6.3.1  3.7.1   11.3.0
    ======================  ================  ================  ==========  =====  ======  =====

    opencv-python-headless is 4.11.0.86 on both rows. faiss-cpu 1.15 does not import with
    numpy 1.24 (1.8.0.post1 does); onnxruntime 1.20.1 is built against numpy 1.x and runs with
    1.24. The numpy < 2 row was installed for real with pip from PyPI into QGIS 3.22's Python
    (Debian 12, numpy 1.24.2) and ran the engine: see README "In QGIS". The numpy >= 2 row is
    the project's requirements.txt. numpy itself is never a requirement: the constraints file
    pins the host's. `names` (pip names, e.g. from `missing()`) selects some; default: the five that
    never come with QGIS. `gpu` asks for onnxruntime-gpu instead of onnxruntime.
    """
    pins = PINS_NUMPY1 if _version_tuple(numpy_version)[0] < 2 else PINS_NUMPY2
    if names is None:
        names = ["onnxruntime", "faiss-cpu", "tokenizers", "ftfy", "opencv-python-headless"]
    out = []
    for name in names:
        key = "onnxruntime" if name in ("onnxruntime", "onnxruntime-gpu") else name
        if key not in pins:
            raise ValueError(f"{name}: not a GeoBridge dependency")
        pip_name = "onnxruntime-gpu" if key == "onnxruntime" and gpu else key
        out.append(f"{pip_name}=={pins[key]}")
    return out


def host_packages(exclude_folder: str | os.PathLike | None = None) -> dict[str, str]:
    """{normalised name: version} of the distributions importable in this Python (QGIS's),
    leaving out those in `exclude_folder` (the private folder) and unparseable versions."""
    excluded = Path(exclude_folder).resolve() if exclude_folder is not None else None
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        version = dist.version
        if not name or not version:
            continue
        if excluded is not None:
            try:
                location = Path(str(dist.locate_file(""))).resolve()
            except (OSError, TypeError, ValueError):
                location = None
            if location is not None and (location == excluded or excluded in location.parents):
                continue
        out.setdefault(_normalise(name), version)  # the first on sys.path is the one imported
    return out


def numpy_version(host: Mapping[str, str] | None = None) -> str | None:
    """The host's numpy version (from its metadata, without importing it), None without one."""
    host = host_packages() if host is None else host
    return host.get("numpy")


def _numbers(version: str) -> list[str]:
    return re.findall(r"\d+", version.split("+")[0].split("rc")[0].split("a")[0])[:3]


def constraints_text(host: Mapping[str, str], requirements: Sequence[str] = ()) -> str:
    """A pip constraints file: numpy and every other package of `host` ({name: version}, e.g.
    `host_packages()`) pinned at the version it has, so pip never upgrades QGIS's packages.
    Packages named in `requirements` are left out (they are the ones being installed), and so
    are versions pip could not read (some distribution builds) and "0.0.0", the placeholder
    some Debian packages carry (python3-mpmath, python3-kiwisolver on Debian 12): pinning it
    makes pip refuse any requirement of the real package (sympy, of onnxruntime, needs
    mpmath >= 0.19). Local labels ("+dfsg") are dropped."""
    wanted = {_normalise(re.split(r"[=<>!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}
    lines = ["# GeoBridge: the host's packages, pinned so that pip never upgrades them"]
    pinned = {_normalise(k): v for k, v in host.items()}
    for name in sorted(pinned, key=lambda n: (n != "numpy", n)):
        version = pinned[name]
        if name in wanted or not _PEP440.match(version) or not any(map(int, _numbers(version))):
            continue
        # "==1.0" also accepts a distribution's "1.0+dfsg" build, which is not on PyPI.
        lines.append(f"{name}=={version.split('+')[0]}")
    return "\n".join(lines) + "\n"


# Run by each candidate interpreter: its major.minor and where it lives (Python 2 safe, so
# that an old `python` on PATH answers instead of failing to parse).
_PROBE = (
    "import sys; v = sys.version_info; "
    "sys.stdout.write('geobridge-probe\\t%d.%d\\t%s\\t%s\\n' % "
    "(v[0], v[1], sys.prefix, getattr(sys, 'base_prefix', sys.prefix)))"
)
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$", re.I)


class PythonNotFound(UserError):
    """No interpreter proved to be the Python that runs QGIS. `command`: the pip command to
    run by hand, with a placeholder for the interpreter (empty when not known)."""

    def __init__(self, message: str, command: Sequence[str] = ()):
        super().__init__(message)
        self.command = list(command)


def _looks_like_python(path: str | os.PathLike | None) -> bool:
    # Inside QGIS sys.executable is the qgis binary: running it with -c would start QGIS.
    return bool(path) and bool(_PYTHON_NAME.match(Path(path).name)) and Path(path).is_file()


def _same_folder(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def python_candidates(prefixes: Sequence[str] | None = None, path: str | None = None) -> list[str]:
    """Interpreters that may be the one running QGIS, most likely first, existing files only.

    ``sys.executable`` and ``sys._base_executable`` when they are pythons; then under each of
    `prefixes` (default ``sys.base_prefix``, ``sys.exec_prefix``, ``sys.prefix``): Linux
    ``bin/pythonX.Y`` and ``bin/python3``; OSGeo4W and the QGIS Windows installer
    ``<prefix>/python.exe`` and ``<root>/apps/PythonXY/python.exe``; the macOS bundle
    ``QGIS.app/Contents/MacOS/bin/python3``; then ``pythonX.Y``, ``python3`` and ``python`` in
    every folder of `path` (default ``$PATH``), in order. None of them is trusted:
    `find_python` runs each to prove it."""
    major, minor = sys.version_info[:2]
    out: list[str] = []

    def add(candidate: str | os.PathLike | None) -> None:
        if _looks_like_python(candidate):
            text = os.path.abspath(str(candidate))
            if text not in out:
                out.append(text)

    add(sys.executable)
    add(getattr(sys, "_base_executable", None))
    if prefixes is None:
        prefixes = [sys.base_prefix, sys.exec_prefix, sys.prefix]
    for prefix in filter(None, prefixes):
        root = Path(prefix)
        for name in (f"python{major}.{minor}", "python3"):
            add(root / "bin" / name)
        add(root / "python.exe")
        for folder in (root, *list(root.parents)[:2]):  # <root>/apps/PythonXY is the prefix
            add(folder / "apps" / f"Python{major}{minor}" / "python.exe")
        contents = next((p for p in (root, *root.parents) if p.name == "Contents"), None)
        if contents is not None:
            for name in ("python3", f"python{major}.{minor}"):
                add(contents / "MacOS" / "bin" / name)
    names = [f"python{major}.{minor}", "python3", "python"]
    if os.name == "nt":
        names = [n + ".exe" for n in names]
    search = os.environ.get("PATH", "") if path is None else path
    for folder in filter(None, search.split(os.pathsep)):
        for name in names:
            add(Path(folder) / name)
    return out


def _probe(python: str, timeout: float = 30.0) -> tuple[str, str, str] | str:
    """(major.minor, prefix, base prefix) that `python` reports, or why it gave none."""
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"does not run: {e}"
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == "geobridge-probe":
            return fields[1], fields[2], fields[3]
    return f"no answer, exit code {proc.returncode}"


def find_python(candidates: Sequence[str] | None = None) -> str:
    """The interpreter of the Python that runs QGIS, proved: each of `candidates` (default
    `python_candidates()`) is run once, and the first that reports this Python's major.minor
    and base prefix is the answer. Another Python first on PATH (pyenv, conda) is skipped:
    its wheels would not import in QGIS. Raises `PythonNotFound` (never guesses)."""
    want = "{}.{}".format(*sys.version_info[:2])
    tried = []
    for python in python_candidates() if candidates is None else candidates:
        answer = _probe(python)
        if isinstance(answer, str):
            tried.append(f"{python} ({answer})")
        elif answer[0] != want:
            tried.append(f"{python} (Python {answer[0]})")
        elif not _same_folder(answer[2], sys.base_prefix):
            tried.append(f"{python} (another Python {answer[0]}, prefix {answer[2]})")
        else:
            logger.info("QGIS's Python is %s", python)
            return python
    raise PythonNotFound(
        f"cannot find the interpreter of the Python that runs QGIS (Python {want}, prefix "
        f"{sys.base_prefix}); tried: " + ("; ".join(tried) or "nothing found") + "."
    )


def python_executable() -> str:
    """The interpreter to run pip with: `find_python()` (inside QGIS ``sys.executable`` is
    usually the QGIS binary itself, not a Python)."""
    return find_python()


def _manual_python() -> str:
    return "python" if os.name == "nt" else "python{}.{}".format(*sys.version_info[:2])


def pip_command(
    folder: str | os.PathLike,
    requirements: Sequence[str],
    constraints_file: str | os.PathLike,
    python: str | None = None,
) -> list[str]:
    """The pip command line: binary wheels only, into `folder`, constrained by
    `constraints_file`, never upgrading anything not needed. `python`: the interpreter
    (default `find_python()`, which is not ``sys.executable`` inside QGIS). Without one proved
    to be QGIS's, raises `PythonNotFound` whose message ends with the command to run by hand
    (also in its `command`)."""
    args = [
        "-m",
        "pip",
        "install",
        "--target",
        str(folder),
        "--only-binary",
        ":all:",
        "--no-warn-script-location",
        "--upgrade-strategy",
        "only-if-needed",
        "-c",
        str(constraints_file),
        *requirements,
    ]
    if python is None:
        try:
            python = find_python()
        except PythonNotFound as e:
            manual = [_manual_python(), *args]
            shown = subprocess.list2cmdline(manual) if os.name == "nt" else shlex.join(manual)
            raise PythonNotFound(
                f"{e} Install the packages by hand in a terminal, with {manual[0]} standing "
                f"for QGIS's own Python {sys.version_info[0]}.{sys.version_info[1]}: {shown}",
                manual,
            ) from None
    return [python, *args]


def gpu_wanted() -> bool:
    """Whether to install onnxruntime-gpu: the GeoBridge settings prefer CUDA or TensorRT and
    an NVIDIA driver is present (nvidia-smi on PATH)."""
    try:
        from . import settings

        names = [n.lower() for n in settings.provider_names()]
    except Exception:  # no QGIS settings (headless use): the default order
        names = ["tensorrt", "cuda", "cpu"]
    wants = any(n in ("cuda", "gpu", "tensorrt", "trt") or "cuda" in n for n in names)
    return wants and shutil.which("nvidia-smi") is not None


def plan(folder: str | os.PathLike | None = None) -> tuple[list[str], list[str], str]:
    """(missing pip names, pinned requirements, constraints text) for this host."""
    absent = missing()
    host = host_packages(exclude_folder=private_folder(folder))
    numpy = numpy_version(host) or "2"
    reqs = requirements_for(numpy, gpu_wanted(), absent) if absent else []
    return absent, reqs, constraints_text(host, reqs)


def require_for_processing(folder: str | os.PathLike | None = None) -> None:
    """For Processing algorithms: activate the private folder, then raise a
    QgsProcessingException naming what is still missing (no dialog: they may run headless)."""
    activate(folder)
    absent = missing()
    if absent:
        from qgis.core import QgsProcessingException

        raise QgsProcessingException(
            "GeoBridge needs Python packages that this QGIS does not have: "
            + ", ".join(absent)
            + ". Open the GeoBridge dock (Plugins > GeoBridge) and click Locate to install "
            "them, then run this algorithm again."
        )
