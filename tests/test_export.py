"""Export: ONNX parity per tower, precisions, manifest and metadata, atomic output, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import run_cli

from geobridge_qgis.core import bundle as B
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.text import TextTokenizer
from model_export import checkpoint as C
from model_export import model as M
from model_export.export import export_bundle
from model_export.verify import verify


def test_onnx_matches_pytorch_per_tower(tiny_model, tiny_bundle):
    bundle = B.Bundle.load(tiny_bundle)
    rng = np.random.default_rng(1)
    texts = ["a lake", "three red roofs beside a long straight road and a field", "x " * 90]
    tok = TextTokenizer(bundle.tokenizer_path)
    for name, tower in bundle.towers.items():
        session = ort.InferenceSession(str(tower.path), providers=["CPUExecutionProvider"])
        if name == "text":
            x = tok(texts)  # end tokens at different positions, batch 3 (exported with 2)
        else:
            x = rng.normal(size=(5, 3, 32, 32)).astype(np.float32)
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            want = tiny_model.tower(name)(torch.from_numpy(x)).numpy()
        assert got.shape == (len(x), 32)
        assert np.abs(got - want).max() < 1e-5, name
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        # Different inputs give different embeddings: the check above is not vacuous.
        assert np.abs(got[0] - got[1]).max() > 1e-3


def test_verify_fp32_passes_and_catches_another_model(tiny_checkpoint, tiny_bundle, tmp_path):
    reports = verify(tiny_checkpoint, tiny_bundle, n=8)
    assert [r.tower for r in reports] == list(M.TOWERS)
    assert all(r.passed and r.max_abs < 1e-4 and r.mean_cos > 0.9999 for r in reports)

    torch.manual_seed(123)
    other = tmp_path / "other.pth"
    torch.save(M.GeoBridge(M.preset_config("tiny")).state_dict(), other)
    assert not any(r.passed for r in verify(other, tiny_bundle, n=8))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_low_precision_keeps_cosine(precision, tiny_checkpoint, tmp_path):
    out = tmp_path / precision
    export_bundle(tiny_checkpoint, out, M.preset_config("tiny"), "preset:tiny",
                  precision=precision, log=lambda _: None)  # fmt: skip
    assert B.Bundle.load(out).precision == precision
    reports = verify(tiny_checkpoint, out, n=16)
    assert all(r.min_cos >= 0.99 and r.passed for r in reports)
    # The conversion really happened: the weights are stored in the lower precision.
    want = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.INT8
    graph = onnx.load(str(out / "drone.onnx")).graph
    assert sum(t.data_type == want for t in graph.initializer) >= 4
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_manifest_and_metadata(tiny_model, tiny_checkpoint, tiny_bundle):
    manifest = json.loads((tiny_bundle / B.MANIFEST).read_text())
    assert manifest["format"] == B.FORMAT and manifest["format_version"] == B.FORMAT_VERSION
    assert manifest["model_id"] == C.weights_id(tiny_model)
    assert manifest["embed_dim"] == 32 and manifest["precision"] == "fp32"
    assert manifest["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5)
    assert manifest["provenance"]["checkpoint_sha256"] == C.sha256(tiny_checkpoint)
    assert manifest["architecture"]["vision_config"]["image_size"] == 32
    drone = manifest["towers"]["drone"]["input"]
    assert drone["size"] == [32, 32] and drone["resample"] == "bicubic" and drone["flip_tta"]
    assert drone["mean"] == list(B.IMAGENET_MEAN) and drone["std"] == list(B.IMAGENET_STD)
    assert manifest["towers"]["text"]["input"] == {
        "name": "input_ids", "dtype": "int64", "context_length": 77}  # fmt: skip
    assert manifest["tokenizer"]["cleaning"] == B.TEXT_CLEANING
    for name, tower in manifest["towers"].items():
        path = tiny_bundle / tower["file"]
        assert B.sha256_file(path) == tower["sha256"] == C.sha256(path)
        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        assert props["geobridge.tower"] == name
        assert json.loads(props[B.METADATA_KEY]) == B.manifest_for_metadata(manifest)
        assert "sha256" not in json.loads(props[B.METADATA_KEY])["towers"][name]
    loaded = B.Bundle.load(tiny_bundle)
    assert loaded.model_id == manifest["model_id"] and set(loaded.towers) == set(M.TOWERS)


def test_tampered_bundle_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "street.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match=r"street.onnx: checksum does not match"):
        B.Bundle.load(copy)
    manifest = json.loads((copy / B.MANIFEST).read_text())
    manifest["format_version"] = 99
    (copy / B.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="format version 99"):
        B.Bundle.load(copy)


def _bad_inputs(tmp_path, tiny_checkpoint):
    text = tmp_path / "notes.pth"
    text.write_text("these are my field notes, not weights\n")
    truncated = tmp_path / "truncated.pth"
    data = tiny_checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, other)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    return {
        "not a checkpoint": (text, "not a PyTorch checkpoint"),
        "truncated": (truncated, "not a PyTorch checkpoint, or truncated"),
        "another architecture": (other, "not a GeoBridge checkpoint"),
        "empty": (empty, "not a PyTorch checkpoint"),
        "another size": (tiny_checkpoint, "it fits --preset tiny"),
    }


def test_bad_inputs_exit_2_with_one_line(tmp_path, tiny_checkpoint):
    outdir = tmp_path / "bundles"
    outdir.mkdir()
    for case, (ckpt, expected) in _bad_inputs(tmp_path, tiny_checkpoint).items():
        preset = "demo" if case == "another size" else "tiny"
        r = run_cli("model_export", "export", "--preset", preset, "--checkpoint", ckpt,
                    "--out", outdir / "b")  # fmt: skip
        assert r.returncode == 2, (case, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, case
        assert str(ckpt) in r.stderr and expected in r.stderr, (case, r.stderr)
    assert list(outdir.iterdir()) == []  # nothing half-written


def test_existing_output_folder_is_refused(tiny_checkpoint, tiny_bundle):
    before = sorted(p.name for p in tiny_bundle.iterdir())
    r = run_cli("model_export", "export", "--preset", "tiny", "--checkpoint", tiny_checkpoint,
                "--out", tiny_bundle)  # fmt: skip
    assert r.returncode == 2 and f"{tiny_bundle}: already exists" in r.stderr
    assert sorted(p.name for p in tiny_bundle.iterdir()) == before


def test_failed_export_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    from model_export import export as E

    def boom(*_a, **_k):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(E, "set_metadata", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        export_bundle(tiny_checkpoint, tmp_path / "b", M.preset_config("tiny"), "preset:tiny",
                      log=lambda _: None)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_cli_export_then_verify(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    r = run_cli("model_export", "export", "--preset", "tiny", "--checkpoint", tiny_checkpoint,
                "--out", out, "--towers", "satellite,drone", "--license", "CC-BY-4.0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / B.MANIFEST).read_text())
    assert list(manifest["towers"]) == ["drone", "satellite"] and manifest["tokenizer"] is None
    assert manifest["license"] == "CC-BY-4.0"
    v = run_cli("model_export", "verify", "--checkpoint", tiny_checkpoint, "--bundle", out)
    assert v.returncode == 0, v.stdout + v.stderr
    # Two towers in each of the three default precisions, every one verified.
    assert v.stdout.count(" ok") == 6 and "FAIL" not in v.stdout
    assert all(f"{t} {p}" in " ".join(v.stdout.split())
               for t in ("drone", "satellite") for p in ("fp32", "fp16", "int8"))  # fmt: skip


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A tiny model whose every tensor is distinct, as a trained one's are (an untrained one's
    zero biases and unit norms are stored once by the exporter), and its fp32 bundle."""
    torch.manual_seed(1)
    model = M.GeoBridge(M.preset_config("tiny"), ("drone", "text")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("trained")
    torch.save(model.state_dict(), root / "t.pth")
    export_bundle(root / "t.pth", root / "bundle", M.preset_config("tiny"), "preset:tiny",
                  precision="fp32", towers=("drone", "text"), name="t",
                  log=lambda _: None)  # fmt: skip
    return model, root / "bundle"


def test_recover_reads_a_bundle_back_into_its_checkpoint(trained_like, tmp_path):
    model, bundle = trained_like
    out = tmp_path / "recovered.pth"
    r = run_cli("model_export", "recover", "--bundle", bundle, "--out", out)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((bundle / B.MANIFEST).read_text())
    assert manifest["model_id"] in r.stdout
    got, want = torch.load(out, weights_only=True), model.state_dict()
    assert sorted(got) == sorted(want)
    for k, v in want.items():  # bit for bit: every linear layer found its own weight
        assert torch.equal(got[k], v), k
    # The recovered checkpoint gives the bundle's outputs.
    v = run_cli("model_export", "verify", "--checkpoint", out, "--bundle", bundle)
    assert v.returncode == 0 and "FAIL" not in v.stdout, v.stdout + v.stderr


def test_recover_refuses_what_it_cannot_read_back(trained_like, tiny_bundle, tmp_path):
    shutil.copytree(trained_like[1], tmp_path / "b")
    path = tmp_path / "b" / B.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["model_id"] = "0123456789abcdef"
    path.write_text(json.dumps(manifest))
    cases = [
        (tmp_path / "b", "0123456789abcdef"),  # weights that are not the manifest's model
        (tiny_bundle, "share one stored tensor"),  # untrained: zero biases stored once
        (tmp_path, "not a GeoBridge bundle"),
    ]
    for i, (bundle, words) in enumerate(cases):
        out = tmp_path / f"x{i}.pth"
        r = run_cli("model_export", "recover", "--bundle", bundle, "--out", out)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()
