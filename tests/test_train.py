"""Training data conventions and the train -> export path of the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from geobridge_qgis.core.transform import rotations
from model_export import model as M
from model_export.train import TrainConfig, north_up_turns, train


@pytest.mark.parametrize("heading", [0.0, 90.0, 180.0, 270.0, 100.0, 352.0])
def test_north_up_turns_undo_the_heading(heading):
    """A nadir view turned by north_up_turns looks like the north-up satellite crop; the
    engine's rotation list contains that same turn, so rotation TTA can find it."""
    from model_export.render import Camera, Style, render_drone, render_ortho
    from model_export.world import World

    world = World.generate(5, 400)
    cx, cy = (world.bounds[0] + world.bounds[2]) / 2, (world.bounds[1] + world.bounds[3]) / 2
    cam = Camera(cx, cy, 80.0, heading_deg=heading, pitch_deg=0.0, hfov_deg=60.0)
    img, _ = render_drone(world, cam, Style.satellite(5), (96, 96))
    k = north_up_turns(heading)
    turned = np.rot90(img, k).astype(float).mean(2)
    half = 80.0 * np.tan(np.radians(30))
    box = (cx - half, cy - half, cx + half, cy + half)
    crop = render_ortho(world, 2 * half / 96, Style.satellite(5), box).astype(float).mean(2)
    crop = crop[:96, :96]

    def corr(a):
        return np.corrcoef(a.ravel(), crop.ravel())[0, 1]

    others = [corr(np.rot90(img, j).astype(float).mean(2)) for j in range(4) if j != k]
    residual = (heading + 90 * k) % 360
    assert min(residual, 360 - residual) <= 45
    if residual == 0:  # a multiple of 90: the turn aligns it exactly
        assert corr(turned) > 0.6
    assert corr(turned) > max(others) + 0.1
    assert 90 * k in [a % 360 for a in (0, 90, 180, 270)]
    assert np.array_equal(rotations(img, (90 * k,))[0], np.rot90(img, k))


def test_a_short_training_run_exports_as_the_demo_preset(tmp_path):
    from model_export.export import export_bundle
    from model_export.verify import verify

    cfg = TrainConfig(seeds=(1000,), world_km=0.5, views_per_world=16, styles_per_world=1,
                      steps=3, batch=8, warmup=1)  # fmt: skip
    ckpt = train(cfg, tmp_path / "run", log=lambda _: None)
    bundle = tmp_path / "bundle"
    export_bundle(ckpt, bundle, M.preset_config("demo"), "preset:demo",
                  towers=("drone", "satellite", "text"), log=lambda _: None)  # fmt: skip
    reports = verify(ckpt, bundle, n=4)
    assert [r.tower for r in reports] == ["drone", "satellite", "text"]
    assert all(r.passed for r in reports)
    import json

    log = json.loads((tmp_path / "run" / "train.json").read_text())
    assert log["steps_done"] == 3 and log["pairs"] == 16
