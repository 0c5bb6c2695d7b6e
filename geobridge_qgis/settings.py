"""The plugin's QgsSettings, with typed getters, setters and defaults.

Keys (all under "geobridge/", in the user's QGIS profile):

- ``geobridge/bundles_folder`` (str, default ""): where model bundles are; the dock's bundle
  picker starts there when no bundle was chosen yet.
- ``geobridge/index_cache_folder`` (str, default ""): where indexes are kept; "" means the
  QGIS profile's geobridge/indexes (the dock names one folder per layer, region, grid and
  model there, so that a build started again resumes).
- ``geobridge/providers`` (str, default "tensorrt,cuda,cpu"): onnxruntime execution
  providers in order of preference, comma-separated short names (tensorrt, cuda, cpu, or a
  full name such as "CUDAExecutionProvider"); `providers()` gives onnxruntime's names.
- ``geobridge/batch_size`` (int, default 32, at least 1): chips encoded per batch.
- ``geobridge/chip_sizes`` (str, default "100,150"): default chip sizes in metres when
  building an index, comma-separated; `chip_sizes()` gives floats.
- ``geobridge/basemap_url`` (str, default Esri World Imagery): the XYZ tile URL of the
  "Add satellite basemap" action, with {x}, {y}, {z}.
- ``geobridge/basemap_name`` (str, default "Esri World Imagery"): that layer's name.
- ``geobridge/download_url`` (str, default the demo zip of this version's GitHub release):
  where the dock's "Get the demo model and world" downloads from; "{version}" in it is the
  plugin's version. Its checksum is read from the same URL with ".sha256" appended.

A value that cannot be read (e.g. "abc" for the batch size) gives the default.
"""

from __future__ import annotations

from collections.abc import Sequence

from qgis.core import QgsSettings

PREFIX = "geobridge/"
BUNDLES_FOLDER = PREFIX + "bundles_folder"
INDEX_CACHE_FOLDER = PREFIX + "index_cache_folder"
PROVIDERS = PREFIX + "providers"
BATCH_SIZE = PREFIX + "batch_size"
CHIP_SIZES = PREFIX + "chip_sizes"
BASEMAP_URL = PREFIX + "basemap_url"
BASEMAP_NAME = PREFIX + "basemap_name"
DOWNLOAD_URL = PREFIX + "download_url"

DEFAULT_PROVIDERS = "tensorrt,cuda,cpu"
DEFAULT_BATCH_SIZE = 32
DEFAULT_CHIP_SIZES = (100.0, 150.0)
DEFAULT_BASEMAP_URL = (
    "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
)
DEFAULT_BASEMAP_NAME = "Esri World Imagery"
# The release asset `make demo-release` builds; "{version}" is metadata.txt's version.
DEFAULT_DOWNLOAD_URL = (
    "https://github.com/geobridge-qgis/geobridge-qgis/releases/download/"
    "v{version}/geobridge-demo.zip"
)

_PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def _str(key: str, default: str) -> str:
    value = QgsSettings().value(key, default)
    return value.strip() if isinstance(value, str) and value.strip() else default


def _set(key: str, value: object) -> None:
    QgsSettings().setValue(key, value)


def bundles_folder() -> str:
    return _str(BUNDLES_FOLDER, "")


def set_bundles_folder(path: str) -> None:
    _set(BUNDLES_FOLDER, str(path))


def index_cache_folder() -> str:
    return _str(INDEX_CACHE_FOLDER, "")


def set_index_cache_folder(path: str) -> None:
    _set(INDEX_CACHE_FOLDER, str(path))


def provider_names() -> list[str]:
    """The preferred providers as the user wrote them (short names), e.g. ["cuda", "cpu"]."""
    names = [p.strip() for p in _str(PROVIDERS, DEFAULT_PROVIDERS).split(",")]
    return [p for p in names if p] or DEFAULT_PROVIDERS.split(",")


def providers() -> list[str]:
    """onnxruntime's names of the preferred providers, in order (unknown names kept as is)."""
    return [_PROVIDER_NAMES.get(p.lower(), p) for p in provider_names()]


def set_providers(names: Sequence[str] | str) -> None:
    text = names if isinstance(names, str) else ",".join(names)
    _set(PROVIDERS, text)


def batch_size() -> int:
    value = QgsSettings().value(BATCH_SIZE, DEFAULT_BATCH_SIZE)
    try:
        n = int(value)
    except (TypeError, ValueError):
        return DEFAULT_BATCH_SIZE
    return n if n >= 1 else DEFAULT_BATCH_SIZE


def set_batch_size(n: int) -> None:
    if int(n) < 1:
        raise ValueError(f"batch size must be at least 1, got {n}")
    _set(BATCH_SIZE, int(n))


def chip_sizes() -> tuple[float, ...]:
    text = _str(CHIP_SIZES, "")
    try:
        sizes = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        return DEFAULT_CHIP_SIZES
    return sizes if sizes and all(s > 0 for s in sizes) else DEFAULT_CHIP_SIZES


def set_chip_sizes(sizes: Sequence[float]) -> None:
    if not sizes or any(float(s) <= 0 for s in sizes):
        raise ValueError(f"chip sizes must be positive, got {sizes}")
    _set(CHIP_SIZES, ",".join(f"{float(s):g}" for s in sizes))


def basemap_url() -> str:
    return _str(BASEMAP_URL, DEFAULT_BASEMAP_URL)


def basemap_name() -> str:
    return _str(BASEMAP_NAME, DEFAULT_BASEMAP_NAME)


def set_basemap_url(url: str) -> None:
    if not all(f"{{{c}}}" in url for c in "xyz"):
        raise ValueError(f"the basemap URL needs {{x}}, {{y}} and {{z}}, got {url!r}")
    _set(BASEMAP_URL, url.strip())


def set_basemap_name(name: str) -> None:
    _set(BASEMAP_NAME, str(name).strip())


def plugin_version() -> str:
    """metadata.txt's version ("0" where it cannot be read)."""
    import configparser

    from .paths import PLUGIN_DIR

    meta = configparser.ConfigParser()
    try:
        meta.read(PLUGIN_DIR / "metadata.txt", encoding="utf-8")
        return meta["general"]["version"].strip()
    except (KeyError, OSError, configparser.Error):
        return "0"


def download_url() -> str:
    """The demo zip's URL, with "{version}" replaced by the plugin's version."""
    return _str(DOWNLOAD_URL, DEFAULT_DOWNLOAD_URL).replace("{version}", plugin_version())


def set_download_url(url: str) -> None:
    url = str(url).strip()
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"the download URL must start with http:// or https://, got {url!r}")
    _set(DOWNLOAD_URL, url)
