"""Several precisions in one bundle, and the one that runs chosen per device."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import run_cli

from geobridge_qgis.core import precision as P
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.encoders import Encoders
from geobridge_qgis.core.errors import UserError
from model_export import model as M
from model_export.export import export_bundle


@pytest.fixture(scope="module")
def multi_bundle(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "bundle"
    export_bundle(tiny_checkpoint, out, M.preset_config("tiny"), "preset:tiny", name="multi",
                  log=lambda _: None)  # fmt: skip
    return out


def _write_timing(bundle: Bundle, int8_ms: float, ref_ms: float) -> None:
    import onnxruntime as ort

    path = P._cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"{P.cpu_model()}|onnxruntime {ort.__version__}|{bundle.model_id}"
    path.write_text(json.dumps({key: {"int8_ms": int8_ms, "ref_ms": ref_ms}}))


def test_export_writes_three_verified_precisions(multi_bundle):
    bundle = Bundle.load(multi_bundle)
    assert bundle.precisions == ["fp32", "fp16", "int8"] and bundle.precision == "fp32"
    for tower in bundle.towers.values():
        assert tower.path_for("fp32") == tower.path
        kinds = {p: {t.data_type for t in onnx.load(str(tower.path_for(p))).graph.initializer}
                 for p in bundle.precisions}  # fmt: skip
        assert onnx.TensorProto.FLOAT16 in kinds["fp16"] and onnx.TensorProto.INT8 in kinds["int8"]
        assert onnx.TensorProto.INT8 not in kinds["fp32"]
    for p in ("fp16", "int8"):
        assert bundle.variant_agreement(p) >= 0.99
    r = run_cli("model_export", "verify", "--checkpoint", "/dev/null", "--bundle", multi_bundle)
    assert r.returncode == 2  # a bad checkpoint is one line, not a traceback
    assert r.stderr.count("\n") == 1


def test_cpu_picks_int8_only_where_it_is_faster(multi_bundle):
    bundle = Bundle.load(multi_bundle)
    cpu = ["CPUExecutionProvider"]
    _write_timing(bundle, int8_ms=10.0, ref_ms=30.0)
    assert P.choose(bundle, cpu) == "int8"
    _write_timing(bundle, int8_ms=29.0, ref_ms=30.0)
    assert P.choose(bundle, cpu) == "fp32"
    # A GPU first in the list runs fp16 (providers are only named: no GPU is needed here).
    assert P.choose(bundle, ["CUDAExecutionProvider", *cpu]) == "fp16"
    assert P.choose(bundle, cpu, "fp16") == "fp16"  # an explicit choice wins
    with pytest.raises(UserError, match="no fp16 encoders"):
        P.choose(_single(multi_bundle), cpu, "fp16")


def _single(multi_bundle):
    """A bundle that holds fp32 only: the manifest without its variants (an older bundle)."""
    bundle = Bundle.load(multi_bundle)
    manifest = json.loads(json.dumps(bundle.manifest))
    for t in manifest["towers"].values():
        t.pop("variants", None)
    return Bundle(bundle.root, manifest)


def test_measurement_runs_once_and_is_kept(multi_bundle):
    bundle = Bundle.load(multi_bundle)
    P._cache_path().unlink(missing_ok=True)
    timing = P.cpu_timing(bundle)
    assert timing["int8_ms"] > 0 and timing["ref_ms"] > 0
    cached = json.loads(P._cache_path().read_text())
    assert list(cached.values()) == [timing]
    assert P.cpu_timing(bundle) == timing  # read back, not measured again


def test_encoders_run_the_chosen_precision_and_agree(multi_bundle):
    bundle = Bundle.load(multi_bundle)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    out = {}
    for p in bundle.precisions:
        enc = Encoders(bundle, ["CPUExecutionProvider"], precision=p)
        assert enc.precision == p
        assert enc.session("satellite")._model_path.endswith(
            bundle.towers["satellite"].path_for(p).name
        )
        out[p] = enc.encode_images("satellite", images)
    for p in ("fp16", "int8"):
        assert np.min(np.sum(out[p] * out["fp32"], axis=1)) >= 0.99


def test_index_records_its_precision_and_queries_use_it(multi_bundle, utm_raster, tmp_path):
    bundle = Bundle.load(multi_bundle)
    _write_timing(bundle, int8_ms=10.0, ref_ms=30.0)  # this "CPU" prefers int8
    index = tmp_path / "index"
    r = run_cli("geobridge_qgis", "index", "--bundle", multi_bundle, "--raster", utm_raster,
                "--chip-sizes", "200", "--out", index)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((index / "index.json").read_text())["precision"] == "int8"
    r = run_cli("geobridge_qgis", "locate", "--bundle", multi_bundle, "--index", index,
                "--text", "a field", "--top-k", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "(int8)" in r.stderr  # the session says which precision runs
    # The same index opened with a bundle that lacks int8: one line, exit code 2.
    single = tmp_path / "single"
    single.mkdir()
    for f in multi_bundle.iterdir():
        (single / f.name).symlink_to(f)
    (single / "manifest.json").unlink()
    (single / "manifest.json").write_text(json.dumps(_single(multi_bundle).manifest))
    r = run_cli("geobridge_qgis", "locate", "--bundle", single, "--index", index, "--text", "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "int8" in r.stderr, r.stderr
