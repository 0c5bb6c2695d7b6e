"""GeoBridge's page in QGIS's Options dialog: every setting of settings.py, shown with its
current value, written through settings.py's setters, bad values refused and nothing written."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import ROOT
from qgis.core import Qgis, QgsSettings
from qgis.gui import QgsOptionsWidgetFactory

from geobridge_qgis import settings
from geobridge_qgis.gui import options as page_module
from geobridge_qgis.gui.options import OPTIONS, GeoBridgeOptionsFactory, GeoBridgeOptionsPage

# Every setting an analyst sets; what the dock remembers by itself (under geobridge/dock/: the
# last bundle, index, photo folder and query options) is state, not a setting, and has no row.
KEYS = sorted(
    value
    for name, value in vars(settings).items()
    if name.isupper() and name not in ("PREFIX", "DOCK") and isinstance(value, str)
    and value.startswith(settings.PREFIX) and not value.startswith(settings.DOCK)
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_settings():
    s = QgsSettings()
    saved = {k: s.value(k) for k in KEYS}
    for k in KEYS:
        s.remove(k)
    yield
    for k, v in saved.items():
        s.remove(k) if v is None else s.setValue(k, v)


def page_with_spies(calls: list) -> GeoBridgeOptionsPage:
    def spy(option):
        def setter(value):
            calls.append((option.key, value))
            option.setter(value)

        return dataclasses.replace(option, setter=setter)

    return GeoBridgeOptionsPage(None, [spy(o) for o in OPTIONS])


def type_into(page: GeoBridgeOptionsPage, key: str, text: str) -> None:
    field = page.fields[key]
    field.setFilePath(text) if hasattr(field, "setFilePath") else field.setText(text)


def test_every_setting_has_a_row_read_by_the_code_it_names():
    assert sorted(o.key for o in OPTIONS) == KEYS  # a new key in settings.py needs its row
    sources = {
        p: p.read_text()
        for p in (ROOT / "geobridge_qgis").rglob("*.py")
        if p.name not in ("settings.py", "options.py")
    }
    for option in OPTIONS:
        pattern = re.compile(rf"settings\.{option.getter.__name__}\(")  # also geobridge_settings.
        readers = [p.relative_to(ROOT).as_posix() for p, text in sources.items()
                   if pattern.search(text)]  # fmt: skip
        assert readers, f"{option.key}: no code reads it"


def test_page_shows_the_current_values(tmp_path):
    settings.set_bundles_folder(str(tmp_path / "bundles"))
    settings.set_index_cache_folder(str(tmp_path / "cache"))
    settings.set_providers("cuda,cpu")
    settings.set_batch_size(7)
    settings.set_chip_sizes((80, 120.5))
    settings.set_basemap_url("https://tiles.example/{z}/{x}/{y}.png")
    settings.set_basemap_name("Example tiles")
    settings.set_download_url("https://example.invalid/demo-{version}.zip")
    page = GeoBridgeOptionsPage()
    shown = {key: page.fields[key] for key in KEYS}
    text = {k: (f.filePath() if hasattr(f, "filePath") else f.text()) for k, f in shown.items()}
    assert text == {
        settings.BUNDLES_FOLDER: str(tmp_path / "bundles"),
        settings.INDEX_CACHE_FOLDER: str(tmp_path / "cache"),
        settings.PROVIDERS: "cuda,cpu",
        settings.BATCH_SIZE: "7",
        settings.EXACT_MAX_CHIPS: str(settings.exact_max_chips()),
        settings.CHIP_SIZES: "80,120.5",
        settings.BASEMAP_URL: "https://tiles.example/{z}/{x}/{y}.png",
        settings.BASEMAP_NAME: "Example tiles",
        settings.DOWNLOAD_URL: f"https://example.invalid/demo-{settings.plugin_version()}.zip",
    }
    assert "Processing" in page.fields[settings.CHIP_SIZES].toolTip()  # says who reads it


def test_apply_writes_through_the_setters(tmp_path):
    calls: list = []
    page = page_with_spies(calls)
    page.apply()  # nothing edited: nothing written, defaults stay defaults
    assert calls == [] and not any(QgsSettings().contains(k) for k in KEYS)
    type_into(page, settings.BATCH_SIZE, "12")
    type_into(page, settings.CHIP_SIZES, "60, 90")
    type_into(page, settings.PROVIDERS, "cpu")
    type_into(page, settings.INDEX_CACHE_FOLDER, str(tmp_path))
    type_into(page, settings.DOWNLOAD_URL, "http://127.0.0.1:9/demo.zip")
    assert page.isValid()
    page.apply()
    assert sorted(calls) == sorted([
        (settings.BATCH_SIZE, 12),
        (settings.CHIP_SIZES, (60.0, 90.0)),
        (settings.PROVIDERS, ["cpu"]),
        (settings.INDEX_CACHE_FOLDER, str(tmp_path)),
        (settings.DOWNLOAD_URL, "http://127.0.0.1:9/demo.zip"),
    ])  # fmt: skip
    assert settings.batch_size() == 12 and settings.chip_sizes() == (60.0, 90.0)
    assert settings.providers() == ["CPUExecutionProvider"]
    assert settings.index_cache_folder() == str(tmp_path)
    assert settings.download_url() == "http://127.0.0.1:9/demo.zip"
    assert page.message.text() == ""
    type_into(page, settings.BATCH_SIZE, "")  # emptied: back to the default
    page.apply()
    assert not QgsSettings().contains(settings.BATCH_SIZE)
    assert settings.batch_size() == settings.DEFAULT_BATCH_SIZE


@pytest.mark.parametrize(
    ("key", "text", "says"),
    [
        (settings.BATCH_SIZE, "abc", "Batch size: 'abc' is not a whole number"),
        (settings.BATCH_SIZE, "0", "Batch size: '0': must be at least 1"),
        (settings.CHIP_SIZES, "-1", "Chip sizes (m): '-1': sizes must be positive"),
        (settings.CHIP_SIZES, "100,abc", "is not a list of numbers"),
        (settings.BASEMAP_URL, "https://tiles.example/{z}.png", "lacks {x}, {y} or {z}"),
        (settings.DOWNLOAD_URL, "ftp://example/demo.zip", "is not an http:// or https:// URL"),
        (settings.PROVIDERS, " , ", "name at least one"),
    ],
)
def test_an_invalid_value_is_refused_and_nothing_written(qgis_iface, monkeypatch, key, text, says):
    import qgis.utils

    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    calls: list = []
    page = page_with_spies(calls)
    type_into(page, settings.BASEMAP_NAME, "valid, but not written with an invalid one")
    type_into(page, key, text)
    assert not page.isValid() and says in page.message.text()
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    page.apply()
    assert calls == [] and not any(QgsSettings().contains(k) for k in KEYS)
    assert page.message.text().startswith("GeoBridge settings not saved: ")
    assert says in page.message.text()
    # QGIS 3.22 closes its dialog after apply(): the message bar says it too
    (warning,) = bar.get_messages(Qgis.MessageLevel.Warning)
    assert says in warning


def test_a_setter_refusing_undoes_what_was_written_before_it(monkeypatch):
    def refuse(_value):
        raise ValueError("refused by the setter")

    options = [dataclasses.replace(o, setter=refuse) if o.key == settings.DOWNLOAD_URL else o
               for o in OPTIONS]  # fmt: skip
    settings.set_batch_size(5)
    page = GeoBridgeOptionsPage(None, options)
    type_into(page, settings.BATCH_SIZE, "9")
    type_into(page, settings.BASEMAP_NAME, "new name")
    type_into(page, settings.DOWNLOAD_URL, "https://example.invalid/x.zip")
    page.apply()
    assert "Demo download URL: refused by the setter" in page.message.text()
    assert settings.batch_size() == 5 and not QgsSettings().contains(settings.BASEMAP_NAME)


def test_factory_and_plugin_registration(qgis_iface):
    factory = GeoBridgeOptionsFactory()
    assert isinstance(factory, QgsOptionsWidgetFactory) and factory.title() == "GeoBridge"
    assert not factory.icon().isNull()
    assert isinstance(factory.createWidget(None), page_module.GeoBridgeOptionsPage)

    from geobridge_qgis.plugin import GeoBridgePlugin

    register = qgis_iface.registerOptionsWidgetFactory
    unregister = qgis_iface.unregisterOptionsWidgetFactory
    register.reset_mock()
    unregister.reset_mock()
    plugin = GeoBridgePlugin(qgis_iface)
    plugin.initGui()
    try:
        (registered,), _ = register.call_args
        assert isinstance(registered, GeoBridgeOptionsFactory)
    finally:
        plugin.unload()
    unregister.assert_called_once_with(registered)


def test_chip_sizes_setting_is_build_index_default():
    from geobridge_qgis.processing.build_index import BuildIndexAlgorithm

    def default() -> str:
        alg = BuildIndexAlgorithm().createInstance()
        alg.initAlgorithm({})
        return alg.parameterDefinition("CHIP_SIZES").defaultValue()

    assert default() == "100,150"
    settings.set_chip_sizes((75, 112.5))
    assert default() == "75,112.5"
