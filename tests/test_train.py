"""Training data conventions and the train -> export path of the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from geobridge_qgis.core.transform import rotations
from geolab.pairs import north_up_turns
from geolab.train import TrainConfig, batch_indices, train
from model_export import model as M


@pytest.mark.parametrize("heading", [0.0, 90.0, 180.0, 270.0, 100.0, 352.0])
def test_north_up_turns_undo_the_heading(heading):
    """A nadir view turned by north_up_turns looks like the north-up satellite crop; the
    engine's rotation list contains that same turn, so rotation TTA can find it."""
    from geobridge_qgis.core.camera import Camera
    from synthworld.render import Style, render_drone, render_ortho
    from synthworld.world import World

    world = World.generate(5, 400)
    cx, cy = (world.bounds[0] + world.bounds[2]) / 2, (world.bounds[1] + world.bounds[3]) / 2
    cam = Camera(cx, cy, 80.0, heading_deg=heading, tilt_deg=0.0, hfov_deg=60.0)
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
    # Three towers in each of the three default precisions.
    assert [r.tower for r in reports if r.precision == "fp32"] == ["drone", "satellite", "text"]
    assert len(reports) == 9
    assert all(r.passed for r in reports)
    import json

    log = json.loads((tmp_path / "run" / "train.json").read_text())
    assert log["steps_done"] == 3 and log["pairs"] == 16


