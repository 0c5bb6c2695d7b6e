"""`python -m geolab train`: a small GeoBridge trained on synthetic worlds, on CPU.

What it learns from: the pairs of `pairs.py` (drone views of a world's variant, satellite chips
around their true centres, descriptions of their footprints).

Loss: symmetric InfoNCE on (drone, satellite) + 0.5 x (text, drone) + 0.5 x (text, satellite),
the pairs of the paper that the world provides; one learnable temperature. AdamW, warm-up then
cosine decay over a fixed number of steps (so a fixed seed reproduces the run), bf16 autocast
when the CPU has AMX/AVX512-BF16 (~1.4x faster than fp32 there; 2.5x slower without).
Augmentation (mirror + colour jitter) and multi-scale crops are on; hard negatives (half of
each batch from one neighbourhood) are off: `python -m geolab ablate` measures each.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geobridge_qgis.core.bundle import IMAGENET_MEAN, IMAGENET_STD
from geobridge_qgis.core.text import TextTokenizer
from model_export.model import GeoBridge, preset_config
from model_export.tokenizer import build_clip_tokenizer

from .pairs import Pairs, render_pairs

TRAIN_TOWERS = ("drone", "satellite", "text")


@dataclass
class TrainConfig:
    seeds: tuple[int, ...] = tuple(range(1000, 1012))
    world_km: float = 1.5
    views_per_world: int = 1250
    styles_per_world: int = 3
    steps: int = 400
    batch: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 40
    text_weight: float = 0.5
    seed: int = 0
    max_minutes: float = 25.0
    threads: int = 2
    # The choices `python -m geolab ablate` measures (geolab/ablation.py):
    augment: bool = True  # mirror both views, jitter the drone view's colours
    multi_scale: bool = True  # satellite crops of 90-160 m; False: always 125 m
    hard_negatives: bool = False  # half of each batch from one neighbourhood of one world


def bf16_is_fast() -> bool:
    """bf16 autocast pays only with AMX or AVX512-BF16; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def batch_indices(cfg: TrainConfig, pairs: Pairs, g: torch.Generator) -> np.ndarray:
    """A batch: uniformly random, or (hard negatives) half of it the views nearest a random
    view of the same world (its neighbourhood: similar places the model must tell apart)."""
    n = len(pairs.drone)
    if not cfg.hard_negatives:
        return torch.randperm(n, generator=g)[: cfg.batch].numpy()
    half = cfg.batch // 2
    anchor = int(torch.randint(n, (1,), generator=g))
    same = np.flatnonzero(pairs.world == pairs.world[anchor])
    d = np.linalg.norm(pairs.xy[same] - pairs.xy[anchor], axis=1)
    near = same[np.argsort(d, kind="stable")[:half]]
    rest = torch.randperm(n, generator=g).numpy()
    rest = rest[~np.isin(rest, near)][: cfg.batch - len(near)]
    return np.concatenate([near, rest])


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter (drone views only)."""
    n = x.shape[0]
    b = 1 + 0.25 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)
    c = 1 + 0.25 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)
    s = 1 + 0.3 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean) * b


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * a @ b.T
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train(
    cfg: TrainConfig, out: Path, log: Callable[[str], None] = print, pairs: Pairs | None = None
) -> Path:
    """Train and save a state dict (official key names) to `out`/geobridge-demo.pth; `pairs`
    already rendered (for `cfg`'s seeds) skips the rendering (ablations share one)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    config = preset_config("demo")
    for sub in (config, config.vision_config, config.text_config):
        sub._attn_implementation = "sdpa"  # training speed; export uses eager
    model = GeoBridge(config, TRAIN_TOWERS)
    px = model.image_size

    t0 = time.perf_counter()
    if pairs is None:
        log(f"rendering {len(cfg.seeds) * cfg.views_per_world:,} training pairs")
        pairs = render_pairs(cfg, px, log)
    drone, texts = pairs.drone, pairs.texts
    sat = pairs.sat if cfg.multi_scale else pairs.sat_fixed
    tok_path = out / "tokenizer.json"
    build_clip_tokenizer().save(str(tok_path))
    ids = torch.from_numpy(TextTokenizer(tok_path)(texts))
    render_s = time.perf_counter() - t0

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=cfg.lr,
    )
    g = torch.Generator().manual_seed(cfg.seed)
    n = len(drone)
    history = []
    t1 = time.perf_counter()
    model.train()
    use_bf16 = bf16_is_fast()
    log(
        f"training {cfg.steps} steps, batch {cfg.batch}, "
        f"bf16 autocast {'on' if use_bf16 else 'off'}"
    )
    done = 0
    for step in range(cfg.steps):
        if (time.perf_counter() - t1) / 60 > cfg.max_minutes:
            log(f"stopping at step {step}: the {cfg.max_minutes} minute budget is spent")
            break
        lr = (
            cfg.lr
            * min(1.0, (step + 1) / cfg.warmup)
            * 0.5
            * (1 + math.cos(math.pi * step / cfg.steps))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        idx = batch_indices(cfg, pairs, g)
        d, s = _to_tensor(drone[idx]), _to_tensor(sat[idx])
        if cfg.augment:
            flip = torch.rand(len(idx), generator=g) < 0.5  # mirror both views: a true pair
            d[flip], s[flip] = d[flip].flip(-1), s[flip].flip(-1)
            d = _jitter(d, g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            ed = model.drone_encoder(d)
            es = model.satellite_encoder(s)
            # Causal attention pools at the end token: cutting the padding changes nothing.
            t = ids[idx]
            et = model.text_encoder(t[:, : int((t != 0).sum(1).max())])
        ed, es, et = ed.float(), es.float(), et.float()
        scale = model.logit_scale.exp().clamp(max=100)
        loss_ds = clip_loss(ed, es, scale)
        loss_t = clip_loss(et, ed, scale) + clip_loss(et, es, scale)
        loss = loss_ds + cfg.text_weight * loss_t
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done += 1
        if step % 20 == 0 or step == cfg.steps - 1:
            rate = (step + 1) / (time.perf_counter() - t1)
            history.append({"step": step, "loss": loss.item(), "drone_sat": loss_ds.item(),
                            "text": loss_t.item(), "scale": scale.item(), "lr": lr})  # fmt: skip
            h = history[-1]
            log(f"  step {step:4d} loss {h['loss']:.3f} (drone-sat {h['drone_sat']:.3f}, "
                f"text {h['text']:.3f}) scale {h['scale']:.1f} {rate:.2f} steps/s")  # fmt: skip
    model.eval()
    ckpt = out / "geobridge-demo.pth"
    torch.save(model.state_dict(), ckpt)
    report = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
        "pairs": int(n),
        "steps_done": done,
        "render_seconds": round(render_s, 1),
        "train_seconds": round(time.perf_counter() - t1, 1),
        "history": history,
    }
    (out / "train.json").write_text(json.dumps(report, indent=1))
    log(f"wrote {ckpt} ({report['train_seconds']:.0f} s training, {render_s:.0f} s rendering)")
    return ckpt
