"""Proof that a bundle computes what the PyTorch model computes.

Runs the checkpoint in PyTorch and the bundle in onnxruntime (CPU) on the same inputs and
reports, per tower, the largest absolute difference of the embeddings, their mean and minimum
cosine, and the top-1 agreement on a small retrieval set (each query is a perturbed copy of one
gallery item; both sides must pick the same gallery item). Pass: fp32 max abs diff < 1e-4;
fp16 and int8 minimum cosine >= 0.99 and the same top-1 on every probe that PyTorch decides
by a clear margin. Every precision a
bundle holds is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.text import TextTokenizer

from . import model as M
from .export import input_name, load_model

FP32_MAX_ABS = 1e-4
LOW_PRECISION_MIN_COS = 0.99
DECIDED_MARGIN = 0.02  # cosine lead of PyTorch's top-1 that a low precision must keep
_WORDS = """
    red roof house road field forest lake river car parking lot church tower bridge roundabout
    tennis court farm barn orchard vineyard school north south east west of two three many
    small large near beside between green brown grey white dark
""".split()


@dataclass
class TowerReport:
    tower: str
    max_abs: float
    mean_cos: float
    min_cos: float
    top1_agreement: float
    passed: bool
    precision: str = "fp32"

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (
            f"{self.tower:9s} {self.precision:4s} max|diff| {self.max_abs:.2e}  cos mean "
            f"{self.mean_cos:.5f} min {self.min_cos:.5f}  top-1 agreement "
            f"{self.top1_agreement:.0%}  {verdict}"
        )


def sample_inputs(model: M.GeoBridge, tower: str, tokenizer: Path | None, n: int, seed: int):
    """(gallery, queries): gallery items and perturbed copies of them."""
    g = torch.Generator().manual_seed(seed)
    if tower == "text":
        rng = np.random.default_rng(seed)
        texts = [" ".join(rng.choice(_WORDS, size=rng.integers(3, 30))) for _ in range(n)]
        queries = [t + " " + str(rng.choice(_WORDS)) for t in texts]
        tok = TextTokenizer(tokenizer)
        return torch.from_numpy(tok(texts)), torch.from_numpy(tok(queries))
    size = model.image_size
    # Smooth random images (upsampled noise) look more like photos than white noise does.
    low = torch.randn(n, 3, size // 8, size // 8, generator=g)
    gallery = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic")
    return gallery, gallery + 0.3 * torch.randn(gallery.shape, generator=g)


def compare(
    model: M.GeoBridge,
    tower: str,
    onnx_file: Path,
    precision: str,
    tokenizer: Path | None,
    n: int = 32,
    seed: int = 0,
) -> TowerReport:
    """One ONNX file of one tower against the PyTorch tower. Pass: fp32 max abs diff < 1e-4;
    lower precisions: minimum cosine >= 0.99 and the same top-1 on every retrieval probe that
    PyTorch decides by more than DECIDED_MARGIN."""
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    gallery, queries = sample_inputs(model, tower, tokenizer, n, seed)
    with torch.no_grad():
        ref_g, ref_q = (model.tower(tower)(x).numpy() for x in (gallery, queries))
    got_g, got_q = (
        session.run(None, {input_name(tower): x.numpy()})[0] for x in (gallery, queries)
    )
    ref, got = np.concatenate([ref_g, ref_q]), np.concatenate([got_g, got_q])
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    ref_sim = ref_q @ ref_g.T
    same = ref_sim.argmax(1) == (got_q @ got_g.T).argmax(1)
    agree = float(np.mean(same))
    # A probe whose PyTorch top-1 leads its runner-up by less than the precision's own error
    # may flip without the export being wrong; every clearly decided probe must agree.
    top2 = np.sort(ref_sim, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > DECIDED_MARGIN
    max_abs = float(np.abs(ref - got).max())
    if precision == "fp32":
        passed = max_abs < FP32_MAX_ABS
    else:
        passed = float(cos.min()) >= LOW_PRECISION_MIN_COS and bool(np.all(same[decided]))
    return TowerReport(
        tower, max_abs, float(cos.mean()), float(cos.min()), agree, passed, precision
    )


def verify(
    checkpoint: Path, bundle_dir: Path, trust_pickle: bool = False, n: int = 32, seed: int = 0
) -> list[TowerReport]:
    """Every tower of the bundle in every precision it holds, against the checkpoint."""
    bundle = Bundle.load(bundle_dir)
    config = M.config_from_dict(bundle.manifest["architecture"])
    model = load_model(checkpoint, config, tuple(bundle.towers), trust_pickle)
    tokenizer = bundle.tokenizer_path if "text" in bundle.towers else None
    return [
        compare(model, name, tower.path_for(p), p, tokenizer, n, seed)
        for p in bundle.precisions
        for name, tower in bundle.towers.items()
    ]
