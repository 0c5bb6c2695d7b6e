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

import time
from collections.abc import Callable
from dataclasses import dataclass
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


def render_pairs(cfg: TrainConfig, px: int, log: Callable[[str], None] = print) -> Pairs:
    """Pairs (drone and satellite uint8 [N,px,px,3], texts, positions) of the training worlds."""
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
            where[k], xy[k] = w, (x, y)
            texts.append(describe(world, footprint, rng))
            k += 1
        log(f"  world {seed}: {k:,}/{n:,} pairs, {time.perf_counter() - t0:.0f} s")
    return Pairs(drone, sat, sat_fixed, texts, where, xy)
