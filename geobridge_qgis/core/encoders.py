"""onnxruntime sessions for a bundle's towers: made lazily, on GPU when there is one.

Providers are tried in the order TensorRT -> CUDA -> CPU by default (only those this
onnxruntime build has); pass `providers` to override. `device` says in plain words what runs
the encoders, for a UI to show: a GPU that was asked for but not used is the first thing
analysts ask about.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort

from .bundle import Bundle
from .errors import UserError
from .text import TextTokenizer
from .transform import to_pixel_values

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_DEVICE = {
    "TensorrtExecutionProvider": "GPU (TensorRT)",
    "CUDAExecutionProvider": "GPU (CUDA)",
    "CPUExecutionProvider": "CPU",
}


def available_providers(wanted: Sequence[str] | None = None) -> list[str]:
    """The wanted providers that this onnxruntime has, in order; CPU always last."""
    have = set(ort.get_available_providers())
    chosen = [p for p in (wanted or DEFAULT_PROVIDERS) if p in have]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # psutil is a dev tool, not a plugin dependency
        return os.cpu_count() or 1


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Encoders:
    """The bundle's encoders. Sessions are made on first use of each tower."""

    def __init__(
        self,
        bundle: Bundle,
        providers: Sequence[str] | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        precision: str = "auto",
    ):
        self.bundle = bundle
        self.providers = available_providers(providers)
        self.batch_size = batch_size
        self.threads = threads or physical_cores()
        self.requested_precision = precision or "auto"
        self._precision: str | None = None
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._tokenizer: TextTokenizer | None = None

    @property
    def precision(self) -> str:
        """The precision the towers run in (core.precision chooses it on first use)."""
        if self._precision is None:
            from .precision import choose

            self._precision = choose(
                self.bundle, self.providers, self.requested_precision, self.threads
            )
        return self._precision

    @property
    def active_provider(self) -> str:
        """The provider running (or, before the first session, about to run) the encoders."""
        for session in self._sessions.values():
            return session.get_providers()[0]
        return self.providers[0]

    @property
    def device(self) -> str:
        return _DEVICE.get(self.active_provider, self.active_provider)

    def session(self, tower: str) -> ort.InferenceSession:
        if tower not in self._sessions:
            towers = self.bundle.towers
            if tower not in towers:
                raise UserError(
                    f"{self.bundle.root}: this bundle has no {tower} tower "
                    f"(it has {', '.join(towers)})"
                )
            options = ort.SessionOptions()
            # One intra-op thread per physical core: hyper-threads share the vector units a
            # transformer saturates, and more threads than cores only add contention.
            options.intra_op_num_threads = self.threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.enable_cpu_mem_arena = True
            options.log_severity_level = 3  # provider fallbacks are reported through `device`
            self._sessions[tower] = ort.InferenceSession(
                str(towers[tower].path_for(self.precision)),
                options,
                providers=self._provider_options(tower),
            )
        return self._sessions[tower]

    def _provider_options(self, tower: str) -> list:
        out = []
        for p in self.providers:
            if p == "TensorrtExecutionProvider":
                cache = os.path.join(
                    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                    "geobridge",
                    "trt",
                )
                opts = {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                        "trt_fp16_enable": self.precision == "fp16"}  # fmt: skip
                spec = self.bundle.towers[tower]
                if spec.kind == "image":
                    # One engine for every batch from 1 to batch_size: without a profile
                    # TensorRT builds a new engine (a minute for ViT-L) for each new batch
                    # size, such as a build's last short batch or a photo's four rotations.
                    name, (h, w) = spec.input.get("name", "pixel_values"), spec.input["size"]
                    b = self.batch_size
                    opts["trt_profile_min_shapes"] = f"{name}:1x3x{h}x{w}"
                    opts["trt_profile_opt_shapes"] = f"{name}:{b}x3x{h}x{w}"
                    opts["trt_profile_max_shapes"] = f"{name}:{b}x3x{h}x{w}"
                out.append((p, opts))
            else:
                out.append(p)
        return out

    def _run(self, tower: str, x: np.ndarray) -> np.ndarray:
        session = self.session(tower)
        name = session.get_inputs()[0].name
        outs = [
            session.run(None, {name: x[i : i + self.batch_size]})[0]
            for i in range(0, len(x), self.batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, self.bundle.embed_dim), np.float32)

    def encode_pixels(self, tower: str, pixel_values: np.ndarray, flip: bool = True) -> np.ndarray:
        """float32 [N, 3, H, W] (preprocessed) -> normalised embeddings [N, D], with the
        manifest's flip test-time augmentation (mean of the image's and its mirror's) unless
        `flip` is False (an index built without it is queried without it)."""
        emb = self._run(tower, pixel_values)
        if flip and self.bundle.towers[tower].input.get("flip_tta"):
            mirrored = np.ascontiguousarray(pixel_values[..., ::-1])
            emb = normalize(emb + self._run(tower, mirrored))
        return emb.astype(np.float32)

    def encode_images(self, tower: str, images: list[np.ndarray], flip: bool = True) -> np.ndarray:
        """uint8 RGB arrays -> normalised embeddings [N, D] (`flip` as in `encode_pixels`)."""
        spec = self.bundle.towers[tower].input if tower in self.bundle.towers else None
        if spec is None or self.bundle.towers[tower].kind != "image":
            self.session(tower)  # raises the clear error
            raise UserError(f"{tower}: not an image tower")
        return self.encode_pixels(tower, to_pixel_values(images, spec), flip)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if self._tokenizer is None:
            self.session("text")
            self._tokenizer = TextTokenizer(self.bundle.tokenizer_path)
        return self._run("text", self._tokenizer(texts)).astype(np.float32)


ProgressFn = Callable[[int, int, float], None]
"""progress(done, total, items_per_second)"""
