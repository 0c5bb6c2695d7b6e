"""`python -m geolab eval --levels`: the pipeline per metadata level, tilt band and yaw error.

Each photo's metadata is **re-noised at evaluation time** with the error model
(`synthworld.metadata_errors`, seeded with `seed`; the photos on disk are not rewritten): the
true camera comes from truth.csv (its `camera_lon/lat` and `hfov_deg`, or, in a world written
before those columns, the centre moved back by the look-ahead and the EXIF focal length), and
`noisy_meta` gives the PhotoMeta the engine's reader would read from such a file. Levels:
**none** (no metadata), **gps** (the EXIF GPS position only), **full** (position, relative
altitude, gimbal pitch and yaw, flight yaw), each with realistic noise.

Per level, three answers, each the top-1 candidate's distance to the true view centre:
**retrieval alone** (the level's search priors, no image matching, no posterior), **metadata
alone** (the prior's predicted view centre, `core.posterior`), **full pipeline** (the defaults:
priors, matching, the posterior step). "previous pipeline" is the default before the posterior
step (re-ranking and refinement, no metadata candidate, no gates), at level full.

Also: the full level per tilt band (true degrees off nadir) and per fixed yaw error, and the
**reliability table**: every candidate the full pipeline returns (all levels), binned by its
probability, against the share of them within 50 m of the truth.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pyproj import Transformer

from geobridge_qgis.core import service
from geobridge_qgis.core.bundle import Bundle
from geobridge_qgis.core.camera import Camera, focal_35mm_from_hfov, hfov_from_35mm
from geobridge_qgis.core.errors import UserError
from geobridge_qgis.core.fusion import calibrated, calibration_feature, kind_of, refined_sigma
from geobridge_qgis.core.geodesy import haversine_m
from geobridge_qgis.core.locate import QueryOptions
from geobridge_qgis.core.photo import read_photo_with_meta
from geobridge_qgis.core.posterior import metadata_prior
from geobridge_qgis.core.priors import PriorOptions
from synthworld.metadata_errors import LEVELS, MetadataErrors, draw, noisy_meta, photo_rng

from .evaluate import gallery_index
from .metrics import TILT_BANDS

RADII = (5, 10, 25, 50)
YAW_ERRORS = (0.0, 10.0, 20.0, 30.0)
BINS = np.linspace(0.0, 1.0, 11)
EVAL_SEED = 20261203  # the evaluation's own noise, never a world's


@dataclass
class Photo:
    file: str
    image: np.ndarray
    camera: Camera  # the true camera, in the index's CRS
    lon: float  # true view centre
    lat: float
    tilt_deg: float
    focal_35mm: float


@dataclass
class Runs:
    """Per answer name: per photo, the top-1 error (m); plus candidate records."""

    errors: dict[str, list[float]] = field(default_factory=dict)
    tilts: list[float] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)  # kind, feature, probability, error_m
    conflicts: dict[str, int] = field(default_factory=dict)
    refined: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, err: float) -> None:
        self.errors.setdefault(name, []).append(float(err))


def load_photos(world: Path, crs, limit: int | None = None) -> list[Photo]:
    with open(Path(world) / "drone" / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    to_grid = Transformer.from_crs(4326, crs, always_xy=True)
    out = []
    for r in rows:
        img, meta = read_photo_with_meta(Path(world) / "drone" / r["file"])
        h, w = img.shape[:2]
        heading, tilt, alt = float(r["heading_deg"]), float(r["pitch_deg"]), float(r["altitude_m"])
        if r.get("hfov_deg"):
            hfov = float(r["hfov_deg"])
        elif meta.focal_35mm:
            hfov = hfov_from_35mm(meta.focal_35mm, w, h)
        else:
            raise UserError(f"{world}: truth.csv has no hfov_deg and {r['file']} no focal length")
        if r.get("camera_lon"):
            x, y = to_grid.transform(float(r["camera_lon"]), float(r["camera_lat"]))
        else:  # the camera stands look-ahead metres behind the view centre
            cx, cy = to_grid.transform(float(r["lon"]), float(r["lat"]))
            d = alt * math.tan(math.radians(tilt))
            x = cx - d * math.sin(math.radians(heading))
            y = cy - d * math.cos(math.radians(heading))
        cam = Camera(float(x), float(y), alt, heading, tilt, hfov)
        f35 = meta.focal_35mm or round(focal_35mm_from_hfov(hfov, w, h))
        out.append(Photo(r["file"], img, cam, float(r["lon"]), float(r["lat"]), tilt, f35))
    return out


def _err(lonlat, p: Photo) -> float:
    return float(haversine_m(lonlat[0], lonlat[1], p.lon, p.lat))


def run_world(
    bundle: Bundle,
    world: Path,
    cache: Path,
    seed: int = EVAL_SEED,
    photos: int | None = None,
    yaw_errors: tuple[float, ...] = YAW_ERRORS,
    previous: bool = True,
    log=print,
) -> Runs:
    """Every answer for every photo of one world (see the module docstring)."""
    index = gallery_index(bundle, world, cache)
    why: list[str] = []
    session = service.LocateSession(bundle, index, log=why.append)
    if session.matcher is None:
        raise UserError(why[0] if why else f"{world}: image matching cannot read the raster")
    try:
        return run_session(session, world, seed, photos, yaw_errors, previous, log)
    finally:
        session.close()


def run_session(
    session,
    world: Path,
    seed: int = EVAL_SEED,
    photos: int | None = None,
    yaw_errors: tuple[float, ...] = YAW_ERRORS,
    previous: bool = True,
    log=print,
) -> Runs:
    """`run_world` with an open `service.LocateSession` on the world's index (the demo's)."""
    world = Path(world)
    to_ll = Transformer.from_crs(session.index.crs, 4326, always_xy=True)
    ps = load_photos(world, session.index.crs, photos)
    runs = Runs(tilts=[p.tilt_deg for p in ps])
    retrieval = QueryOptions(top_k=10, heatmap=False, rerank=False, posterior=False)
    full = QueryOptions(top_k=10, heatmap=False)
    old = QueryOptions(top_k=10, heatmap=False, posterior=False)

    def query(options, p, meta):
        return session.query(options, image=p.image, meta=meta, sha256=False).result

    def answer(name, res, p, meta, record: bool):
        top = res.candidates[0]
        runs.add(name, _err((top.lon, top.lat), p))
        runs.refined[name] = runs.refined.get(name, 0) + (top.method == "refined")
        n_conf = sum(bool(c.conflict) for c in res.candidates)
        runs.conflicts[name] = runs.conflicts.get(name, 0) + n_conf
        if record:
            for rank, c in enumerate(res.candidates):
                kind = kind_of(c)
                runs.candidates.append({
                    "kind": kind, "feature": calibration_feature(c, kind, res.prior),
                    "probability": c.probability, "error_m": _err((c.lon, c.lat), p),
                    "rank": rank, "sigma_m": c.centre_sigma_m,
                    "match_sigma_m": c.match.centre_sigma_m if c.match else None,
                })  # fmt: skip

    def metadata_alone(name, p, meta):
        prior = metadata_prior(meta, p.image.shape[1::-1], PriorOptions(), session.index.crs)
        runs.add(name, _err((prior.lon, prior.lat), p) if prior else math.inf)

    for i, p in enumerate(ps):
        log(f"  {world.name} {p.file} (tilt {p.tilt_deg:.0f})")
        for level in LEVELS:
            noise = draw(MetadataErrors().with_level(level), photo_rng(seed, i))
            meta = noisy_meta(p.camera, noise, to_ll.transform, p.focal_35mm)
            answer(f"{level}|retrieval alone", query(retrieval, p, meta), p, meta, False)
            metadata_alone(f"{level}|metadata alone", p, meta)
            answer(f"{level}|full pipeline", query(full, p, meta), p, meta, True)
            if previous and level == "full":
                answer(f"{level}|previous pipeline", query(old, p, meta), p, meta, False)
        for yaw in yaw_errors:
            errors = replace(MetadataErrors().with_level("full"), yaw_error_deg=yaw)
            meta = noisy_meta(p.camera, draw(errors, photo_rng(seed, i)), to_ll.transform,
                              p.focal_35mm)  # fmt: skip
            metadata_alone(f"yaw {yaw:g}|metadata alone", p, meta)
            answer(f"yaw {yaw:g}|full pipeline", query(full, p, meta), p, meta, False)
    return runs


# ------------------------------------------------------------------------------- tables


def loc(errors) -> dict:
    e = np.asarray(errors, float)
    if not len(e):
        return {**{f"L@{r}": float("nan") for r in RADII}, "median_m": float("nan"), "n": 0}
    out = {f"L@{r}": float(np.mean(e <= r) * 100) for r in RADII}
    out["median_m"] = float(np.median(e))
    out["n"] = len(e)
    return out


def reliability(probabilities, hits, bins=BINS) -> list[dict]:
    """Per probability bin: candidates, their mean probability, the share that hit."""
    p, h = np.asarray(probabilities, float), np.asarray(hits, bool)
    rows = []
    for k in range(len(bins) - 1):
        lo, hi = bins[k], bins[k + 1]
        sel = (p >= lo) & ((p < hi) if k < len(bins) - 2 else (p <= hi))
        n = int(sel.sum())
        rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": n,
                     "mean_p": float(p[sel].mean()) if n else float("nan"),
                     "observed": float(h[sel].mean()) if n else float("nan")})  # fmt: skip
    return rows


def expected_calibration_error(rows: list[dict]) -> float:
    n = sum(r["n"] for r in rows)
    return sum(r["n"] * abs(r["mean_p"] - r["observed"]) for r in rows if r["n"]) / max(n, 1)


def _fmt(v, spec=".1f") -> str:
    return "–" if v is None or v != v else ("inf" if v == math.inf else format(v, spec))


_L = [f"L@{r}" for r in RADII]


def _header(cols: list[str]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def level_table(runs: Runs) -> str:
    lines = _header(["level", "answer", *_L, "median m", "top-1 refined", "conflicts", "n"])
    for level in LEVELS:
        for answer in ("retrieval alone", "metadata alone", "full pipeline", "previous pipeline"):
            key = f"{level}|{answer}"
            if key not in runs.errors:
                continue
            r = loc(runs.errors[key])
            if level == "none" and answer == "metadata alone":
                lines.append(f"| {level} | {answer} | " + "– | " * (len(RADII) + 3) + f"{r['n']} |")
                continue
            ref = runs.refined.get(key)
            lines.append(f"| {level} | {answer} | " + " | ".join(_fmt(r[f"L@{x}"]) for x in RADII)
                         + f" | {_fmt(r['median_m'])} | {'–' if ref is None else ref}"
                         f" | {runs.conflicts.get(key, '–')} | {r['n']} |")  # fmt: skip
    return "\n".join(lines)


def tilt_table(runs: Runs, level: str = "full") -> str:
    lines = _header(["tilt off nadir", "answer", *_L, "median m", "n"])
    tilts = np.asarray(runs.tilts)
    for lo, hi in TILT_BANDS:
        sel = (tilts >= lo) & (tilts < hi)
        for answer in ("retrieval alone", "metadata alone", "full pipeline"):
            e = np.asarray(runs.errors.get(f"{level}|{answer}", []))
            if len(e) != len(tilts):
                continue
            r = loc(e[sel])
            lines.append(f"| {lo:g}-{math.floor(hi):g} | {answer} | "
                         + " | ".join(_fmt(r[f"L@{x}"]) for x in RADII)
                         + f" | {_fmt(r['median_m'])} | {r['n']} |")  # fmt: skip
    return "\n".join(lines)


def yaw_table(runs: Runs) -> str:
    lines = _header(["yaw error", "answer", *_L, "median m", "conflicts", "n"])
    for key in runs.errors:
        if not key.startswith("yaw "):
            continue
        r = loc(runs.errors[key])
        yaw, answer = key[4:].split("|")
        lines.append(f"| {yaw} deg | {answer} | " + " | ".join(_fmt(r[f"L@{x}"]) for x in RADII)
                     + f" | {_fmt(r['median_m'])} | {runs.conflicts.get(key, '–')} "
                     f"| {r['n']} |")  # fmt: skip
    return "\n".join(lines)


def reliability_table(runs: Runs, radius: float = 50.0) -> str:
    """Probabilities as the engine's current calibration gives them (from each candidate's
    recorded feature: the same numbers the run saw unless CALIBRATION changed since)."""
    probs = [calibrated(c["kind"], c["feature"]) for c in runs.candidates]
    rows = reliability(probs, [c["error_m"] <= radius for c in runs.candidates])
    lines = [f"| probability | candidates | mean p | within {radius:g} m |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bin']} | {r['n']} | {_fmt(r['mean_p'], '.2f')} | "
                     f"{_fmt(r['observed'], '.2f')} |")  # fmt: skip
    lines.append(f"\nExpected calibration error: {expected_calibration_error(rows):.3f}")
    return "\n".join(lines)


def stated_sigma(c: dict) -> float | None:
    """A recorded candidate's one-sigma uncertainty as the engine states it now: a match's
    own sigma with today's REFINED_SIGMA_FLOOR_M (a run before the floor recorded sigma_m only,
    then the match's own), like the reliability table's probabilities."""
    if c["kind"] not in ("refined", "conflict"):
        return c.get("sigma_m")
    own = c.get("match_sigma_m", c.get("sigma_m"))
    return None if own is None or not math.isfinite(own) else refined_sigma(own)


def uncertainty_table(runs: Runs) -> str:
    """Each top-1 answer's stated one-sigma uncertainty against its error: the share within k
    sigma, beside what a two-dimensional normal with that per-axis sigma gives (1 - e^(-k^2/2))."""
    tops = [{**c, "sigma_m": stated_sigma(c)} for c in runs.candidates if c.get("rank") == 0]
    tops = [c for c in tops if c["sigma_m"] is not None]
    ks = (1, 2, 3)
    expect = " | ".join(f"{100 * (1 - math.exp(-k * k / 2)):.0f}" for k in ks)
    lines = _header(["top-1 kind", "median sigma m", "median error m",
                     *(f"within {k} sigma %" for k in ks), "n"])  # fmt: skip
    for kind in sorted({c["kind"] for c in tops}):
        sel = [c for c in tops if c["kind"] == kind]
        s = np.array([c["sigma_m"] for c in sel], float)
        e = np.array([c["error_m"] for c in sel], float)
        lines.append(f"| {kind} | {_fmt(np.median(s))} | {_fmt(np.median(e))} | "
                     + " | ".join(_fmt(100 * np.mean(e <= k * s), ".0f") for k in ks)
                     + f" | {len(sel)} |")  # fmt: skip
    lines.append(f"| (a normal's) | | | {expect} | |")
    return "\n".join(lines)


def report(name: str, runs: Runs) -> str:
    parts = [f"### {name}", "", "Per metadata level:", "", level_table(runs), "",
             "Full metadata, per true tilt band:", "", tilt_table(runs), ""]  # fmt: skip
    if any(k.startswith("yaw ") for k in runs.errors):
        parts += ["Full metadata with a fixed gimbal yaw error:", "", yaw_table(runs), ""]
    parts += ["Reliability of the full pipeline's candidates (all levels):", "",
              reliability_table(runs), ""]  # fmt: skip
    if any(c.get("rank") == 0 for c in runs.candidates):
        parts += ["Stated uncertainty of the full pipeline's top-1 answers (all levels):", "",
                  uncertainty_table(runs), ""]  # fmt: skip
    return "\n".join(parts)


def report_from_json(path: Path, seed: int = EVAL_SEED) -> str:
    """The markdown of a levels.json written before (probabilities recalibrated)."""
    parts = []
    for name, d in json.loads(Path(path).read_text()).items():
        runs = Runs(d["errors"], d["tilts"], d["candidates"], d["conflicts"], d["refined"])
        parts.append(report(f"{name} (noise seed {seed})", runs))
    return "\n".join(parts)


def evaluate_levels(
    bundle_dir: Path,
    worlds: list[Path],
    out: Path,
    seed: int = EVAL_SEED,
    photos: int | None = None,
    yaw: bool = True,
    log=print,
) -> str:
    """Run every world, write out/levels.md and out/levels.json; return the markdown."""
    bundle = Bundle.load(bundle_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts, dump = [], {}
    for world in worlds:
        world = Path(world)
        runs = run_world(bundle, world, out / "cache" / world.name, seed, photos,
                         YAW_ERRORS if yaw else (), log=log)  # fmt: skip
        parts.append(report(f"{world.name} (noise seed {seed})", runs))
        dump[world.name] = {"errors": runs.errors, "tilts": runs.tilts,
                            "candidates": runs.candidates, "conflicts": runs.conflicts,
                            "refined": runs.refined}  # fmt: skip
    md = "\n".join(parts)
    (out / "levels.md").write_text(md + "\n")
    (out / "levels.json").write_text(json.dumps(dump, indent=1, default=float))
    return md
