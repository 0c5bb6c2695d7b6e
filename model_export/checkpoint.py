"""Read a GeoBridge checkpoint into a state dict that matches `model.GeoBridge` key for key.

Accepted: state dicts saved with `torch.save` (.pth/.pt/.bin, optionally wrapped as
{"state_dict": ...} or {"model": ...}) and safetensors files (recognised by content, not by
suffix), with or without DataParallel's `module.` prefix. The official `best_net.pth` is a whole
pickled `nn.Module`: loading it runs code from the file, so it is only done when the user passes
`--trust-pickle`, and its classes (GeoBridge, ImageEncoder, TextEncoder at whatever module path
they were saved from) are mapped onto ours so the original source is not needed.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
import types
import zipfile
from pathlib import Path

import torch
from torch import nn

from geobridge_qgis.core.bundle import sha256_file
from geobridge_qgis.core.errors import UserError

from . import model as M

# Each official tower is a whole CLIPModel; the half it never calls is dropped on purpose.
_UNUSED = re.compile(
    r"^(?:(?:drone|satellite|street)_encoder\.CLIP\.(?:text_model\.|text_projection\.|logit_scale$)"
    r"|text_encoder\.CLIP\.(?:vision_model\.|visual_projection\.|logit_scale$)"
    # transformers < 4.31 saved position_ids as a persistent buffer; they are arange(n).
    r"|.*\.embeddings\.position_ids$)"
)


def sha256(path: Path) -> str:
    return sha256_file(path, cache=False)


def read_state_dict(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, keys without a `module.` prefix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if _looks_like_safetensors(path):
        obj = _read_safetensors(path)
    else:
        obj = _read_torch(path, trust_pickle)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict", "net"):
            if isinstance(obj.get(wrapper), dict | nn.Module):
                inner = obj[wrapper]
                obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
                break
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: holds no state dict (found {type(obj).__name__})")
    tensors = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path}: holds no tensors")
    return tensors


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < n < path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: damaged safetensors file ({_first_line(e)})") from None


def _read_torch(path: Path, trust_pickle: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise UserError(f"{path}: not a PyTorch checkpoint ({_first_line(e)})") from None
        if not trust_pickle:
            raise UserError(
                f"{path}: a pickled whole model, which runs code when loaded; "
                "pass --trust-pickle only if you trust where it came from"
            ) from None
    except Exception as e:  # weights_only parsing of a junk file fails in many ways, all safe
        raise UserError(
            f"{path}: not a PyTorch checkpoint, or truncated ({_first_line(e)})"
        ) from None
    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_trusted_pickle()
        )
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise UserError(f"{path}: cannot unpickle ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _Stub(nn.Module):
    """Stands in for a pickled class that cannot be imported here; only its tensors matter."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            super().__setstate__(state)
        else:
            nn.Module.__init__(self)

    def __init__(self, *args, **kwargs):
        # pickle may rebuild an object by calling its class with the original arguments
        super().__init__()


def _trusted_pickle() -> types.ModuleType:
    official = {"GeoBridge": M.GeoBridge, "ImageEncoder": M.ImageTower, "TextEncoder": M.TextTower}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if name in official and not module.startswith(("torch", "transformers")):
                return official[name]
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                # Classes renamed or removed since the model was saved (e.g. transformers'
                # CLIPSdpaAttention): the module tree and its tensors are all we read.
                return _Stub

    mod = types.ModuleType("geobridge_trusted_pickle")
    mod.Unpickler = Unpickler
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()
    mod.loads = lambda b, **kw: Unpickler(io.BytesIO(b), **kw).load()
    return mod


def load_into(model: M.GeoBridge, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy a checkpoint's tensors into `model`, strictly: every weight the chosen towers need
    must be there with its shape, and nothing unknown may be left over."""
    expected = model.state_dict()
    wanted = tuple(f"{t}_encoder." for t in model.towers)
    other_towers = tuple(f"{t}_encoder." for t in M.TOWERS if t not in model.towers)
    used = {
        k: v
        for k, v in state.items()
        if not _UNUSED.match(k) and not (other_towers and k.startswith(other_towers))
    }
    missing = sorted(k for k in expected if k not in used)
    unexpected = sorted(k for k in used if k not in expected)
    mismatched = sorted(
        f"{k} {list(used[k].shape)} (model {list(expected[k].shape)})"
        for k in expected
        if k in used and used[k].shape != expected[k].shape
    )
    if mismatched or missing or unexpected:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} weights of another size: {_some(mismatched)}")
        if missing:
            parts.append(f"{len(missing)} missing: {_some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_some(unexpected)}")
        hint = _preset_hint(state, model.towers)
        if not any(k.startswith(wanted) for k in used):
            hint = " (not a GeoBridge checkpoint?)"
        raise UserError(f"{path}: does not fit the model: {'; '.join(parts)}{hint}")
    model.load_state_dict({k: v.float() for k, v in used.items()}, strict=True)


def _some(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _preset_hint(state: dict[str, torch.Tensor], towers: tuple[str, ...]) -> str:
    """Name a preset whose shapes fit the checkpoint, built on the meta device (no memory)."""
    for name in M.PRESETS:
        with torch.device("meta"):
            candidate = M.GeoBridge(M.preset_config(name), towers).state_dict()
        if all(k in state and state[k].shape == v.shape for k, v in candidate.items()):
            return f" (it fits --preset {name})"
    return ""


def weights_id(model: M.GeoBridge) -> str:
    """The model id: a hash of the weights themselves, the same whichever file format held them."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to(torch.float32).contiguous().cpu()
        digest.update(f"{key}|{list(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]
