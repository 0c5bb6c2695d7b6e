"""Checkpoint -> bundle: one ONNX encoder per tower, tokenizer.json, manifest.json.

Input contract, identical for any PyTorch tensor: image towers take `pixel_values` float32
[N, 3, H, W], already resized and normalised as the manifest says; the text tower takes
`input_ids` int64 [N, 77]. Every tower outputs `embedding` float32 [N, D], L2-normalised.
fp16 and int8 bundles keep these float32 inputs and outputs (the casts live inside the graph),
so the engine feeds every precision the same way.

The bundle is written to a temporary folder beside the target and renamed at the end: a bundle
folder on disk is complete or absent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import onnx
import torch
import transformers

from geobridge_qgis.core import bundle as B
from geobridge_qgis.core.defaults import EXPORT_PRECISIONS
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.outputs import check_new_folder
from geobridge_qgis.core.text import CONTEXT_LENGTH, EOT_ID, PAD_ID, SOT_ID

from . import __version__
from . import checkpoint as C
from . import model as M
from .tokenizer import build_clip_tokenizer

OPSET = 17
PRECISIONS = ("fp32", "fp16", "int8")


def parse_towers(text: str) -> tuple[str, ...]:
    towers = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in towers if t not in M.TOWERS]
    if bad or not towers:
        raise UserError(
            f"--towers: unknown tower {', '.join(bad) or '(none)'}; use {','.join(M.TOWERS)}"
        )
    return tuple(t for t in M.TOWERS if t in towers)


def load_model(
    checkpoint: Path, config, towers: tuple[str, ...] = M.TOWERS, trust_pickle: bool = False
) -> M.GeoBridge:
    """A GeoBridge in eval mode holding the checkpoint's weights (strictly checked)."""
    state = C.read_state_dict(checkpoint, trust_pickle=trust_pickle)
    model = M.GeoBridge(config, towers)
    C.load_into(model, state, checkpoint)
    return model.eval()


def example_input(model: M.GeoBridge, tower: str, batch: int = 2) -> torch.Tensor:
    if tower == "text":
        ids = torch.zeros(batch, CONTEXT_LENGTH, dtype=torch.long)
        ids[:, 0], ids[:, 1:4], ids[:, 4] = SOT_ID, 320, EOT_ID
        return ids
    size = model.image_size
    return torch.randn(batch, 3, size, size)


def input_name(tower: str) -> str:
    return "input_ids" if tower == "text" else "pixel_values"


