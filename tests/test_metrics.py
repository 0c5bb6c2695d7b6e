"""The metrics on hand-made similarity matrices with known answers."""

import numpy as np
import pytest

from geobridge_qgis.core.geodesy import haversine_m
from geolab.metrics import (
    first_positive_ranks,
    localisation_metrics,
    mean_average_precision,
    retrieval_metrics,
)


def test_ranks_and_recall_on_a_known_matrix():
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # positive (0) ranked 1st
            [0.9, 0.8, 0.7, 0.1],  # positive (2) ranked 3rd
            [0.1, 0.2, 0.3, 0.4],  # positives 0 and 1: best-ranked is 1, at rank 3
            [0.5, 0.6, 0.7, 0.8],  # no positive in the gallery
        ]
    )
    pos = np.zeros_like(scores, bool)
    pos[0, 0] = pos[1, 2] = pos[2, 0] = pos[2, 1] = True
    ranks = first_positive_ranks(scores, pos)
    assert ranks.tolist() == [1, 3, 3, np.inf]
    m = retrieval_metrics(ranks, gallery_size=4)
    assert m["R@1"] == 25 and m["R@5"] == 75 and m["R@1%"] == 25
    assert m["AP"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 0) / 4 * 100)
    assert m["MRR"] == m["AP"]  # the official code's "AP" is the mean reciprocal rank
    # Average precision over all positives: query 2's second positive comes 4th, so its AP is
    # (1/3 + 2/4) / 2, below its reciprocal rank; a query without positives counts 0.
    assert mean_average_precision(scores, pos) == pytest.approx(
        (1 + 1 / 3 + (1 / 3 + 2 / 4) / 2 + 0) / 4 * 100
    )


def test_one_percent_uses_the_gallery_size():
    ranks = np.array([1, 2, 3, 10, 11])
    assert retrieval_metrics(ranks, gallery_size=1000)["R@1%"] == 80  # top 10
    assert retrieval_metrics(ranks, gallery_size=150)["R@1%"] == 20  # top 1


def test_localisation_on_known_distances():
    # 0.001 degree of latitude is ~111 m anywhere.
    d = haversine_m([10, 10, 10], [50, 50, 50], [10, 10, 10], [50.0003, 50.0006, 50.0012])
    assert d == pytest.approx([33.4, 66.7, 133.4], abs=0.5)
    one = haversine_m(10, 50, 10, 50.0003)  # four scalars: a plain float (the dock's table)
    assert type(one) is float and one == pytest.approx(d[0])
    m = localisation_metrics(d)
    assert m["L@50"] == pytest.approx(100 / 3) and m["L@100"] == pytest.approx(200 / 3)
    assert m["L@150"] == 100 and m["median_m"] == pytest.approx(66.7, abs=0.5)


def test_eval_command_refuses_a_folder_that_is_not_a_world(tmp_path):
    """`python -m geolab eval` on a folder without a world: one line, exit code 2."""
    from conftest import ROOT, run_cli

    r = run_cli("geolab", "eval", "--bundle", ROOT / "resources" / "demo" / "bundle",
                "--world", tmp_path, "--out", tmp_path / "eval")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a synthetic world (needs satellite.tif and drone/truth.csv)"
    ]
