"""GeoBridge in PyTorch, laid out like the official release so its state dicts load unchanged.

The official model holds four `transformers.CLIPModel`s (`drone_encoder.CLIP`, ...) and uses only
one half of each: the image towers call `get_image_features`, the text tower
`get_text_features`. Here each tower holds only the half it uses, under the same attribute
path (`CLIPVisionModelWithProjection` has `vision_model` + `visual_projection`,
`CLIPTextModelWithProjection` has `text_model` + `text_projection`), so the used keys match the
official names one for one and the unused halves are dropped on purpose at load time.
Configs are made in code (presets) or read from a HuggingFace `config.json`: nothing comes from
a hub.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPConfig, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from geobridge_qgis.core.errors import UserError

IMAGE_TOWERS = ("drone", "satellite", "street")
TOWERS = (*IMAGE_TOWERS, "text")
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408

# name -> (vision kwargs, text kwargs, projection_dim). The official GeoBridge is vit-l-14
# (OpenAI CLIP ViT-L/14 sizes). The small ones keep the architecture and change only sizes.
PRESETS: dict[str, tuple[dict, dict, int]] = {
    "vit-l-14": (
        dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
            image_size=224,
        ),
        dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
        ),
        768,
    ),
    # The demo model (issue 4): small enough to train on 2 CPU cores.
    "demo": (
        dict(
            hidden_size=192,
            intermediate_size=768,
            num_hidden_layers=6,
            num_attention_heads=4,
            patch_size=16,
            image_size=128,
        ),
        dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
        128,
    ),
    # Tests: a few hundred kB of transformer weights plus the 49408-token embedding table.
    "tiny": (
        dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=8,
            image_size=32,
        ),
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        32,
    ),
}


def preset_config(name: str) -> CLIPConfig:
    """A CLIPConfig for a named preset."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    vision, text, proj = PRESETS[name]
    return _clip_config(
        vision_config={**vision, "hidden_act": "quick_gelu", "projection_dim": proj},
        text_config={
            **text,
            "hidden_act": "quick_gelu",
            "projection_dim": proj,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": CONTEXT_LENGTH,
        },
        projection_dim=proj,
    )


def config_from_file(path: Path) -> CLIPConfig:
    """A CLIPConfig from a HuggingFace CLIP `config.json`."""
    try:
        return config_from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a HuggingFace CLIP config.json ({e})") from None


def config_to_dict(config: CLIPConfig) -> dict:
    """The sizes that define the architecture, as a HuggingFace config.json would hold them."""
    return {
        "vision_config": config.vision_config.to_diff_dict(),
        "text_config": config.text_config.to_diff_dict(),
        "projection_dim": config.projection_dim,
    }


def config_from_dict(data: dict) -> CLIPConfig:
    vision, text = dict(data["vision_config"]), dict(data["text_config"])
    # CLIPModel projects with the top-level projection_dim (512 when absent) and ignores the
    # sub-configs' value, which transformers writes as its own default 512 whatever the model.
    proj = data.get("projection_dim", 512)
    vision["projection_dim"] = text["projection_dim"] = proj
    return _clip_config(vision_config=vision, text_config=text, projection_dim=proj)


def _clip_config(**kwargs) -> CLIPConfig:
    config = CLIPConfig(**kwargs)
    # Eager attention exports to plain ONNX ops on every opset and matches PyTorch bit for bit.
    for sub in (config, config.vision_config, config.text_config):
        sub._attn_implementation = "eager"
    return config


class ImageTower(nn.Module):
    """One image tower (drone, satellite or street): pixels -> L2-normalised embedding."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.CLIP = CLIPVisionModelWithProjection(config.vision_config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.CLIP(pixel_values=pixel_values).image_embeds, dim=-1)


class TextTower(nn.Module):
    """The text tower: CLIP token ids [N, 77] -> L2-normalised embedding.

    No attention mask: the text model pools at the end-of-text token under a causal mask, so
    zero padding after it cannot change the result.
    """

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.CLIP = CLIPTextModelWithProjection(config.text_config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.CLIP(input_ids=input_ids).text_embeds, dim=-1)


class GeoBridge(nn.Module):
    """The four towers in one embedding space, with CLIP's learnable temperature."""

    def __init__(self, config: CLIPConfig, towers: tuple[str, ...] = TOWERS):
        super().__init__()
        self.config = config
        self.towers = tuple(towers)
        for name in self.towers:
            tower = TextTower(config) if name == "text" else ImageTower(config)
            setattr(self, f"{name}_encoder", tower)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def tower(self, name: str) -> nn.Module:
        return getattr(self, f"{name}_encoder")

    @property
    def embed_dim(self) -> int:
        return self.config.projection_dim

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size
