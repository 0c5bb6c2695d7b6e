"""The one version number: metadata.txt's (beside the plugin package in the plugin zip, at the
repository root in a checkout). The plugin, the exporter (so bundles record it) and the
synthetic world all read it from here."""

from pathlib import Path


def _version() -> str:
    package = Path(__file__).resolve().parents[1]
    for path in (package / "metadata.txt", package.parent / "metadata.txt"):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("version="):
                    return line.split("=", 1)[1].strip()
    return "0+unknown"


__version__ = _version()
