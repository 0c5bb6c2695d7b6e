"""A learned local-feature detector and descriptor for the refiner: ALIKE (Zhao et al., IEEE
TMM 2022; BSD-3-Clause weights `alike-n.pth` from Shiaoming/ALIKE), run with onnxruntime.

The network (ALNet: four convolution blocks at 1, 1/2, 1/8 and 1/32 of the image, each reduced
to 32 channels; a 1x1 head maps their upsampled concatenation to a 128-d descriptor and a
keypoint score) is written here in PyTorch from the weights' state-dict and exported to ONNX once,
into the user's cache folder, from the weights file (`weights_dir`, else the environment's
GEOBRIDGE_FEATURE_WEIGHTS, else `../shared/weights` beside a source checkout). PyTorch is needed
for that one export only.

The 1x1 head is linear and bilinear upsampling commutes with it, so the exported graph returns
the score map and the four branch maps at their own resolutions: descriptors are sampled at the
keypoints only (a full-resolution 128-channel map would take 0.5 GB per megapixel). Keypoints:
score maxima in a 5 x 5 neighbourhood above SCORE_MIN, the TOP_K strongest, placed to a fraction
of a pixel by a soft-argmax over their neighbourhood (as ALIKE's own detector does).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .features import Described

log = logging.getLogger(__name__)

WEIGHTS = "alike-n.pth"
SHA256 = "8bd4789272eec779be280f8fc1007608ff604241440a0a3377c1559199412ee3"
NMS_RADIUS = 2
SCORE_MIN = 0.05
TOP_K = 4000
SOFT_TEMPERATURE = 0.1


def default_weights_dir() -> Path:
    env = os.environ.get("GEOBRIDGE_FEATURE_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "weights"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return Path(base) / "geobridge" / "features"


def _build_torch(state: dict):
    import torch
    from torch import nn

    def conv3(i, o):
        return nn.Conv2d(i, o, 3, padding=1, bias=False)

    class ConvBlock(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.conv1, self.bn1 = conv3(i, o), nn.BatchNorm2d(o)
            self.conv2, self.bn2 = conv3(o, o), nn.BatchNorm2d(o)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(x)))

    class ResBlock(ConvBlock):
        def __init__(self, i, o):
            super().__init__(i, o)
            self.downsample = nn.Conv2d(i, o, 1)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.downsample(x))

    class ALNet(nn.Module):
        def __init__(self, c=(16, 32, 64, 128), dim=128):
            super().__init__()
            self.block1 = ConvBlock(3, c[0])
            self.block2, self.block3, self.block4 = (ResBlock(c[k], c[k + 1]) for k in range(3))
            for k in range(4):
                setattr(self, f"conv{k + 1}", nn.Conv2d(c[k], dim // 4, 1, bias=False))
            self.convhead2 = nn.Conv2d(dim, dim + 1, 1, bias=False)

        def forward(self, image):
            x1 = self.block1(image)
            x2 = self.block2(nn.functional.max_pool2d(x1, 2))
            x3 = self.block3(nn.functional.max_pool2d(x2, 4))
            x4 = self.block4(nn.functional.max_pool2d(x3, 4))
            maps = [torch.relu(getattr(self, f"conv{k + 1}")(x)) for k, x in
                    enumerate((x1, x2, x3, x4))]  # fmt: skip
            # The score channel of the head, applied per branch before upsampling (linear).
            w = self.convhead2.weight[-1:]  # [1, 128, 1, 1]
            logit = 0
            for k, (m, f) in enumerate(zip(maps, (1, 2, 8, 32), strict=True)):
                s = nn.functional.conv2d(m, w[:, 32 * k : 32 * (k + 1)])
                if f > 1:
                    s = nn.functional.interpolate(s, scale_factor=f, mode="bilinear",
                                                  align_corners=True)  # fmt: skip
                logit = logit + s
            return (torch.sigmoid(logit), *maps)

    net = ALNet()
    net.load_state_dict(state)
    return net.eval()


def export_onnx(weights: Path, out: Path) -> None:
    """ALNet with the weights, to ONNX (dynamic height and width, multiples of 32)."""
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = _build_torch(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    dyn = {"image": {2: "h", 3: "w"}}
    names = ["score", "f1", "f2", "f3", "f4"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes, not the user's
        torch.onnx.export(net, torch.zeros(1, 3, 64, 64), str(tmp), input_names=["image"],
                          output_names=names, dynamic_axes=dyn, opset_version=17,
                          dynamo=False)  # fmt: skip
    # The head's descriptor rows are folded out of the graph (only its score row is used
    # there): kept beside it, descriptors are computed from the branch maps at the keypoints.
    head = state["convhead2.weight"][:128, :, 0, 0].numpy().astype(np.float32)
    np.save(out.with_suffix(".head.npy"), head)
    tmp.replace(out)


class LearnedFeatures:
    """ALIKE keypoints and descriptors of images, with onnxruntime."""

    def __init__(self, weights_dir: Path | None = None, providers: list[str] | None = None,
                 threads: int | None = None):  # fmt: skip
        weights = Path(weights_dir or default_weights_dir()) / WEIGHTS
        if not weights.is_file():
            raise UserError(f"{weights}: ALIKE weights not found (set GEOBRIDGE_FEATURE_WEIGHTS)")
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != SHA256:
            raise UserError(f"{weights}: not the published alike-n weights (sha256 {digest})")
        onnx_path = cache_dir() / f"alike-n-{SHA256[:12]}.onnx"
        head_path = onnx_path.with_suffix(".head.npy")
        if not onnx_path.is_file() or not head_path.is_file():
            log.info("exporting %s to %s", weights, onnx_path)
            export_onnx(weights, onnx_path)
        import onnxruntime as ort

        from .encoders import available_providers

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options,
                                            providers=available_providers(providers))  # fmt: skip
        self.head = np.load(head_path)

    def describe(self, image: np.ndarray, mask: np.ndarray | None = None,
                 angle: float = 0.0) -> Described:  # fmt: skip
        """Keypoints and descriptors; with `angle`, of the image turned that many degrees
        (counter-clockwise) about its centre, the points given in the unturned image (ALIKE is
        not rotation-invariant: a heading error is tried as turned copies)."""
        if angle:
            h, w = image.shape[:2]
            c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
            size = (int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c)))
            rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
            rot[:, 2] += [(size[0] - w) / 2, (size[1] - h) / 2]
            turned = cv2.warpAffine(image, rot, size, flags=cv2.INTER_LINEAR)
            m = np.full((h, w), 255, np.uint8) if mask is None else mask
            m = cv2.warpAffine(m, rot, size, flags=cv2.INTER_NEAREST)
            d = self.describe(turned, m)
            back = cv2.invertAffineTransform(rot)
            pts = d.points @ back[:, :2].T + back[:, 2]
            return Described(pts.astype(np.float32), d.desc)
        h, w = image.shape[:2]
        ph, pw = -h % 32, -w % 32
        x = np.pad(image, ((0, ph), (0, pw), (0, 0))).astype(np.float32) / 255.0
        score, *maps = self.session.run(None, {"image": x.transpose(2, 0, 1)[None]})
        score = score[0, 0, :h, :w]
        if mask is not None:  # nothing on the edge of a warped photo's empty surround
            score = score * (cv2.erode(mask, np.ones((9, 9), np.uint8)) > 0)
        pts = _keypoints(score)
        desc = _sample(maps, pts, self.head, (h + ph, w + pw))
        return Described(pts.astype(np.float32), desc)


def _keypoints(score: np.ndarray) -> np.ndarray:
    """[N, 2] (x, y): NMS maxima above SCORE_MIN, the TOP_K strongest, soft-argmax refined."""
    r = NMS_RADIUS
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    peak = (score == cv2.dilate(score, k)) & (score > SCORE_MIN)
    peak[: r + 1], peak[-r - 1 :], peak[:, : r + 1], peak[:, -r - 1 :] = False, False, False, False
    ys, xs = np.nonzero(peak)
    if len(xs) > TOP_K:
        top = np.argsort(-score[ys, xs])[:TOP_K]
        ys, xs = ys[top], xs[top]
    d = np.arange(-r, r + 1)
    patch = score[ys[:, None, None] + d[None, :, None], xs[:, None, None] + d[None, None, :]]
    e = np.exp((patch - patch.max((1, 2), keepdims=True)) / SOFT_TEMPERATURE)
    e /= e.sum((1, 2), keepdims=True)
    dy = (e * d[None, :, None]).sum((1, 2))
    dx = (e * d[None, None, :]).sum((1, 2))
    return np.column_stack([xs + dx, ys + dy])


def _bilinear(f: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f [C, H, W] at (x, y) in its own pixel coordinates -> [N, C]."""
    _, h, w = f.shape
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    x0, y0 = np.maximum(x0, 0), np.maximum(y0, 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    return ((f[:, y0, x0].T * (1 - ax) + f[:, y0, x1].T * ax) * (1 - ay)
            + (f[:, y1, x0].T * (1 - ax) + f[:, y1, x1].T * ax) * ay)  # fmt: skip


def _sample(maps: list, pts: np.ndarray, head: np.ndarray, full: tuple[int, int]) -> np.ndarray:
    """Descriptors at `pts`: each branch map sampled where align-corners upsampling to the
    full (padded) size would put it, concatenated, through the head, normalised."""
    H, W = full
    parts = []
    for m in maps:
        _, _, h, w = m.shape
        sx = (w - 1) / (W - 1) if W > 1 else 0.0
        sy = (h - 1) / (H - 1) if H > 1 else 0.0
        parts.append(_bilinear(m[0], pts[:, 0] * sx, pts[:, 1] * sy))
    d = np.concatenate(parts, 1) @ head.T
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return d.astype(np.float32)
