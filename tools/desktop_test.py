"""`make test-desktop`: the plugin in the real QGIS desktop, used as a person uses it.

Starts the `qgis` binary under Xvfb on a fresh profile, with the plugin unzipped from the zip
`make package` builds and its packages in the profile's private folder, filled by the plugin's
own installer plan (tools/qgis_profile.py). tools/desktop_steps.py, QGIS's PYQGIS_STARTUP
script, then opens the dock from the toolbar, chooses a demo photo, locates it, exports the
results, builds an index of a small raster with the dock's button, locates with that index and
quits QGIS. A screenshot of each step lands in out/desktop/. A second session does the same
up to Locate on the profile and demo project `make qgis` prepares (out/desktop/make-qgis/).

Fails on: QGIS ending by a signal or a non-zero exit code, a Python error or a critical message
in QGIS's log or on its stderr, a step that fails or never runs. The last line reads like
pytest's ("16 passed, 1 failed in 83.2s"); the exit code is 1 when anything failed.

Diagnosis: `--pythonpath DIR` puts DIR in front of QGIS's own packages (what `make qgis` used to
do with the whole venv, see docs/DESKTOP.md); `--steps open,photo` runs only those.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import qgis_profile  # noqa: E402

OUT = ROOT / "out" / "desktop"
PROFILE = "geobridge-desktop"
SCREEN = (1600, 1000)
PHOTO = ROOT / "resources" / "demo" / "world" / "drone" / "drone_036.jpg"
# 500 m x 500 m of the demo satellite image around drone_036's GPS position (pixel window).
SMALL_WINDOW = (434, 555, 1000, 1000)
STEPS = ["open", "photo", "locate", "export", "build", "locate2", "build_approx", "locate3"]
# QGIS's own complaints on any Debian machine without GRASS and SAGA: not the plugin's.
IGNORED = re.compile(r"(GRASS|SAGA) was not found or is not correctly installed")
# QGIS runs this in its shared __main__ namespace: it only imports the steps as a module.
STARTUP = """import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("geobridge_desktop_steps", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.main()
"""
# QGIS's stderr: what only a broken process prints.
STDERR_ERRORS = re.compile(
    r"Traceback \(most recent call last\)|Fatal Python error|terminate called|munmap_chunk|"
    r"double free|Segmentation fault|std::bad_alloc|corrupted|Aborted"
)


def log(text: str) -> None:
    print(f"desktop: {text}", file=sys.stderr, flush=True)


def small_raster() -> Path:
    """A 1000 x 1000 px crop of the demo satellite image (145 chips): the raster the test
    indexes through the dock."""
    target = qgis_profile.CACHE / "small-raster.tif"
    source = qgis_profile.DEMO_WORLD / "satellite.tif"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    x, y, w, h = SMALL_WINDOW
    code = (
        "import sys; from osgeo import gdal; gdal.UseExceptions(); "
        f"gdal.Translate(sys.argv[2], sys.argv[1], srcWin=[{x}, {y}, {w}, {h}], "
        "creationOptions=['TILED=YES', 'COMPRESS=DEFLATE'])"
    )
    subprocess.run(
        [qgis_profile.HOST_PYTHON, "-c", code, str(source), str(target)],
        env=qgis_profile.host_env(),
        check=True,
    )
    return target


class Xvfb:
    """A virtual screen for QGIS (CI has none); `display` is its DISPLAY."""

    def __init__(self, size: tuple[int, int]):
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write),
                "-screen",
                "0",
                f"{size[0]}x{size[1]}x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            raise SystemExit("desktop: Xvfb did not start (is the xvfb package installed?)")
        self.display = f":{number}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_qgis(
    qgis_args: list[str], out: Path, env: dict, timeout: float
) -> tuple[int | None, float]:
    """Start QGIS and wait for it; (exit code or None on timeout, seconds)."""
    cmd = ["qgis", "--noversioncheck", "--nologo", *qgis_args]
    start = time.monotonic()
    with open(out / "qgis-stderr.log", "wb") as err:
        proc = subprocess.Popen(
            cmd, env=env, stdout=err, stderr=subprocess.STDOUT, cwd=out, start_new_session=True
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, time.monotonic() - start


def describe_exit(code: int | None) -> str:
    if code is None:
        return "killed: QGIS did not quit in time"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def log_errors(messages: Path, stderr: Path) -> list[str]:
    """Python errors and critical messages of QGIS's message log, and crash traces on its
    stderr."""
    found = []
    if messages.is_file():
        for line in messages.read_text(encoding="utf-8").splitlines():
            m = json.loads(line)
            # Qgis.Critical is 2; Python errors of plugins and slots come under "Python error".
            if IGNORED.search(m["message"]):
                continue
            if m["level"] >= 2 or m["tag"] == "Python error" or "Traceback" in m["message"]:
                found.append(f"[{m['tag']}] {m['message'].strip()[:2000]}")
    if stderr.is_file():
        text = stderr.read_text(encoding="utf-8", errors="replace")
        for match in STDERR_ERRORS.finditer(text):
            start = text.rfind("\n", 0, max(0, match.start() - 600)) + 1
            found.append("stderr: " + text[start : match.end() + 1500].strip())
            break
    return found


def run_session(
    name: str,
    config: dict,
    qgis_args: list[str],
    display: str,
    pythonpath: list[str],
    timeout: float,
) -> list[tuple[str, bool, str, float]]:
    """One QGIS run driven by desktop_steps.py; (test name, ok, detail, seconds) per check."""
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    startup = out / "startup.py"
    startup.write_text(STARTUP.format(path=str(ROOT / "tools" / "desktop_steps.py")))
    (out / "xdg-runtime").mkdir(mode=0o700, exist_ok=True)
    env = qgis_profile.host_env(pythonpath)
    env.update(
        {
            "DISPLAY": display,
            "PYQGIS_STARTUP": str(startup),
            "GEOBRIDGE_DESKTOP_CONFIG": str(out / "config.json"),
            "PYTHONFAULTHANDLER": "1",  # a crash's Python stack on stderr
            "XDG_RUNTIME_DIR": str(out / "xdg-runtime"),
        }
    )
    log(f"{name}: starting QGIS on {display}")
    code, seconds = run_qgis(qgis_args, out, env, timeout)
    results = {}
    path = Path(config["results"])
    for line in path.read_text().splitlines() if path.is_file() else []:
        r = json.loads(line)
        results[r["step"]] = r
    outcome = []
    for step in ["start", *config["steps"], "close"]:
        r = results.get(step) or {"ok": False, "detail": "never reached (QGIS ended)", "seconds": 0}
        if r["ok"] is None:
            r = {
                "ok": False,
                "detail": "QGIS ended during this step (see ::exit, ::log)",
                "seconds": 0,
            }
        outcome.append((f"{name}::{step}", r["ok"], r["detail"], r["seconds"]))
    outcome.append((f"{name}::exit", code == 0, describe_exit(code), round(seconds, 1)))
    errors = log_errors(Path(config["messages"]), out / "qgis-stderr.log")
    outcome.append((f"{name}::log", not errors, "\n".join(errors), 0))
    return outcome


def session_config(out: Path, steps: list[str], **paths: object) -> dict:
    return {
        "out": str(out),
        "results": str(out / "results.jsonl"),
        "messages": str(out / "qgis-messages.jsonl"),
        "steps": steps,
        "screen": list(SCREEN),
        "photo": str(PHOTO),
        "bundle": str(qgis_profile.DEMO_BUNDLE),
        "locate_timeout": 120,
        "build_timeout": 180,
        **{k: str(v) if isinstance(v, Path) else v for k, v in paths.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"the installer route's, comma-separated, from {','.join(STEPS)} (default: all)",
    )
    ap.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        help="diagnosis only: a folder put on QGIS's PYTHONPATH",
    )
    ap.add_argument(
        "--no-make-qgis", action="store_true", help="skip the `make qgis` route's session"
    )
    ap.add_argument("--timeout", type=float, default=300, help="seconds each QGIS run may take")
    args = ap.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"unknown steps: {', '.join(unknown)}")
    for tool in ("qgis", "Xvfb", "import", "xdotool"):
        if shutil.which(tool) is None:
            print(
                f"desktop: {tool} not found: run `make setup` (Debian packages qgis, xvfb, "
                "xdotool, imagemagick)",
                file=sys.stderr,
            )
            return 2

    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    deps = qgis_profile.deps_folder(log)
    index = qgis_profile.demo_index(deps, log)
    small = small_raster()
    # The installer route: the plugin from its zip, as the plugin repository serves it.
    zip_path = qgis_profile.plugin_zip(OUT / "dist")
    profiles = OUT / "profiles"
    qgis_profile.make_profile(
        profiles,
        PROFILE,
        deps,
        {"geobridge/index_cache_folder": str(OUT / "indexes")},
        plugin_zip_path=zip_path,
    )
    sessions = [
        (
            "installer",
            session_config(
                OUT,
                steps,
                index=index,
                satellite=qgis_profile.DEMO_WORLD / "satellite.tif",
                small_raster=small,
                export=OUT / "exported-results.gpkg",
            ),
            ["--profiles-path", str(profiles), "--profile", PROFILE],
        )
    ]
    if not args.no_make_qgis:
        # The README's `make qgis` route: its profile and demo project, the dock pre-set.
        from tools import qgis_demo

        project = qgis_demo.prepare(index)
        demo_steps = [s for s in ("open", "photo", "locate") if s in steps]
        sessions.append(
            (
                "make-qgis",
                session_config(OUT / "make-qgis", demo_steps, index=index, preset=True),
                [
                    "--profiles-path",
                    str(qgis_demo.OUT),
                    "--profile",
                    qgis_demo.PROFILE,
                    str(project),
                ],
            )
        )
    log(f"prepared in {time.monotonic() - started:.1f} s")
    outcome = []
    qgis_seconds = 0.0
    screen = Xvfb(SCREEN)
    try:
        for name, config, qgis_args in sessions:
            outcome += run_session(
                name, config, qgis_args, screen.display, args.pythonpath, args.timeout
            )
            qgis_seconds += outcome[-2][3]
    finally:
        screen.close()

    for name, ok, detail, secs in outcome:
        print(f"tools/desktop_test.py::{name} {'PASSED' if ok else 'FAILED'} ({secs:.1f} s)")
        if not ok and detail:
            print("    " + detail.replace("\n", "\n    "))
    shots = sorted([*OUT.glob("*.png"), *OUT.glob("*/*.png")])
    print(f"screenshots: {', '.join(str(s.relative_to(ROOT)) for s in shots)}")
    failed = sum(1 for o in outcome if not o[1])
    passed = len(outcome) - failed
    total = time.monotonic() - started
    summary = f"{passed} passed" + (f", {failed} failed" if failed else "")
    print(f"{'=' * 20} {summary} in {total:.1f}s (QGIS {qgis_seconds:.1f}s) {'=' * 20}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
