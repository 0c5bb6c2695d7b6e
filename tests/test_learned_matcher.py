"""The learned local features (core.learned_matcher): ALIKE written here from its weights'
state-dict, exported to ONNX into the user cache at first use, run with onnxruntime.

The weights are read from ../shared/weights (never copied here); the export needs PyTorch."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import ROOT
from test_matching import SAT, exact_photo, sat  # noqa: F401  (the fixture)

from geobridge_qgis.core import learned_matcher as LM
from geobridge_qgis.core import refine
from geobridge_qgis.core.camera import Camera
from geobridge_qgis.core.errors import UserError

WEIGHTS = ROOT.parent / "shared" / "weights"
pytestmark = pytest.mark.skipif(
    not (WEIGHTS / LM.WEIGHTS).exists(),
    reason=f"ALIKE weights not found at {WEIGHTS} (CI keeps ../shared beside the checkout)",
)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("GEOBRIDGE_FEATURE_WEIGHTS", str(WEIGHTS))
    yield LM.LearnedFeatures()
    mp.undo()


def test_onnx_reproduces_the_network(learned, sat):  # noqa: F811
    """Scores and descriptors from the ONNX graph and the sampled head equal the PyTorch
    network's full-resolution head (the original's layout) at the keypoints."""
    torch = pytest.importorskip("torch")
    img = np.ascontiguousarray(sat[0][1600:1856, 1700:2020])
    net = LM._build_torch(torch.load(WEIGHTS / LM.WEIGHTS, map_location="cpu", weights_only=True))
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        score, *maps = net(x)
        up = [maps[0]] + [
            torch.nn.functional.interpolate(m, scale_factor=f, mode="bilinear", align_corners=True)
            for m, f in zip(maps[1:], (2, 8, 32), strict=True)
        ]
        full = net.convhead2(torch.cat(up, 1))[0]
    assert torch.allclose(torch.sigmoid(full[-1]), score[0, 0], atol=1e-5)
    d = learned.describe(img)
    assert len(d.points) > 100
    ref = torch.nn.functional.normalize(full[:-1], dim=0).numpy()
    p = np.round(d.points).astype(int)
    on_grid = np.abs(d.points - p).max(1) < 0.05  # keypoints the soft-argmax left on a pixel
    cos = (ref[:, p[on_grid, 1], p[on_grid, 0]].T * d.desc[on_grid]).sum(1)
    assert on_grid.sum() > 5 and cos.min() > 0.999


def test_turned_copies_map_back(learned, sat):  # noqa: F811
    img = np.ascontiguousarray(sat[0][1600:1856, 1700:2020])
    a = learned.describe(img)
    b = learned.describe(img, angle=30.0)
    # Keypoints of the turned copy, mapped back, fall on or next to the unturned ones (the
    # network is not rotation-equivariant: not all, not exactly; a wrong map: tens of pixels).
    near = np.linalg.norm(b.points[:, None] - a.points[None], axis=2).min(1)
    assert np.median(near) < 2.0 and (near < 2.0).mean() > 0.5


def test_alike_matcher_refines_with_a_wrong_compass(learned, sat):  # noqa: F811
    x0, y0 = sat[3]
    cam = Camera(x0 + 180.0, y0 - 130.0, 120.0, 140.0, 20.0, 70.0)
    photo = exact_photo(sat, cam)
    m = refine.Matcher(str(SAT), sat[2], features="alike")
    m._learned = learned
    m.set_photo(photo, replace(cam, x=0.0, y=0.0, heading_deg=160.0))
    truth = np.array(cam.centre_ground())
    r = m.match(truth[0] - 12.0, truth[1] + 9.0, 150.0, None)
    assert r.ok and r.method.startswith("alike"), r.reason
    assert math.hypot(r.x - truth[0], r.y - truth[1]) < 2.0


def test_wrong_weights_are_refused(tmp_path, monkeypatch):
    (tmp_path / LM.WEIGHTS).write_bytes(b"not weights")
    with pytest.raises(UserError, match="not the published alike-n weights"):
        LM.LearnedFeatures(tmp_path)
    monkeypatch.setenv("GEOBRIDGE_FEATURE_WEIGHTS", str(tmp_path / "none"))
    with pytest.raises(UserError, match="ALIKE weights not found"):
        LM.LearnedFeatures()
