"""The shipped demo model on a small held-out world: an end-to-end accuracy floor.

The world (seed 11, 1 km, 20 photos) is made by the test and never used in training (training
worlds are seeds 1000-1047; the shipped demo world is seed 7). The floors were set from what the
shipped model reaches here, with a margin (README, "The demo model"); chance on this gallery is
about 0.3 % for R@1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

BUNDLE = ROOT / "resources" / "demo" / "bundle"
# Measured with the shipped model: R@5 90 %, L@100 75 % (rot-TTA); floors 20 points lower.
FLOORS = {"R@5": 70.0, "L@100": 55.0}


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    from synthworld.synth import synth

    out = tmp_path_factory.mktemp("heldout") / "world"
    synth(11, 1.0, out, photos=20, log=lambda _: None)
    return out


def test_demo_model_clears_its_floor(heldout, tmp_path):
    from geolab.evaluate import evaluate

    rows = evaluate(BUNDLE, heldout, tmp_path / "eval")
    get = {(r["direction"], r["method"]): r for r in rows}
    model = get[("drone->satellite", "rot-TTA")]
    for metric, floor in FLOORS.items():
        assert model[metric] >= floor, (metric, model[metric])
    for baseline in ("random", "colour histogram"):
        assert model["R@5"] > get[("drone->satellite", baseline)]["R@5"] + 10
    assert get[("text->satellite", "model")]["R@5"] > get[("text->satellite", "random")]["R@5"]
    assert (tmp_path / "eval" / "topk_drone_satellite.csv").read_text().count("\n") == 20 * 10 + 1
    # Per tilt band: the bands split the photos, and their figures average back to the whole.
    bands = [r for r in rows if "deg off nadir" in r["method"]]
    sizes = [int(r["method"].split("n=")[1].rstrip(")")) for r in bands]
    assert len(bands) >= 2 and sum(sizes) == 20
    for key in ("R@5", "MRR", "mAP"):
        whole = sum(r[key] * n for r, n in zip(bands, sizes, strict=True)) / 20
        assert whole == pytest.approx(model[key], abs=1e-6), key
