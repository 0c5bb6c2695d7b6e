"""Where the plugin finds its own files (the same in the repository and in an installed zip)."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
ICON = PLUGIN_DIR / "resources" / "icons" / "geobridge.svg"
DEMO_BUNDLE = PLUGIN_DIR / "resources" / "demo" / "bundle"
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.tif *.tiff *.webp *.bmp *.JPG *.JPEG *.PNG)"
