"""Training pairs rendered from synthetic worlds (seeds never used for the demo world).

Per pair: a 128 px drone view of the world's *variant* (fields re-cropped, trees and cars
moved) with a random drone style, altitude 60-150 m, tilt 0-35 degrees, any heading; the
north-up satellite chip around the view's true centre, of a random ground size (90-160 m, the
engine's 100 and 150 m chips and what lies between) and offset (up to a quarter of the chip, as
the engine's 50 %-overlap grid guarantees some chip that close); and a description of the
footprint. The drone view is turned by the multiple of 90 degrees that brings its heading
nearest north-up, which is what the engine's rotation test-time augmentation undoes at query
time (it tries all four and keeps the best).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from synthworld.describe import describe
from synthworld.render import Style, random_camera, render_drone, render_ortho, render_texture
from synthworld.render.cameras import DRONE_ALTITUDE_M, DRONE_HFOV_DEG, DRONE_TILT_DEG, PHOTO_SIZE
from synthworld.world import World

if TYPE_CHECKING:
    from .train import TrainConfig


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


def north_up_turns(heading_deg: float) -> int:
    """np.rot90 turns (counter-clockwise) that bring a photo's top nearest to north."""
    return round(-heading_deg / 90.0) % 4


FIXED_CROP_M = 125.0


def _render_world(cfg: TrainConfig, px: int, seed: int) -> tuple:
    """One world's pairs: drone, satellite (random and fixed size) uint8 [n,px,px,3], texts and
    view centres. Its random numbers come from (training seed, world seed) alone, so worlds
    rendered in any order or process give the same pairs."""
    n = cfg.views_per_world
    # The photos' 4:3 shape at a little above the input size.
    view = (px * 5 // 4, px * 15 // 16)
    assert view[0] * PHOTO_SIZE[1] == view[1] * PHOTO_SIZE[0]
    drone = np.empty((n, px, px, 3), np.uint8)
    sat = np.empty((n, px, px, 3), np.uint8)
    sat_fixed = np.empty((n, px, px, 3), np.uint8)
    xy = np.empty((n, 2), np.float64)
    texts: list[str] = []
    rng = np.random.default_rng([cfg.seed, seed])
    world = World.generate(seed, cfg.world_km * 1000)
    variant = world.variant(seed + 1)
    gsd = 0.5
    ortho = render_ortho(world, gsd, Style.satellite(seed))
    xmin, _, _, ymax = world.bounds
    textures = [
        render_texture(variant, Style.random_drone(rng), gsd) for _ in range(cfg.styles_per_world)
    ]
    for k in range(n):
        tex = textures[k % len(textures)]
        cam = random_camera(variant, rng, view, DRONE_ALTITUDE_M, DRONE_TILT_DEG,
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
        xy[k] = (x, y)
        texts.append(describe(world, footprint, rng))
    return drone, sat, sat_fixed, texts, xy


def render_pairs(
    cfg: TrainConfig, px: int, log: Callable[[str], None] = print, workers: int = 1
) -> Pairs:
    """Pairs (drone and satellite uint8 [N,px,px,3], texts, positions) of the training worlds;
    `workers` processes render worlds side by side (the same pairs as one process)."""
    t0 = time.perf_counter()
    v, n = cfg.views_per_world, len(cfg.seeds) * cfg.views_per_world
    # Each world is copied in as it arrives: at most one world beside the whole set in memory.
    drone, sat, sat_fixed = (np.empty((n, px, px, 3), np.uint8) for _ in range(3))
    xy = np.empty((n, 2), np.float64)
    texts: list[str] = []
    if workers <= 1:
        jobs = map(lambda seed: _render_world(cfg, px, seed), cfg.seeds)
        pool = None
    else:
        # forkserver: the training process may hold threads (torch) that fork would copy mid-use.
        ctx = multiprocessing.get_context("forkserver")
        pool = ProcessPoolExecutor(min(workers, len(cfg.seeds)), mp_context=ctx)
        jobs = pool.map(_render_world, [cfg] * len(cfg.seeds), [px] * len(cfg.seeds), cfg.seeds)
    try:
        for w, (seed, part) in enumerate(zip(cfg.seeds, jobs, strict=True)):
            rows = slice(w * v, (w + 1) * v)
            drone[rows], sat[rows], sat_fixed[rows], xy[rows] = part[0], part[1], part[2], part[4]
            texts += part[3]
            log(f"  world {seed}: {(w + 1) * v:,}/{n:,} pairs, {time.perf_counter() - t0:.0f} s")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    world = np.repeat(np.arange(len(cfg.seeds), dtype=np.int32), v)
    return Pairs(drone, sat, sat_fixed, texts, world, xy)


# What decides the pairs: a cache made with other values is rendered again, not reused.
_PAIR_KEYS = ("seeds", "world_km", "views_per_world", "styles_per_world", "seed")
_ARRAYS = ("drone", "sat", "sat_fixed", "world", "xy")


def cached_pairs(
    cfg: TrainConfig, px: int, cache: Path, log: Callable[[str], None] = print, workers: int = 1
) -> Pairs:
    """The pairs from `cache` (a folder of .npy files and a key) when it holds these settings'
    pairs, else rendered and saved there: runs with other optimiser settings, one after the
    other or side by side, render once. The arrays are memory-mapped, not read in."""
    key = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()
           if k in _PAIR_KEYS} | {"px": px}  # fmt: skip
    key_file = cache / "key.json"
    if key_file.is_file() and json.loads(key_file.read_text()) == key:
        log(f"pairs from {cache}")
        arrays = {n: np.load(cache / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
        texts = json.loads((cache / "texts.json").read_text())
        return Pairs(texts=texts, **arrays)
    pairs = render_pairs(cfg, px, log, workers)
    cache.mkdir(parents=True, exist_ok=True)
    key_file.unlink(missing_ok=True)  # written last: a cache cut short is never taken as whole
    for n in _ARRAYS:
        np.save(cache / f"{n}.npy", getattr(pairs, n))
    (cache / "texts.json").write_text(json.dumps(pairs.texts))
    key_file.write_text(json.dumps(key))
    return pairs
