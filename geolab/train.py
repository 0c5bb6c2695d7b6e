"""`python -m geolab train`: a small GeoBridge trained on synthetic worlds, on CPU or GPU.

What it learns from: the pairs of `pairs.py` (drone views of a world's variant, satellite chips
around their true centres, descriptions of their footprints).

Loss: symmetric InfoNCE on (drone, satellite) + 0.5 x (text, drone) + 0.5 x (text, satellite),
the pairs of the paper that the world provides; one learnable temperature. AdamW, warm-up then
cosine decay over a fixed number of steps (so a fixed seed reproduces the run), bf16 autocast
on a GPU and when the CPU has AMX/AVX512-BF16 (~1.4x faster than fp32 there; 2.5x slower
without). The batches' random numbers are drawn on the CPU, so the device changes rounding only.
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
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.text import TextTokenizer
from model_export.model import GeoBridge, preset_config
from model_export.tokenizer import build_clip_tokenizer

from .pairs import Pairs, cached_pairs, render_pairs

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
    max_minutes: float = 25.0  # this run's budget; run again with the same --out to go on
    threads: int = 2
    checkpoint_minutes: float = 3.0  # how often the resumable state is saved
    heldout_seed: int | None = 7  # the learning curve's world (the demo world: never trained on)
    heldout_views: int = 200
    eval_every: int = 50  # steps between learning-curve points
    # The choices `python -m geolab ablate` measures (geolab/ablation.py):
    augment: bool = True  # mirror both views, jitter the drone view's colours
    multi_scale: bool = True  # satellite crops of 90-160 m; False: always 125 m
    hard_negatives: bool = False  # half of each batch from one neighbourhood of one world
    # A second stage starts from a finished run's weights with its own warm-up and cosine
    # (the first stage's decay has reached zero: going on with it would not learn).
    init: str | None = None  # a geobridge-demo.pth to start from; None: random weights
    # Where it runs; none of these changes what is learned beyond floating-point rounding.
    device: str = "cpu"  # or "cuda" (an NVIDIA GPU: bf16 autocast)
    workers: int = 1  # processes rendering worlds side by side
    pairs_cache: str | None = None  # a folder keeping rendered pairs for later runs


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


def _to_tensor(batch: np.ndarray, device: str = "cpu") -> torch.Tensor:
    # uint8 crosses to the device: a quarter of the bytes of float.
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter (drone views only)."""
    n = x.shape[0]
    # Drawn on the CPU from the run's generator: the same jitter on any device.
    b = (1 + 0.25 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)).to(x.device)
    c = (1 + 0.25 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)).to(x.device)
    s = (1 + 0.3 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)).to(x.device)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean) * b


def _cpu(state: dict) -> dict:
    """A state dict with its tensors on the CPU: a checkpoint any machine loads."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)"
    return f"CPU, {torch.get_num_threads()} threads"


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


STATE = "train-state.pt"  # model, optimiser, data order, step: what a resumed run needs
# Settings a resumed run may change; any other change would make it another run.
RESUMABLE_CHANGES = {"max_minutes", "threads", "checkpoint_minutes", "eval_every", "device",
                     "workers", "pairs_cache"}  # fmt: skip


def _config_dict(cfg: TrainConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}


def _save_state(path: Path, **state) -> None:
    """Atomically: a run killed while saving keeps the previous state."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_state(path: Path, cfg: TrainConfig) -> dict | None:
    if not path.is_file():
        return None
    # weights_only: tensors, numbers, strings and lists only; nothing that runs code.
    # map_location: a state saved on a GPU resumes on a machine without one.
    state = torch.load(path, map_location="cpu", weights_only=True)
    # A setting added since the state was saved had its default then.
    saved = {**_config_dict(TrainConfig()), **state["config"]}
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    now = {k: v for k, v in _config_dict(cfg).items() if k not in RESUMABLE_CHANGES}
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise UserError(f"{path}: saved by a run with other settings ({', '.join(changed)}); "
                        "use another --out or the same settings")  # fmt: skip
    return state


