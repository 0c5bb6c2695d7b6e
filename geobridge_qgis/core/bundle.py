"""A model bundle: one ONNX encoder per tower, the tokenizer and `manifest.json`.

The manifest is the bundle's contract with the engine. It says, per tower, which file holds it
(with its sha256), what the input is (pixel size, resampling, mean/std, flip test-time
augmentation; or the tokenizer and context length) and the embedding size; and for the whole
bundle the model id (a hash of the weights, so an index knows which model made it), the logit
scale, precision, provenance and the licence the user stated for the weights.

Each ONNX file carries the same manifest in its `metadata_props` under `geobridge.manifest`, less
the sha256 fields (a file cannot hold its own hash), so a lone .onnx file still says what it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

FORMAT = "geobridge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PRECISION_ORDER = ["fp32", "fp16", "int8"]
TOKENIZER = "tokenizer.json"
METADATA_KEY = "geobridge.manifest"
# The official test code: bicubic resize straight to the square input, ImageNet statistics
# (not CLIP's), and features averaged with the horizontal mirror's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CLIP's cleaning before BPE, in order; part of the contract because tokenizer.json alone
# cannot express ftfy and html unescaping.
TEXT_CLEANING = ["ftfy.fix_text", "html.unescape x2", "collapse whitespace", "lowercase"]


def manifest_for_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as stored inside each ONNX file: without the files' own hashes."""
    data = json.loads(json.dumps(manifest))
    for tower in data.get("towers", {}).values():
        tower.pop("sha256", None)
    return data


def sha256_file(path: Path, cache_dir: Path | None = None, cache: bool = True) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so a 1 GB encoder is hashed once."""
    path = Path(path).resolve()
    if not cache:
        return _sha256(path)
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = (cache_dir or _cache_dir()) / "sha256.json"
    try:
        known = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    known[key] = _sha256(path)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return known[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geobridge"


@dataclass(frozen=True)
class Tower:
    name: str
    kind: str  # "image" or "text"
    path: Path  # the reference precision's file
    input: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)  # precision -> file, reference first

    def path_for(self, precision: str) -> Path:
        return self.files.get(precision, self.path)


@dataclass(frozen=True)
class Bundle:
    """A checked bundle on disk. `Bundle.load` verifies it; the fields are then trusted."""

    root: Path
    manifest: dict[str, Any]

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def logit_scale(self) -> float:
        return float(self.manifest["logit_scale"])

    @property
    def precision(self) -> str:
        """The reference precision (the `file` of every tower; fp32 when exported with it)."""
        return self.manifest["precision"]

    @property
    def precisions(self) -> list[str]:
        """Every precision each tower is stored in, the reference first. A bundle may carry
        fp16 (for GPUs) and int8 (for CPUs) beside fp32 as optional `variants` of each tower,
        so readers that know only `file` still read the reference."""
        towers = list(self.manifest["towers"].values())
        common = (
            set.intersection(*(set(t.get("variants", {})) for t in towers)) if towers else set()
        )
        return [self.precision, *sorted(common - {self.precision}, key=_PRECISION_ORDER.index)]

    def variant_agreement(self, precision: str) -> float | None:
        """The lowest cosine to PyTorch that the exporter measured for `precision` over all
        towers (None when not recorded)."""
        if precision == self.precision:
            return 1.0
        values = [t.get("variants", {}).get(precision, {}).get("min_cos")
                  for t in self.manifest["towers"].values()]  # fmt: skip
        return None if any(v is None for v in values) else float(min(values))

    @property
    def towers(self) -> dict[str, Tower]:
        out = {}
        for name, t in self.manifest["towers"].items():
            files = {self.precision: self.root / t["file"]}
            files.update({p: self.root / v["file"] for p, v in t.get("variants", {}).items()})
            out[name] = Tower(name, t["kind"], self.root / t["file"], t["input"], files)
        return out

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest["tokenizer"]["file"]

    @classmethod
    def load(cls, root: Path | str, check_files: bool = True) -> Bundle:
        """Read and check a bundle: format version, checksums, embedding sizes."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise UserError(f"{root}: not a GeoBridge bundle (no {MANIFEST})")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{path}: not a GeoBridge bundle manifest")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise UserError(
                f"{path}: bundle format version {version}, this GeoBridge reads version "
                f"{FORMAT_VERSION}; re-export the bundle with this version's model_export"
            )
        bundle = cls(root, manifest)
        if check_files:
            files = [(t["file"], t["sha256"]) for t in manifest["towers"].values()]
            files += [(v["file"], v["sha256"]) for t in manifest["towers"].values()
                      for v in t.get("variants", {}).values()]  # fmt: skip
            if "text" in manifest["towers"]:
                files.append((manifest["tokenizer"]["file"], manifest["tokenizer"]["sha256"]))
            for name, expected in files:
                file = root / name
                if not file.is_file():
                    raise UserError(f"{file}: missing from the bundle")
                if sha256_file(file) != expected:
                    raise UserError(
                        f"{file}: checksum does not match the manifest (corrupt or replaced)"
                    )
        return bundle
