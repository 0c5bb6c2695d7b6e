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

What the dock remembers between sessions (under "geobridge/dock/"; the Processing algorithms
start from the same bundle and index):

- ``geobridge/dock/bundle`` (str, default ""): the last model bundle folder; `default_bundle()`
  falls back to the demo bundle of a source checkout when that folder is there.
- ``geobridge/dock/index`` (str, default ""): the last index folder.
- ``geobridge/dock/photo_folder`` (str, default ""): where the last photo came from; the photo
  file dialog opens there.
- ``geobridge/dock/top_k`` (int, default `core.defaults.TOP_K`), ``geobridge/dock/rotate``,
  ``geobridge/dock/use_gps``, ``geobridge/dock/use_altitude``, ``geobridge/dock/use_heading``,
  ``geobridge/dock/rerank`` (bool, default true), ``geobridge/dock/gps_radius_m`` (int metres,
  default 0 = from the photo's EXIF): the query options last used (`dock_options()`).
- ``geobridge/dock/priors_expanded`` (bool, default false): whether the "Priors and
  re-ranking" group was open.

A value that cannot be read (e.g. "abc" for the batch size) gives the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsSettings

from .core import defaults
from .paths import DEMO_BUNDLE

PREFIX = "geobridge/"
BUNDLES_FOLDER = PREFIX + "bundles_folder"
INDEX_CACHE_FOLDER = PREFIX + "index_cache_folder"
PROVIDERS = PREFIX + "providers"
BATCH_SIZE = PREFIX + "batch_size"
CHIP_SIZES = PREFIX + "chip_sizes"
BASEMAP_URL = PREFIX + "basemap_url"
BASEMAP_NAME = PREFIX + "basemap_name"
DOWNLOAD_URL = PREFIX + "download_url"
EXACT_MAX_CHIPS = PREFIX + "exact_search_max_chips"

DOCK = PREFIX + "dock/"
LAST_BUNDLE = DOCK + "bundle"
LAST_INDEX = DOCK + "index"
PHOTO_FOLDER = DOCK + "photo_folder"
TOP_K = DOCK + "top_k"
ROTATE = DOCK + "rotate"
USE_GPS = DOCK + "use_gps"
USE_ALTITUDE = DOCK + "use_altitude"
USE_HEADING = DOCK + "use_heading"
RERANK = DOCK + "rerank"
GPS_RADIUS_M = DOCK + "gps_radius_m"
PRIORS_EXPANDED = DOCK + "priors_expanded"

DEFAULT_PROVIDERS = ",".join(defaults.PROVIDERS)
DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
DEFAULT_CHIP_SIZES = defaults.CHIP_SIZES
MAX_TOP_K = 100  # the dock's spin box; Processing allows more for batch work
MAX_GPS_RADIUS_M = 5000
DEFAULT_BASEMAP_URL = (
    "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
)
DEFAULT_BASEMAP_NAME = "Esri World Imagery"
# The release asset `make demo-release` builds; "{version}" is metadata.txt's version.
DEFAULT_DOWNLOAD_URL = (
    "https://github.com/geobridge-qgis/geobridge-qgis/releases/download/"
    "v{version}/geobridge-demo.zip"
)

_PROVIDER_NAMES = defaults.PROVIDER_NAMES


def _str(key: str, default: str) -> str:
    value = QgsSettings().value(key, default)
    return value.strip() if isinstance(value, str) and value.strip() else default


def _set(key: str, value: object) -> None:
    QgsSettings().setValue(key, value)


def _bool(key: str, default: bool) -> bool:
    value = QgsSettings().value(key, default)
    if isinstance(value, str):  # ini files hold "true" / "false"
        return {"true": True, "1": True, "false": False, "0": False}.get(value.lower(), default)
    return bool(value) if isinstance(value, (bool, int)) else default


def _int(key: str, default: int, lo: int, hi: int) -> int:
    try:
        n = int(QgsSettings().value(key, default))
    except (TypeError, ValueError):
        return default
    return n if lo <= n <= hi else default


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


def exact_max_chips() -> int:
    """Index builds make an exact index up to this many chips and an approximate (IVF,SQ8) one
    above: exact search over more chips than this is slower than an analyst should wait."""
    return _int(EXACT_MAX_CHIPS, defaults.EXACT_MAX_CHIPS, 1, 1 << 40)


def set_exact_max_chips(n: int) -> None:
    if int(n) < 1:
        raise ValueError(f"the exact-search limit must be at least 1 chip, got {n}")
    _set(EXACT_MAX_CHIPS, int(n))


def batch_size() -> int:
    return _int(BATCH_SIZE, DEFAULT_BATCH_SIZE, 1, 1 << 16)


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
    _set(CHIP_SIZES, chip_sizes_text(sizes))


def chip_sizes_text(sizes: Sequence[float] | None = None) -> str:
    """Chip sizes as the settings and the Processing parameter write them ("100,150"); the
    setting's when `sizes` is None."""
    return ",".join(f"{float(s):g}" for s in (chip_sizes() if sizes is None else sizes))


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


# ---------------------------------------------------------------- what the dock remembers


def last_bundle() -> str:
    return _str(LAST_BUNDLE, "")


def set_last_bundle(path: str) -> None:
    _set(LAST_BUNDLE, str(path))


def default_bundle() -> str:
    """The bundle the dock and the Processing algorithms start with: the last one used while
    it is still a bundle, else the demo bundle of a source checkout (the plugin zip has none),
    else "" (the user picks one)."""
    for candidate in (last_bundle(), str(DEMO_BUNDLE)):
        if candidate and (Path(candidate) / "manifest.json").is_file():
            return candidate
    return ""


def last_index() -> str:
    return _str(LAST_INDEX, "")


def set_last_index(path: str) -> None:
    _set(LAST_INDEX, str(path))


def default_index() -> str:
    """The last index used while it is still an index folder, else ""."""
    path = last_index()
    return path if path and (Path(path) / "index.json").is_file() else ""


def photo_folder() -> str:
    return _str(PHOTO_FOLDER, "")


def set_photo_folder(path: str) -> None:
    _set(PHOTO_FOLDER, str(path))


@dataclass
class DockOptions:
    """The query options of the dock that outlive a session."""

    top_k: int = defaults.TOP_K
    rotate: bool = True
    use_gps: bool = True
    use_altitude: bool = True
    use_heading: bool = True
    rerank: bool = defaults.RERANK
    gps_radius_m: int = 0  # 0: the photo's EXIF accuracy, else defaults.GPS_RADIUS_M


def dock_options() -> DockOptions:
    d = DockOptions()
    return DockOptions(
        top_k=_int(TOP_K, d.top_k, 1, MAX_TOP_K),
        rotate=_bool(ROTATE, d.rotate),
        use_gps=_bool(USE_GPS, d.use_gps),
        use_altitude=_bool(USE_ALTITUDE, d.use_altitude),
        use_heading=_bool(USE_HEADING, d.use_heading),
        rerank=_bool(RERANK, d.rerank),
        gps_radius_m=_int(GPS_RADIUS_M, d.gps_radius_m, 0, MAX_GPS_RADIUS_M),
    )


def set_dock_options(options: DockOptions) -> None:
    for key, value in (
        (TOP_K, int(options.top_k)),
        (ROTATE, bool(options.rotate)),
        (USE_GPS, bool(options.use_gps)),
        (USE_ALTITUDE, bool(options.use_altitude)),
        (USE_HEADING, bool(options.use_heading)),
        (RERANK, bool(options.rerank)),
        (GPS_RADIUS_M, int(options.gps_radius_m)),
    ):
        _set(key, value)


def priors_expanded() -> bool:
    return _bool(PRIORS_EXPANDED, False)


def set_priors_expanded(expanded: bool) -> None:
    _set(PRIORS_EXPANDED, bool(expanded))


def clear_dock() -> None:
    """Forget everything the dock remembers (tests start from a dock nobody used)."""
    QgsSettings().remove(DOCK.rstrip("/"))