@torch.no_grad()
def heldout_metrics(model: GeoBridge, pairs: Pairs, batch: int = 64) -> dict:
    """Drone -> satellite R@1, R@5 and L@50 (top-1 chip's centre within 50 m) on held-out
    pairs: the learning curve's point."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def embed(tower, images):
        return torch.cat([tower(_to_tensor(images[i : i + batch], device)).float()
                          for i in range(0, len(images), batch)])  # fmt: skip

    d = embed(model.drone_encoder, pairs.drone)
    s = embed(model.satellite_encoder, pairs.sat_fixed)
    sim = (d @ s.T).cpu().numpy()
    order = np.argsort(-sim, axis=1)
    truth = np.arange(len(sim))
    top1 = order[:, 0]
    dist = np.linalg.norm(pairs.xy[top1] - pairs.xy[truth], axis=1)
    model.train(was_training)
    return {"R@1": float(np.mean(top1 == truth) * 100),
            "R@5": float(np.mean((order[:, :5] == truth[:, None]).any(1)) * 100),
            "L@50": float(np.mean(dist <= 50.0) * 100)}  # fmt: skip


def train(
    cfg: TrainConfig, out: Path, log: Callable[[str], None] = print, pairs: Pairs | None = None
) -> Path:
    """Train and save a state dict (official key names) to `out`/geobridge-demo.pth; `pairs`
    already rendered (for `cfg`'s seeds) skips the rendering (ablations share one).

    Resumable: the state is saved to `out`/train-state.pt every `checkpoint_minutes` and when
    the minute budget ends; run again with the same `out` (and settings) to continue where it
    stopped, with the same data order, so several short runs equal one long one."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    config = preset_config("demo")
    for sub in (config, config.vision_config, config.text_config):
        sub._attn_implementation = "sdpa"  # training speed; export uses eager
    model = GeoBridge(config, TRAIN_TOWERS)
    px = model.image_size
    if cfg.init is not None and not (out / STATE).is_file() and not Path(cfg.init).is_file():
        raise UserError(f"{cfg.init}: no such checkpoint to start from")  # before rendering
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {cfg.device}: PyTorch here sees no CUDA GPU")

    t0 = time.perf_counter()
    if pairs is None and cfg.pairs_cache:
        pairs = cached_pairs(cfg, px, Path(cfg.pairs_cache), log, cfg.workers)
    elif pairs is None:
        log(f"rendering {len(cfg.seeds) * cfg.views_per_world:,} training pairs")
        pairs = render_pairs(cfg, px, log, cfg.workers)
    drone, texts = pairs.drone, pairs.texts
    sat = pairs.sat if cfg.multi_scale else pairs.sat_fixed
    tok_path = out / "tokenizer.json"
    build_clip_tokenizer().save(str(tok_path))
    ids = torch.from_numpy(TextTokenizer(tok_path)(texts))
    render_s = time.perf_counter() - t0
    model.to(dev)  # before the optimiser's state is loaded: it follows its parameters

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
    history: list[dict] = []
    curve: list[dict] = []
    start, spent = 0, 0.0
    state_path = out / STATE
    state = _load_state(state_path, cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start, spent = int(state["step"]), float(state["train_seconds"])
        history, curve = list(state["history"]), list(state["curve"])
        log(f"resuming at step {start} of {cfg.steps} ({spent / 60:.1f} min trained so far)")
    elif cfg.init is not None:  # a second stage's start (a resumed one has its own weights)
        # weights_only: a state dict of tensors; nothing that runs code.
        model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True))
    heldout = None
    if cfg.heldout_seed is not None and cfg.eval_every > 0:
        from dataclasses import replace

        hcfg = replace(cfg, seeds=(cfg.heldout_seed,), views_per_world=cfg.heldout_views,
                       styles_per_world=1)  # fmt: skip
        heldout = render_pairs(hcfg, px, lambda _: None)
    t1 = time.perf_counter()
    model.train()
    use_bf16 = dev.type == "cuda" or bf16_is_fast()
    log(
        f"training {cfg.steps} steps, batch {cfg.batch}, on {_device_name(dev)}, "
        f"bf16 autocast {'on' if use_bf16 else 'off'}"
    )

    def save(step_next: int) -> None:
        _save_state(state_path, model=_cpu(model.state_dict()), optimizer=opt.state_dict(),
                    generator=g.get_state(), torch_rng=torch.get_rng_state(), step=step_next,
                    train_seconds=spent + time.perf_counter() - t1, history=history,
                    curve=curve, config=_config_dict(cfg))  # fmt: skip

    def curve_point(step_done: int) -> None:
        if heldout is not None:
            curve.append({"step": step_done, **heldout_metrics(model, heldout)})
            c = curve[-1]
            log(f"  held-out at step {step_done}: R@1 {c['R@1']:.1f} R@5 {c['R@5']:.1f} "
                f"L@50 {c['L@50']:.1f}")  # fmt: skip

    if start == 0:
        curve_point(0)
    done = start
    last_save = time.perf_counter()
    for step in range(start, cfg.steps):
        if (time.perf_counter() - t1) / 60 > cfg.max_minutes:
            log(f"stopping at step {step}: this run's {cfg.max_minutes} minute budget is spent; "
                "run again with the same --out to continue")  # fmt: skip
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
        d, s = _to_tensor(drone[idx], dev), _to_tensor(sat[idx], dev)
        if cfg.augment:
            flip = torch.rand(len(idx), generator=g) < 0.5  # mirror both views: a true pair
            flip = flip.to(dev)
            d[flip], s[flip] = d[flip].flip(-1), s[flip].flip(-1)
            d = _jitter(d, g)
        # Causal attention pools at the end token: cutting the padding changes nothing.
        t = ids[idx]
        t = t[:, : int((t != 0).sum(1).max())].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            ed = model.drone_encoder(d)
            es = model.satellite_encoder(s)
            et = model.text_encoder(t)
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
        if heldout is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            curve_point(done)
        if (time.perf_counter() - last_save) / 60 > cfg.checkpoint_minutes:
            save(done)
            last_save = time.perf_counter()
        if step % 20 == 0 or step == cfg.steps - 1:
            rate = (step + 1 - start) / (time.perf_counter() - t1)
            history.append({"step": step, "loss": loss.item(), "drone_sat": loss_ds.item(),
                            "text": loss_t.item(), "scale": scale.item(), "lr": lr})  # fmt: skip
            h = history[-1]
            log(f"  step {step:4d} loss {h['loss']:.3f} (drone-sat {h['drone_sat']:.3f}, "
                f"text {h['text']:.3f}) scale {h['scale']:.1f} {rate:.2f} steps/s")  # fmt: skip
    save(done)
    model.eval()
    ckpt = out / "geobridge-demo.pth"
    torch.save(_cpu(model.state_dict()), ckpt)
    report = {
        "config": _config_dict(cfg),
        "pairs": int(n),
        "steps_done": done,
        "complete": done >= cfg.steps,
        "render_seconds": round(render_s, 1),
        "train_seconds": round(spent + time.perf_counter() - t1, 1),
        "history": history,
        "heldout_curve": curve,
    }
    (out / "train.json").write_text(json.dumps(report, indent=1))
    log(f"wrote {ckpt} ({report['train_seconds']:.0f} s training, {render_s:.0f} s rendering)")
    return ckpt


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """The mean of state dicts (official key names) of one architecture: a "model soup" of
    two training stages, which kept the first stage's recall and the second's precision on the
    demo world (docs/EVALUATION.md)."""
    # weights_only: tensors only; nothing that runs code.
    dicts = [torch.load(p, weights_only=True) for p in paths]
    keys = set(dicts[0])
    for p, d in zip(paths[1:], dicts[1:], strict=True):
        if set(d) != keys or any(d[k].shape != dicts[0][k].shape for k in keys):
            raise UserError(f"{p}: not the same architecture as {paths[0]}")
    soup = {}
    for k, v in dicts[0].items():
        if v.is_floating_point():
            soup[k] = (sum(d[k].float() for d in dicts) / len(dicts)).to(v.dtype)
        else:
            soup[k] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, out)
    return out
