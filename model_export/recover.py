"""Read a fp32 bundle's ONNX towers back into a GeoBridge state dict (official key names).

A bundle is what gets shipped and kept; the PyTorch checkpoint it came from may not be. To
train on from a shipped model (a second stage, `geolab train --init`), its weights are read
out of the ONNX graphs. The exporter keeps most initializers under their module names; each
linear layer's weight is folded into a MatMul operand named `onnx::MatMul_*` (transposed).
Which layer a MatMul belongs to is read off the graph: the Add that follows it adds that
layer's named bias; the two bias-free projections (`visual_projection`, `text_projection`)
are each tower's one MatMul with an initializer and no bias. The weights read back are trusted
only when they hash to the manifest's model id (the exporter's hash of every weight).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.errors import UserError

from . import model as M
from .checkpoint import load_into, weights_id

_PROJECTION = {"text": "text_projection.weight"}  # image towers: visual_projection.weight


def recover(bundle_dir: Path) -> tuple[M.GeoBridge, str]:
    """The model a fp32 bundle was exported from, and its model id (checked against the
    manifest's)."""
    bundle = Bundle.load(bundle_dir)  # format, version and checksums
    if bundle.precision != "fp32":
        raise UserError(
            f"{bundle_dir}: weights can only be read back from a fp32 bundle "
            f"(this one is {bundle.precision})"
        )
    model = M.GeoBridge(M.config_from_dict(bundle.manifest["architecture"]), tuple(bundle.towers))
    load_into(model, state_dict_from_bundle(bundle), bundle_dir)
    got = weights_id(model)
    if got != bundle.model_id:
        raise UserError(
            f"{bundle_dir}: weights read back as model {got}, the manifest says {bundle.model_id}"
        )
    return model, got


def state_dict_from_bundle(bundle: Bundle) -> dict[str, torch.Tensor]:
    """The weights of every tower in a fp32 `bundle`, as read off its ONNX graphs."""
    import onnx
    from onnx import numpy_helper

    state: dict[str, torch.Tensor] = {}
    for tower, t in bundle.towers.items():
        path = t.path
        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        prefix = f"{tower}_encoder."
        for name, value in inits.items():
            if not name.startswith("onnx::"):
                state[prefix + name] = torch.from_numpy(value.copy())
        adds = {}  # a tensor -> the named bias an Add node adds to it
        for node in graph.node:
            if node.op_type == "Add":
                named = [i for i in node.input if i.endswith(".bias") and i in inits]
                if named:
                    other = [i for i in node.input if i != named[0]]
                    adds[other[0]] = named[0]
        if len(set(adds.values())) < len(adds):
            # The exporter stores identical tensors once (untrained zeros and ones, say): the
            # layers that share one can no longer be told apart.
            raise UserError(
                f"{path}: several layers share one stored tensor; their weights cannot be read back"
            )
        unmatched = []
        for node in graph.node:
            if node.op_type != "MatMul":
                continue
            weights = [i for i in node.input if i in inits and i.startswith("onnx::")]
            if not weights:
                continue
            w = torch.from_numpy(inits[weights[0]].T.copy())
            bias = adds.get(node.output[0])
            if bias is None:
                unmatched.append(w)
            else:
                state[prefix + bias[: -len("bias")] + "weight"] = w
        if len(unmatched) != 1:
            raise UserError(
                f"{path}: {len(unmatched)} linear layers without a named bias (expected 1): "
                "several layers share one stored tensor (the exporter stores identical tensors "
                "once); their weights cannot be read back"
            )
        state[prefix + "CLIP." + _PROJECTION.get(tower, "visual_projection.weight")] = unmatched[0]
    state["logit_scale"] = torch.tensor(math.log(bundle.logit_scale))
    return state
