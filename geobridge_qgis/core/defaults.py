"""Every user-facing default, in one place.

The command line (argparse defaults and help), the Processing algorithms' parameters, the
dock's widgets and the plugin's settings all read these; the engine's functions use them as
their keyword defaults. Tuning constants that only one algorithm knows (SIFT thresholds, the
merge overlap) stay beside that algorithm.
"""

from __future__ import annotations

# Index building: the chip grid.
CHIP_SIZES: tuple[float, ...] = (100.0, 150.0)  # metres; GeoLoc's satellite crops are 80-180 m
OVERLAP = 0.5  # share of a chip shared with its neighbour: stride = size * (1 - overlap)
MAX_CHIPS = 250_000  # above this a build is refused: a region too large for one machine's index
EXACT_MAX_CHIPS = 200_000  # an exact (Flat) index up to this many chips, IVF,SQ8 above
TOWER = "satellite"  # the tower that embeds the reference imagery
BATCH_SIZE = 32  # chips per encoder batch
FLIP = True  # flip test-time augmentation of chips: a little fidelity for twice the encoding
PRECISION = "auto"  # fp16 on a GPU, int8 on a CPU where faster, else the bundle's reference
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")  # what an export writes

# Locating.
TOP_K = 10  # candidates returned
ROTATIONS: tuple[int, ...] = (0, 90, 180, 270)  # a drone's heading is unknown; gallery is north-up
VIEW = "drone"  # the tower a query photo goes through
VIEWS: tuple[str, ...] = ("drone", "street", "satellite")  # satellite: nadir ortho
TEXT_WEIGHT = 0.5  # weight of a description fused with a photo
RERANK = True
REFINE = True
RERANK_TOP = 10  # candidates matched geometrically
GPS_RADIUS_M = 15.0  # consumer GNSS on a drone: a few metres, plus some margin

# onnxruntime execution providers, in order of preference.
PROVIDERS: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def provider_names(names: str | tuple[str, ...] | list[str] | None) -> list[str] | None:
    """onnxruntime's names for short ones ("cuda,cpu" -> [...]); None or empty -> None (auto)."""
    if not names:
        return None
    items = names.split(",") if isinstance(names, str) else list(names)
    full = [PROVIDER_NAMES.get(p.strip().lower(), p.strip()) for p in items if p.strip()]
    return full or None
