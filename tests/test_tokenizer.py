"""The bundle's tokenizer gives open_clip's ids exactly."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from geobridge_qgis.core.text import EOT_ID, SOT_ID, TextTokenizer, clean_text
from model_export.tokenizer import build_clip_tokenizer, vocab_file

SENTENCES = [
    "A red-roofed farmhouse, two silos and a muddy track!",
    "Parking lot with 37 cars; 2 trucks... (maybe 3?)",
    "Café naïve résumé à la façade — Zürich",
    "drone 🚁 over 🌳🌳 trees and a 🏠",
    "東京の公園 near 서울 and Пекин",
    "“curly quotes” and ‘single ones’ aren't straight",
    "fish &amp; chips &lt;b&gt;bold&lt;/b&gt; &amp;amp; double",
    "  many   spaces\n\ttabs and\r\nnewlines  ",
    "don't we'll I'm they've she'd it's",
    "UPPER lower MiXeD 3.14159 1,000,000 km² 12°C",
    "mojibake: cafÃ©",
    "",
    " ".join(f"word{i}" if i % 7 else "roundabout" for i in range(200)),
]


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    # Import open_clip's tokenizer module alone: the package __init__ needs torchvision.
    spec = importlib.util.spec_from_file_location("oc_tok", vocab_file().parent / "tokenizer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SimpleTokenizer()


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> TextTokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    build_clip_tokenizer().save(str(path))
    return TextTokenizer(path)


def test_ids_match_open_clip(ours, open_clip_tokenizer):
    got = ours(SENTENCES)
    want = open_clip_tokenizer(SENTENCES).numpy()
    assert got.dtype == np.int64 and got.shape == (len(SENTENCES), 77)
    for text, g, w in zip(SENTENCES, got, want, strict=True):
        assert g.tolist() == w.tolist(), text


def test_long_text_is_cut_at_77_with_end_token(ours):
    ids = ours(SENTENCES[-1])[0]
    assert ids[0] == SOT_ID and ids[-1] == EOT_ID and (ids != 0).all()


def test_cleaning_is_clip_cleaning():
    assert clean_text("  Fish &amp;amp; Chips\n\tNOW  ") == "fish & chips now"
