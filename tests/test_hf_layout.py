"""A checkpoint laid out as the official release (four whole transformers CLIPModels, one per
tower) with the config.json that transformers itself writes exports to towers that agree with
CLIPModel's own get_image_features / get_text_features."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import torch
from conftest import run_cli
from transformers import CLIPConfig, CLIPModel

from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.text import TextTokenizer

TOWERS = ("drone", "satellite", "street", "text")
PROJ = 24  # not transformers' default 512: the case the sub-configs get wrong


def _config() -> CLIPConfig:
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return CLIPConfig(
        projection_dim=PROJ,
        vision_config={**small, "image_size": 32, "patch_size": 8},
        text_config={**small, "vocab_size": 49408, "max_position_embeddings": 77},
    )


def test_transformers_config_and_official_layout_export(tmp_path):
    config = _config()
    written = json.loads(config.to_json_string())
    # The trap: transformers writes its default 512 into the sub-configs.
    assert written["projection_dim"] == PROJ
    assert written["vision_config"].get("projection_dim", 512) != PROJ
    (tmp_path / "config.json").write_text(config.to_json_string())

    models, state = {}, {}
    for seed, tower in enumerate(TOWERS):
        torch.manual_seed(seed)
        models[tower] = CLIPModel(config).eval()
        state.update(
            {f"{tower}_encoder.CLIP.{k}": v for k, v in models[tower].state_dict().items()}
        )
    state["logit_scale"] = torch.tensor(2.6592)
    torch.save(state, tmp_path / "geobridge.pth")

    args = ["--clip-config", tmp_path / "config.json", "--checkpoint", tmp_path / "geobridge.pth"]
    r = run_cli("model_export", "export", *args, "--out", tmp_path / "bundle")
    assert r.returncode == 0, r.stderr
    bundle = Bundle.load(tmp_path / "bundle")
    assert bundle.embed_dim == PROJ

    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
    tokens = TextTokenizer(bundle.tokenizer_path)(["a lake", "a church beside a roundabout"])
    outputs = {}
    for tower in TOWERS:
        session = ort.InferenceSession(str(bundle.towers[tower].path),
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        x = tokens if tower == "text" else pixels
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            if tower == "text":
                want = models[tower].get_text_features(input_ids=torch.from_numpy(x))
            else:
                want = models[tower].get_image_features(pixel_values=torch.from_numpy(x))
        want = getattr(want, "pooler_output", want)
        want = torch.nn.functional.normalize(want, dim=-1).numpy()
        assert got.shape == want.shape == (len(x), PROJ)
        assert np.abs(got - want).max() < 1e-4, tower
        outputs[tower] = got
    # Each tower carries its own weights: the drone and satellite towers differ.
    assert np.abs(outputs["drone"] - outputs["satellite"]).max() > 1e-3
