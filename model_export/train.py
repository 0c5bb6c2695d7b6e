"""`python -m model_export train`: a small GeoBridge trained on synthetic worlds, on CPU.

What it learns from: pairs rendered from training worlds (seeds never used for the demo
world). Per pair: a 128 px drone view of the world's *variant* (fields re-cropped, trees and
cars moved) with a random drone style, altitude 60-150 m, pitch 0-35 degrees, any heading; the
north-up satellite chip around the view's true centre, of a random ground size (90-160 m, the
engine's 100 and 150 m chips and what lies between) and offset (up to a quarter of the chip, as
the engine's 50 %-overlap grid guarantees some chip that close); and a description of the
footprint. The drone view is turned by the multiple of 90 degrees that brings its heading
nearest north-up, which is what the engine's rotation test-time augmentation undoes at query
time (it tries all four and keeps the best).

Loss: symmetric InfoNCE on (drone, satellite) + 0.5 x (text, drone) + 0.5 x (text, satellite),
the pairs of the paper that the world provides; one learnable temperature. AdamW, warm-up then
cosine decay over a fixed number of steps (so a fixed seed reproduces the run), bf16 autocast
when the CPU has AMX/AVX512-BF16 (~1.4x faster than fp32 there; 2.5x slower without).
Augmentation (mirror + colour jitter) and multi-scale crops are on; hard negatives (half of
each batch from one neighbourhood) are off: `python -m model_export ablate` measures each.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from geobridge_qgis.core.bundle import IMAGENET_MEAN, IMAGENET_STD
from geobridge_qgis.core.text import TextTokenizer

from . import model as M
from .tokenizer import build_clip_tokenizer

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
    # The choices `python -m model_export ablate` measures (model_export/ablation.py):
    augment: bool = True  # mirror both views, jitter the drone view's colours
    multi_scale: bool = True  # satellite crops of 90-160 m; False: always 125 m
    hard_negatives: bool = False  # half of each batch from one neighbourhood of one world


@dataclass
class Pairs:
    """Rendered training pairs: drone views, satellite crops (random and fixed size), texts,
    and where each view is (world number, x, y) for neighbourhood batches."""

    drone: np.ndarray
    sat: np.ndarray
    sat_fixed: np.ndarray
    texts: list[str]
    world: np.ndarray
    xy: np.ndarray


def bf16_is_fast() -> bool:
    """bf16 autocast pays only with AMX or AVX512-BF16; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def north_up_turns(heading_deg: float) -> int:
    """np.rot90 turns (counter-clockwise) that bring a photo's top nearest to north."""
    return round(-heading_deg / 90.0) % 4


FIXED_CROP_M = 125.0


def render_pairs(cfg: TrainConfig, px: int, log: Callable[[str], None] = print) -> Pairs:
    """Pairs (drone and satellite uint8 [N,px,px,3], texts, positions) of the training worlds."""
    from .render import Style, random_camera, render_drone, render_ortho, render_texture
    from .synth import DRONE_ALTITUDE_M, DRONE_HFOV_DEG, DRONE_PITCH_DEG, PHOTO_SIZE, describe
    from .world import World

    n = len(cfg.seeds) * cfg.views_per_world
    # The photos' 4:3 shape at a little above the input size.
    view = (px * 5 // 4, px * 15 // 16)
    assert view[0] * PHOTO_SIZE[1] == view[1] * PHOTO_SIZE[0]
    drone = np.empty((n, px, px, 3), np.uint8)
    sat = np.empty((n, px, px, 3), np.uint8)
    sat_fixed = np.empty((n, px, px, 3), np.uint8)
    where = np.empty(n, np.int32)
    xy = np.empty((n, 2), np.float64)
    texts: list[str] = []
    k = 0
    t0 = time.perf_counter()
    for w, seed in enumerate(cfg.seeds):
        rng = np.random.default_rng([cfg.seed, seed])
        world = World.generate(seed, cfg.world_km * 1000)
        variant = world.variant(seed + 1)
        gsd = 0.5
        ortho = render_ortho(world, gsd, Style.satellite(seed))
        xmin, _, _, ymax = world.bounds
        textures = [
            render_texture(variant, Style.random_drone(rng), gsd)
            for _ in range(cfg.styles_per_world)
        ]
        for i in range(cfg.views_per_world):
            tex = textures[i % len(textures)]
            cam = random_camera(variant, rng, view, DRONE_ALTITUDE_M, DRONE_PITCH_DEG,
                                DRONE_HFOV_DEG, margin=100.0)  # fmt: skip
            img, footprint = render_drone(variant, cam, tex.style, view, texture=tex, rng=rng)
            # As the engine does with a photo: turn it, then resize straight to the square.
            img = np.rot90(img, north_up_turns(cam.heading_deg))
            drone[k] = cv2.resize(img, (px, px), interpolation=cv2.INTER_CUBIC)
            x, y = cam.centre_ground()
            size = rng.uniform(90.0, 160.0)
            dx, dy = rng.uniform(-0.25, 0.25, 2)
            for out, s in ((sat, size), (sat_fixed, FIXED_CROP_M)):
                cx, cy = x + dx * s, y + dy * s
                c0 = round((cx - s / 2 - xmin) / gsd)
                r0 = round((ymax - cy - s / 2) / gsd)
                n_px = round(s / gsd)
                window = ortho[max(r0, 0) : r0 + n_px, max(c0, 0) : c0 + n_px]
                out[k] = cv2.resize(window, (px, px), interpolation=cv2.INTER_AREA)
            where[k], xy[k] = w, (x, y)
            texts.append(describe(world, footprint, rng))
            k += 1
        log(f"  world {seed}: {k:,}/{n:,} pairs, {time.perf_counter() - t0:.0f} s")
    return Pairs(drone, sat, sat_fixed, texts, where, xy)


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
    config = M.preset_config("demo")
    for sub in (config, config.vision_config, config.text_config):
        sub._attn_implementation = "sdpa"  # training speed; export uses eager
    model = M.GeoBridge(config, TRAIN_TOWERS)
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