def export_tower(model: M.GeoBridge, tower: str, path: Path) -> None:
    """One tower to fp32 ONNX with a dynamic batch axis (TorchScript exporter: fast, and
    exact to 1e-6 against eager for CLIP)."""
    name = input_name(tower)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.tower(tower),
            (example_input(model, tower),),
            str(path),
            dynamo=False,
            input_names=[name],
            output_names=["embedding"],
            dynamic_axes={name: {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
        )


@contextlib.contextmanager
def _quiet_root_warnings() -> Iterator[None]:
    """Hold back onnxruntime's quantizer warnings for one call, leaving the root logger as found.

    The quantizer logs a generic "consider pre-processing" warning on every call through the
    root logger itself (`logging.warning`, which also installs a stderr handler on a root
    logger that has none), so a module logger cannot silence it. A NullHandler keeps that
    handler from being installed; level and handlers are put back after the call.
    """
    root = logging.getLogger()
    level, hold = root.level, logging.NullHandler()
    root.addHandler(hold)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(hold)
        root.setLevel(level)


def convert_precision(src: Path, dst: Path, precision: str) -> None:
    """fp32 ONNX -> fp16 (float32 inputs and outputs kept) or int8 (dynamic quantisation of
    the matrix multiplications; the patch convolution stays fp32)."""
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_root_warnings():
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    else:
        shutil.copyfile(src, dst)


def set_metadata(path: Path, manifest: dict, tower: str) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in (
        (B.METADATA_KEY, json.dumps(B.manifest_for_metadata(manifest), sort_keys=True)),
        ("geobridge.tower", tower),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "geobridge-model_export"
    model.producer_version = __version__
    onnx.save(model, str(path))


def build_manifest(
    model: M.GeoBridge,
    model_id: str,
    name: str,
    precision: str,
    license: str,
    checkpoint: Path | None,
    checkpoint_sha256: str | None,
    config_source: str,
) -> dict:
    size = model.image_size
    towers = {}
    for tower in model.towers:
        if tower == "text":
            spec = {"name": "input_ids", "dtype": "int64", "context_length": CONTEXT_LENGTH}
        else:
            spec = {
                "name": "pixel_values",
                "dtype": "float32",
                "size": [size, size],
                "resample": "bicubic",
                "mean": list(B.IMAGENET_MEAN),
                "std": list(B.IMAGENET_STD),
                "flip_tta": True,
            }
        towers[tower] = {
            "file": f"{tower}.onnx",
            "kind": "text" if tower == "text" else "image",
            "input": spec,
            "output": {"name": "embedding", "dtype": "float32", "dim": model.embed_dim},
        }
    return {
        "format": B.FORMAT,
        "format_version": B.FORMAT_VERSION,
        "model_id": model_id,
        "name": name,
        "embed_dim": model.embed_dim,
        # exp() of the learnt parameter: the factor that turns cosines into logits.
        "logit_scale": math.exp(float(model.logit_scale.detach())),
        "precision": precision,
        "architecture": {"source": config_source, **M.config_to_dict(model.config)},
        "towers": towers,
        "tokenizer": None
        if "text" not in model.towers
        else {
            "file": B.TOKENIZER,
            "kind": "clip-bpe",
            "cleaning": B.TEXT_CLEANING,
            "context_length": CONTEXT_LENGTH,
            "sot_id": SOT_ID,
            "eot_id": EOT_ID,
            "pad_id": PAD_ID,
        },
        "provenance": {
            "checkpoint": checkpoint.name if checkpoint else None,
            "checkpoint_sha256": checkpoint_sha256,
            "exporter": f"geobridge model_export {__version__}",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx_opset": OPSET,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "license": license,
    }


def parse_precisions(value: str | Sequence[str]) -> tuple[str, ...]:
    """ "fp32,fp16,int8" -> ("fp32", "fp16", "int8"); the first is the reference, stored as
    each tower's `file`; the others are variants beside it."""
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = tuple(dict.fromkeys(p.strip() for p in items if p.strip()))
    bad = [p for p in chosen if p not in PRECISIONS]
    if bad or not chosen:
        raise UserError(
            f"--precision: {', '.join(bad) or '(none)'}; use some of {','.join(PRECISIONS)}"
        )
    # fp32 is the reference whenever it is exported: the others are verified against it.
    return tuple(sorted(chosen, key=PRECISIONS.index))


def export_bundle(
    checkpoint: Path,
    out: Path,
    config,
    config_source: str,
    precision: str | Sequence[str] = EXPORT_PRECISIONS,
    towers: tuple[str, ...] = M.TOWERS,
    name: str = "GeoBridge",
    license: str = "unstated",
    trust_pickle: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Write a bundle for `checkpoint` to `out` (which must not exist), every tower in each
    precision asked for, each verified against PyTorch before the bundle is published.
    Returns the manifest."""
    from .verify import compare

    out = Path(out)
    check_new_folder(out)
    precisions = parse_precisions(precision)
    precision = precisions[0]
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint, config, towers, trust_pickle)
    model_id = C.weights_id(model)
    log(f"loaded {checkpoint} (model id {model_id}, towers {','.join(towers)})")
    manifest = build_manifest(
        model, model_id, name, precision, license, checkpoint, C.sha256(checkpoint), config_source
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        # The tokenizer first, so its hash is in the manifest copy each ONNX file carries.
        if "text" in towers:
            build_clip_tokenizer().save(str(tmp / B.TOKENIZER))
            manifest["tokenizer"]["sha256"] = B.sha256_file(tmp / B.TOKENIZER)
        tokenizer = tmp / B.TOKENIZER if "text" in towers else None
        for tower in towers:
            fp32 = tmp / f"{tower}.export-fp32.onnx"
            export_tower(model, tower, fp32)
            entry = manifest["towers"][tower]
            for p in precisions:
                path = tmp / (f"{tower}.onnx" if p == precision else f"{tower}.{p}.onnx")
                convert_precision(fp32, path, p)
                report = compare(model, tower, path, p, tokenizer, n=16)
                if not report.passed:
                    raise UserError(f"{checkpoint}: the {p} export fails verification: "
                                    f"{report.line()}")  # fmt: skip
                set_metadata(path, manifest, tower)
                record = {"file": path.name, "sha256": B.sha256_file(path),
                          "min_cos": round(report.min_cos, 6),
                          "top1_agreement": report.top1_agreement}  # fmt: skip
                if p == precision:
                    entry.update(sha256=record["sha256"])
                else:
                    entry.setdefault("variants", {})[p] = record
                log(f"  {tower}: {path.stat().st_size / 1e6:.1f} MB {p}, "
                    f"min cos {report.min_cos:.5f}")  # fmt: skip
            fp32.unlink()
        (tmp / B.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}")
    return manifest
