"""The codebase's shape, read from the source with `ast`: who may import whom, and module size.

Dependency rule (the folder names tell the data's path):

- the engine, `geobridge_qgis/core`, imports neither QGIS nor any other package of this
  project (not even the plugin around it);
- the exporter (`model_export`) and the synthetic world (`synthworld`) import only the engine;
- the lab (`geolab`) may import all three; none of them imports the lab.

No module is over 500 lines unless the first lines of its docstring say why ("Over 500 lines
because ...").
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PROJECT = ("geobridge_qgis", "model_export", "synthworld", "geolab", "tools")
QGIS = ("qgis", "processing")  # QGIS's own Python packages
ENGINE = "geobridge_qgis.core"
# Folder -> the project packages its modules may import (their own package included).
ALLOWED = {
    "geobridge_qgis/core": (ENGINE,),
    "model_export": (ENGINE, "model_export"),
    "synthworld": (ENGINE, "synthworld"),
    "geolab": (ENGINE, "model_export", "synthworld", "geolab"),
}
# Deprecated command aliases (`python -m model_export synth|train|ablate|eval`), kept for one
# release: the only modules allowed across the rule.
ALIASES = {"model_export/__main__.py": ("synthworld", "geolab")}
MAX_LINES = 500
LONG_REASON = re.compile(r"\bover 500 lines\b", re.IGNORECASE)
SKIP_DIRS = {".git", ".venv", "out", "dist", "build", "__pycache__", "shared"}


def python_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not any(p in SKIP_DIRS or p.startswith(".") for p in parts[:-1]):
            files.append(path)
    return files


def imported_modules(source: str, module_path: str) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in a module's source, relative imports
    resolved against `module_path` (e.g. "geobridge_qgis/core/refine.py"); imports inside
    functions and `if TYPE_CHECKING:` blocks count too."""
    package = list(Path(module_path).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                base += node.module.split(".") if node.module else []
            else:
                base = node.module.split(".")
            if node.module:
                out.append((".".join(base), node.lineno))
            else:  # from . import a, b: submodules of the package
                out += [(".".join([*base, alias.name]), node.lineno) for alias in node.names]
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module_path: str, source: str) -> list[str]:
    """The imports of one module that break the dependency rule."""
    area = next((a for a in ALLOWED if _within(module_path.replace("/", "."), a.replace("/", "."))),
                None)  # fmt: skip
    if area is None:
        return []
    allowed = ALLOWED[area] + ALIASES.get(module_path, ())
    bad = []
    for name, line in imported_modules(source, module_path):
        top = name.split(".")[0]
        if top in QGIS:
            bad.append(f"{module_path}:{line} imports {name} (QGIS)")
        elif top in PROJECT and not any(_within(name, a) for a in allowed):
            bad.append(f"{module_path}:{line} imports {name}")
    return bad


def test_the_checker_sees_what_it_must():
    """The rule's reader on hand-written sources: relative, nested and aliased imports."""
    lazy = "def f():\n    from model_export import model\n"
    assert violations("geobridge_qgis/core/x.py", lazy) == [
        "geobridge_qgis/core/x.py:2 imports model_export"
    ]
    assert violations("geobridge_qgis/core/x.py", "from ..tasks import LocateTask\n") == [
        "geobridge_qgis/core/x.py:1 imports geobridge_qgis.tasks"
    ]
    assert violations("geobridge_qgis/core/x.py", "from .. import settings\n") == [
        "geobridge_qgis/core/x.py:1 imports geobridge_qgis.settings"
    ]
    assert violations("geobridge_qgis/core/x.py", "import qgis.core as q\n") == [
        "geobridge_qgis/core/x.py:1 imports qgis.core (QGIS)"
    ]
    assert violations("geobridge_qgis/core/x.py", "from . import tiling\nimport numpy\n") == []
    assert violations("synthworld/render/x.py", "from ..world import World\n") == []
    assert violations("synthworld/x.py", "from geolab.train import train\n") != []
    assert violations("model_export/x.py", "from synthworld import world\n") != []
    assert violations("model_export/__main__.py", "from synthworld import world\n") == []
    assert violations("geolab/x.py", "import model_export.export, synthworld.world\n") == []
    assert violations("geolab/x.py", "from geobridge_qgis.gui import dock\n") != []


def test_dependency_rule():
    seen = dict.fromkeys(ALLOWED, 0)
    bad = []
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        for area in ALLOWED:
            if rel.startswith(area + "/"):
                seen[area] += 1
        bad += violations(rel, path.read_text(encoding="utf-8"))
    assert all(seen.values()), seen  # every package was read
    assert not bad, "imports across the dependency rule:\n" + "\n".join(bad)


def long_modules() -> list[tuple[str, int]]:
    """(path, lines) of the modules over MAX_LINES whose docstring does not say why."""
    out = []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        n = text.count("\n") + (not text.endswith("\n") and bool(text))
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not LONG_REASON.search("\n".join(doc.splitlines()[:5])):
            out.append((path.relative_to(ROOT).as_posix(), n))
    return out


def test_modules_are_short_or_say_why():
    found = long_modules()
    listing = "\n".join(f"  {p}: {n} lines" for p, n in found)
    assert not found, (
        f"modules over {MAX_LINES} lines without 'Over {MAX_LINES} lines because ...' in the "
        f"first lines of their docstring (split them, or say why):\n{listing}"
    )


def test_the_exporter_holds_only_the_export_job():
    """model_export is checkpoint -> verified ONNX bundle (and a fp32 bundle's weights read
    back, its inverse): its modules and about 1,500 lines."""
    modules = sorted(p.name for p in (ROOT / "model_export").glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "bench_export.py", "checkpoint.py",
                       "export.py", "model.py", "recover.py", "tokenizer.py",
                       "verify.py"]  # fmt: skip
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "model_export").glob("*.py"))
    assert lines < 1500, lines
