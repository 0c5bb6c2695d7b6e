"""Text queries: CLIP's cleaning and the bundle's tokenizer (`tokenizer.json`)."""

from __future__ import annotations

import html
from pathlib import Path

import ftfy
import numpy as np
from tokenizers import Tokenizer

from .errors import UserError

CONTEXT_LENGTH = 77
SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0


def clean_text(text: str) -> str:
    """CLIP's cleaning, in CLIP's order: ftfy, html unescape twice, whitespace, lowercase."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class TextTokenizer:
    """Cleans and tokenizes descriptions into the text tower's `input_ids` [N, 77] int64."""

    def __init__(self, path: Path | str):
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for a bad file
            raise UserError(f"{path}: unreadable tokenizer ({e})") from None
        # Truncation keeps the end-of-text token last, as CLIP does.
        self._tok.enable_truncation(max_length=CONTEXT_LENGTH)
        self._tok.enable_padding(length=CONTEXT_LENGTH, pad_id=PAD_ID, pad_token="!")

    def __call__(self, texts: str | list[str]) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        encodings = self._tok.encode_batch([clean_text(t) for t in texts])
        return np.array([e.ids for e in encodings], dtype=np.int64)
