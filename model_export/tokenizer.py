"""Build the bundle's `tokenizer.json`: OpenAI CLIP's BPE in the `tokenizers` library.

The vocabulary and merges come from the file that open-clip-torch ships
(`open_clip/bpe_simple_vocab_16e6.txt.gz`, MIT licence), read from the installed package
without importing it. The ids match open_clip's tokenizer exactly once the text is cleaned as
CLIP cleans it (`geobridge_qgis.core.text.clean_text`), which is why cleaning is part of the
bundle's contract.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.text import CONTEXT_LENGTH, EOT_ID, PAD_ID, SOT_ID

# CLIP's word split (open_clip / OpenAI CLIP `SimpleTokenizer.pat`, less the special tokens,
# which `tokenizers` matches itself as added tokens).
CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
SOT, EOT = "<start_of_text>", "<end_of_text>"


def vocab_file() -> Path:
    """The CLIP BPE vocabulary inside the installed open-clip-torch package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "open-clip-torch is not installed (run `make setup`); it ships the CLIP vocabulary"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise UserError(f"{path}: CLIP vocabulary missing from open-clip-torch")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map, in vocabulary order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build_clip_tokenizer(vocab_gz: Path | None = None) -> Tokenizer:
    """The CLIP tokenizer: 49408 ids, start/end tokens, truncation and zero padding to 77."""
    with gzip.open(vocab_gz or vocab_file()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [SOT, EOT]
    ids = {token: i for i, token in enumerate(vocab)}
    assert ids[SOT] == SOT_ID and ids[EOT] == EOT_ID, "unexpected CLIP vocabulary layout"

    tok = Tokenizer(
        models.BPE(
            vocab=ids,
            merges=merges,
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            fuse_unk=False,
        )
    )
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.BPEDecoder(suffix="</w>")])
    tok.add_special_tokens([SOT, EOT])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, SOT_ID), (EOT, EOT_ID)]
    )
    tok.enable_truncation(max_length=CONTEXT_LENGTH)
    tok.enable_padding(length=CONTEXT_LENGTH, pad_id=PAD_ID, pad_token=vocab[PAD_ID])
    return tok
