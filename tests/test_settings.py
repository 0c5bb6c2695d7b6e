"""The analyst's provider and batch-size settings reach the encoders the tasks use."""

from __future__ import annotations

import pytest
from qgis.core import QgsSettings

from geobridge_qgis import settings, tasks
from geobridge_qgis.core.bundle import Bundle


@pytest.fixture()
def clean_settings():
    s = QgsSettings()
    saved = {k: s.value(k) for k in (settings.PROVIDERS, settings.BATCH_SIZE)}
    yield
    for k, v in saved.items():
        if v is None:
            s.remove(k)
        else:
            s.setValue(k, v)
    tasks.shutdown()


def test_settings_choose_providers_and_batch(tiny_bundle, clean_settings):
    bundle = Bundle.load(tiny_bundle)
    settings.set_providers("cpu")
    QgsSettings().setValue(settings.BATCH_SIZE, 3)
    enc = tasks.encoders_for(bundle)
    assert enc.providers == ["CPUExecutionProvider"] and enc.batch_size == 3
    QgsSettings().setValue(settings.BATCH_SIZE, 5)
    assert tasks.encoders_for(bundle).batch_size == 5  # a new setting, new encoders
    assert tasks.encoders_for(bundle, ["CPUExecutionProvider"]) is tasks.encoders_for(bundle)
