"""Checkpoint layouts the exporter accepts, and the key errors it reports."""

from __future__ import annotations

import textwrap

import pytest
import torch
from transformers import CLIPModel

from geobridge_qgis.core.errors import UserError
from model_export import checkpoint as C
from model_export import model as M
from model_export.export import load_model

CONFIG = M.preset_config("tiny")


def official_layout(model: M.GeoBridge) -> dict[str, torch.Tensor]:
    """The tiny model's weights as the official release stores them: each tower a whole
    CLIPModel (the unused half included, with random values) plus position_ids buffers."""
    state = {"logit_scale": model.logit_scale.detach().clone()}
    for tower in M.TOWERS:
        full = CLIPModel(CONFIG).state_dict()
        for key, value in model.tower(tower).state_dict().items():
            full[key.removeprefix("CLIP.")] = value
        full["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
        full["text_model.embeddings.position_ids"] = torch.arange(77)[None]
        state.update({f"{tower}_encoder.CLIP.{k}": v for k, v in full.items()})
    return state


def test_official_layout_loads_and_drops_unused_halves(tiny_model, tmp_path):
    path = tmp_path / "official.pth"
    state = official_layout(tiny_model)
    assert any(k.startswith("drone_encoder.CLIP.text_model.") for k in state)
    torch.save(state, path)
    loaded = load_model(path, CONFIG)
    assert C.weights_id(loaded) == C.weights_id(tiny_model)


@pytest.mark.parametrize(
    "layout", ["module-prefix", "wrapped", "safetensors", "safetensors-as-bin"]
)
def test_checkpoint_layouts(layout, tiny_model, tmp_path):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    if layout == "module-prefix":
        path = tmp_path / "ckpt.pt"
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif layout == "wrapped":
        path = tmp_path / "ckpt.pth"
        torch.save({"epoch": 3, "state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / ("ckpt.safetensors" if layout == "safetensors" else "ckpt.bin")
        save_file(state, str(path))
    assert C.weights_id(load_model(path, CONFIG)) == C.weights_id(tiny_model)


def test_weights_id_changes_with_weights(tiny_model):
    other = M.GeoBridge(CONFIG)
    other.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        other.text_encoder.CLIP.text_projection.weight[0, 0] += 1e-3
    assert C.weights_id(other) != C.weights_id(tiny_model)


def test_missing_and_unexpected_keys_are_listed(tiny_model, tmp_path):
    state = dict(tiny_model.state_dict())
    gone = "satellite_encoder.CLIP.visual_projection.weight"
    del state[gone]
    state["drone_encoder.CLIP.vision_model.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_model(path, CONFIG)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    assert "1 missing: " + gone in msg
    assert "1 unexpected: drone_encoder.CLIP.vision_model.extra_head.weight" in msg


def test_wrong_size_names_the_fitting_preset(tiny_checkpoint):
    with pytest.raises(UserError, match=r"another size: .*it fits --preset tiny"):
        load_model(tiny_checkpoint, M.preset_config("demo"))


def test_towers_subset_needs_only_those_weights(tiny_model, tmp_path):
    state = {k: v for k, v in tiny_model.state_dict().items() if not k.startswith("text_")}
    path = tmp_path / "images-only.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="missing: text_encoder"):
        load_model(path, CONFIG)
    model = load_model(path, CONFIG, towers=("drone", "satellite"))
    assert model.towers == ("drone", "satellite") and not hasattr(model, "text_encoder")


OFFICIAL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn
    from transformers import CLIPModel

    class ImageEncoder(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.CLIP = CLIPModel(config)

    class TextEncoder(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.CLIP = CLIPModel(config)

    class GeoBridge(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.drone_encoder = ImageEncoder(config)
            self.satellite_encoder = ImageEncoder(config)
            self.street_encoder = ImageEncoder(config)
            self.text_encoder = TextEncoder(config)
            self.logit_scale = nn.Parameter(torch.ones([]) * 2.6592)
    """
)


@pytest.fixture(scope="module")
def official_pickle(tiny_model, tmp_path_factory, monkeypatch_module):
    """A whole-model pickle like the released best_net.pth, saved from a module that the
    loading side cannot import (as a user's machine lacks the official source)."""
    src = tmp_path_factory.mktemp("official_src")
    (src / "geobridge_release").mkdir()
    (src / "geobridge_release" / "__init__.py").write_text("")
    (src / "geobridge_release" / "model.py").write_text(OFFICIAL_SOURCE)
    monkeypatch_module.syspath_prepend(str(src))
    from geobridge_release.model import GeoBridge as Official

    official = Official(CONFIG)
    state = official_layout(tiny_model)
    official.load_state_dict({k: v for k, v in state.items() if "position_ids" not in k})
    path = tmp_path_factory.mktemp("pickle") / "best_net.pth"
    torch.save(official, path)
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_whole_model_pickle_needs_the_flag(official_pickle, tiny_model, tmp_path):
    from conftest import run_cli

    refused = run_cli("model_export", "export", "--preset", "tiny", "--checkpoint",
                      official_pickle, "--out", tmp_path / "b1")  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and str(official_pickle) in refused.stderr
    assert "--trust-pickle" in refused.stderr and not (tmp_path / "b1").exists()

    # The official classes live in a module this process cannot import: they are mapped.
    done = run_cli("model_export", "export", "--preset", "tiny", "--checkpoint",
                   official_pickle, "--out", tmp_path / "b2", "--trust-pickle")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"model id {C.weights_id(tiny_model)}" in done.stdout