def test_hard_negative_batches_are_neighbourhoods():
    import torch

    from geolab.pairs import Pairs

    rng = np.random.default_rng(0)
    n = 400
    xy = rng.uniform(0, 1500, (n, 2))
    world = np.repeat([0, 1], n // 2)
    empty = np.zeros((n, 1, 1, 3), np.uint8)
    pairs = Pairs(empty, empty, empty, [""] * n, world, xy)
    cfg = TrainConfig(batch=32, hard_negatives=True)
    g = torch.Generator().manual_seed(0)

    def spread(ids):
        return np.linalg.norm(xy[ids] - xy[ids].mean(0), axis=1).mean()

    hard, plain = [], []
    for _ in range(10):
        idx = batch_indices(cfg, pairs, g)
        assert len(idx) == 32 and len(set(idx.tolist())) == 32
        assert len(set(world[idx[:16]])) == 1  # the neighbourhood is in one world
        hard.append(spread(idx[:16]))
        plain.append(spread(batch_indices(TrainConfig(batch=32), pairs, g)[:16]))
    # 16 of a world's 200 views: a neighbourhood about a third as wide as a random draw.
    assert np.mean(hard) < 0.5 * np.mean(plain), (np.mean(hard), np.mean(plain))


def test_ablation_switches_train(tmp_path):
    """Each ablation variant's switches reach the training loop (a 2-step run each)."""
    from geolab.ablation import VARIANTS
    from geolab.pairs import render_pairs

    cfg = TrainConfig(seeds=(1000,), world_km=0.5, views_per_world=16, styles_per_world=1,
                      steps=2, batch=8, warmup=1)  # fmt: skip
    pairs = render_pairs(cfg, M.preset_config("demo").vision_config.image_size, lambda _: None)
    # Fixed-size crops differ from the random-size ones of the same views.
    assert not np.array_equal(pairs.sat, pairs.sat_fixed)
    from dataclasses import replace

    for i, switches in enumerate(VARIANTS.values()):
        ckpt = train(replace(cfg, **switches), tmp_path / str(i), lambda _: None, pairs=pairs)
        assert ckpt.is_file()


def test_training_resumes_where_it_stopped(tmp_path):
    """Two short runs with the same folder equal one run of the same steps: the saved state
    carries model, optimiser, data order and step; a run with other settings is refused."""
    import json

    import torch

    from geobridge_qgis.core.errors import UserError

    cfg = TrainConfig(seeds=(1000,), world_km=0.5, views_per_world=16, styles_per_world=1,
                      steps=4, batch=8, warmup=1, heldout_seed=1001, heldout_views=8,
                      eval_every=2)  # fmt: skip
    whole = train(cfg, tmp_path / "whole", log=lambda _: None)
    # A run that stops after two steps (a budget of zero minutes after the first check).
    from dataclasses import replace

    part = tmp_path / "part"
    calls = {"n": 0}
    real = time_perf = __import__("time").perf_counter

    def clock():
        calls["n"] += 1
        return real() + (1e6 if calls["n"] > 12 else 0.0)

    import geolab.train as T

    T.time.perf_counter = clock
    try:
        train(replace(cfg, max_minutes=1.0), part, log=lambda _: None)
    finally:
        T.time.perf_counter = time_perf
    first = json.loads((part / "train.json").read_text())
    assert 0 < first["steps_done"] < cfg.steps and not first["complete"]
    lines: list[str] = []
    resumed = train(cfg, part, log=lines.append)
    assert any(line.startswith(f"resuming at step {first['steps_done']}") for line in lines)
    report = json.loads((part / "train.json").read_text())
    assert report["steps_done"] == cfg.steps and report["complete"]
    a, b = torch.load(whole, weights_only=True), torch.load(resumed, weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [c["step"] for c in report["heldout_curve"]] == [0, 2, 4]
    with pytest.raises(UserError, match="other settings"):
        train(replace(cfg, lr=1e-3), part, log=lambda _: None)
    # A state saved before a setting existed (`init`) resumes: the setting had its default.
    state = torch.load(part / T.STATE, weights_only=True)
    del state["config"]["init"]
    torch.save(state, part / T.STATE)
    train(cfg, part, log=lambda _: None)
    with pytest.raises(UserError, match=r"other settings \(init\)"):
        train(replace(cfg, init=str(whole)), part, log=lambda _: None)


def test_average_checkpoints_is_the_mean_and_refuses_other_shapes(tmp_path):
    import torch

    from geobridge_qgis.core.errors import UserError
    from geolab.train import average_checkpoints

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    torch.save(a, tmp_path / "a.pth")
    torch.save(b, tmp_path / "b.pth")
    out = average_checkpoints([tmp_path / "a.pth", tmp_path / "b.pth"], tmp_path / "s.pth")
    soup = torch.load(out, weights_only=True)
    assert soup["w"].tolist() == [2.0, 4.0] and int(soup["n"]) == 7
    torch.save({"w": torch.zeros(3), "n": torch.tensor(1)}, tmp_path / "c.pth")
    with pytest.raises(UserError, match=r"c\.pth: not the same architecture"):
        average_checkpoints([tmp_path / "a.pth", tmp_path / "c.pth"], tmp_path / "t.pth")


def test_worlds_rendered_side_by_side_and_cached_are_the_same_pairs(tmp_path):
    """Two processes render the same pairs as one; a cache gives them back (memory-mapped)
    for the same settings and renders again for others."""
    from dataclasses import replace

    from geolab.pairs import cached_pairs, render_pairs

    cfg = TrainConfig(seeds=(1000, 1001), world_km=0.5, views_per_world=6, styles_per_world=1)
    px = M.preset_config("demo").vision_config.image_size
    one = render_pairs(cfg, px, lambda _: None)
    two = render_pairs(cfg, px, lambda _: None, workers=2)
    fields = ("drone", "sat", "sat_fixed", "world", "xy")
    for name in fields:
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.texts == two.texts and list(one.world) == [0] * 6 + [1] * 6
    lines: list[str] = []
    cached_pairs(cfg, px, tmp_path / "c", lines.append)
    assert not any(line.startswith("pairs from") for line in lines)
    again = cached_pairs(cfg, px, tmp_path / "c", lines.append)
    assert lines[-1] == f"pairs from {tmp_path / 'c'}"
    assert isinstance(again.drone, np.memmap) and again.texts == one.texts
    for name in fields:
        assert np.array_equal(getattr(one, name), getattr(again, name)), name
    other = cached_pairs(replace(cfg, seeds=(1000,)), px, tmp_path / "c", lines.append)
    assert lines[-1] != f"pairs from {tmp_path / 'c'}" and len(other.drone) == 6
    assert np.array_equal(other.drone, one.drone[:6])


def test_a_gpu_that_is_not_there_is_refused_before_rendering(tmp_path, monkeypatch):
    import torch

    import geolab.train as T
    from geobridge_qgis.core.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def never(*_a, **_k):
        raise AssertionError("rendered before the device was checked")

    monkeypatch.setattr(T, "render_pairs", never)
    monkeypatch.setattr(T, "cached_pairs", never)
    with pytest.raises(UserError, match="--device cuda: PyTorch here sees no CUDA GPU"):
        train(TrainConfig(device="cuda"), tmp_path / "run", log=lambda _: None)
