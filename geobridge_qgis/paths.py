"""Where the plugin finds its own files (the same in the repository and in an installed zip)."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
ICONS = PLUGIN_DIR / "resources" / "icons"
ICON = ICONS / "geobridge.svg"
DEMO_BUNDLE = PLUGIN_DIR / "resources" / "demo" / "bundle"
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.tif *.tiff *.webp *.bmp *.JPG *.JPEG *.PNG)"


def icon_path(name: str) -> Path:
    """An icon of resources/icons by its name, e.g. "region_polygon"."""
    return ICONS / f"{name}.svg"
