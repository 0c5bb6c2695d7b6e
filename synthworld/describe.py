"""Descriptions of what a drone photo's footprint shows, written from the scene's semantics:
counts, roof colours, crops, relative positions (compass directions from the footprint's centre,
sides of the road), sizes; phrased from several templates in random orders. They are the text
side of the training pairs and the text queries of the evaluation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import shapely
from shapely.geometry import Point, Polygon

from .world import World

_LANDMARK = 8.0  # phrases at least this salient always make it into a description
_NUMBERS = "no one two three four five six seven eight nine ten eleven twelve".split()
_COMPASS = [
    "north",
    "north-east",
    "east",
    "south-east",
    "south",
    "south-west",
    "west",
    "north-west",
]
_ROOF_WORDS = {"red": "red", "brown": "brown", "grey": "grey", "dark": "dark", "white": "white"}
_CROP_WORDS = {
    "wheat": ["a golden wheat field", "a wheat field", "a yellow cereal field"],
    "barley": ["a barley field", "a pale cereal field"],
    "maize": ["a maize field", "a green maize field", "a field of corn"],
    "rapeseed": ["a rapeseed field", "an oilseed rape field"],
    "grassland": ["a meadow", "a grass field", "grassland"],
    "potato": ["a potato field with ridges", "a potato field"],
    "sunflower": ["a sunflower field"],
    "ploughed": ["a ploughed brown field", "a bare ploughed field", "a freshly ploughed field"],
}


def _count(n: int) -> str:
    if n < len(_NUMBERS):
        return _NUMBERS[n]
    if n < 20:
        return "more than a dozen" if n > 13 else "about a dozen"
    return f"about {round(n, -1)}" if n < 100 else "many"


def _compass(dx: float, dy: float) -> str:
    ang = math.degrees(math.atan2(dx, dy)) % 360.0
    return _COMPASS[round(ang / 45.0) % 8]


def _where(pt, centre: Point, scale: float) -> str | None:
    dx, dy = pt.x - centre.x, pt.y - centre.y
    if math.hypot(dx, dy) < 0.18 * scale:
        return None
    return _compass(dx, dy)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def scene_facts(world: World, footprint: Polygon) -> dict:
    """What is inside a footprint, counted from the scene (the input of `describe`)."""
    fp = footprint
    bbox = fp.bounds
    area = fp.area
    facts: dict = {"area_m2": area}
    blds = [b for b in world.query("buildings", bbox) if fp.contains(b.footprint.centroid)]
    facts["buildings"] = blds
    roads = []
    for r in world.query("roads", bbox):
        clip = r.line.intersection(fp)
        if clip.length > 25.0:
            roads.append((r, clip))
    facts["roads"] = roads
    facts["roundabouts"] = [
        rb for rb in world.query("roundabouts", bbox) if fp.contains(Point(rb.x, rb.y))
    ]
    facts["river"] = [
        r for r in world.query("rivers", bbox) if r.line.intersection(fp).length > 20.0
    ]
    facts["lakes"] = [
        lk for lk in world.query("lakes", bbox) if lk.polygon.intersection(fp).area > 150.0
    ]
    fields = []
    for f in world.query("fields", bbox):
        a = f.polygon.intersection(fp)
        if a.area > max(1500.0, 0.06 * area):
            fields.append((f, a))
    facts["fields"] = fields
    forest = [(f, f.polygon.intersection(fp)) for f in world.query("forests", bbox)]
    facts["forest"] = [(f, a) for f, a in forest if a.area > max(800.0, 0.06 * area)]
    facts["trees"] = [t for t in world.query("trees", bbox) if fp.contains(Point(t.x, t.y))]
    facts["parkings"] = [
        p for p in world.query("parkings", bbox) if fp.contains(Point(p.rect.cx, p.rect.cy))
    ]
    facts["sports"] = [
        s for s in world.query("sports", bbox) if fp.contains(Point(s.rect.cx, s.rect.cy))
    ]
    facts["hedges"] = [
        h for h in world.query("hedges", bbox) if h.line.intersection(fp).length > 20.0
    ]
    return facts


def describe(world: World, footprint: Polygon | np.ndarray, rng: np.random.Generator) -> str:
    """A description of what a footprint shows, from the scene's semantics: counts, roof
    colours, crops, relative positions (compass directions from the footprint's centre, sides
    of the road), sizes; phrased from several templates in random orders."""
    fp = footprint if isinstance(footprint, Polygon) else Polygon(np.asarray(footprint))
    facts = scene_facts(world, fp)
    centre = fp.centroid
    scale = math.sqrt(fp.area)
    items: list[tuple[float, str]] = []  # (salience, phrase)

    # Roads first: the other things are placed relative to the main one.
    road, road_clip = None, None
    paved = [(r, c) for r, c in facts["roads"] if r.kind in ("main", "street")]
    if paved:
        road, road_clip = max(paved, key=lambda rc: (rc[0].kind == "main", rc[1].length))
    blds = facts["buildings"]
    if blds:
        houses = [b for b in blds if b.use in ("house", "farm")]
        big = [b for b in blds if b.use in ("industrial",) or b.footprint.area > 700]
        civic = [b for b in blds if b.use == "civic" and b.height_m > 25]
        roofs = Counter(b.roof for b in houses or blds).most_common(2)
        (roof, n_roof), second = roofs[0], roofs[1][0] if len(roofs) > 1 else None
        n = len(houses)
        if n:
            noun = "house" if n == 1 else _pick(rng, ["houses", "houses", "homes", "buildings"])
            if n_roof >= 0.6 * n or second is None:
                adj = _pick(rng, [f"{_ROOF_WORDS[roof]}-roofed ", f"{_ROOF_WORDS[roof]} roofed "])
                phrase = f"{_count(n)} {adj}{noun}"
            elif rng.random() < 0.5:
                phrase = f"{_count(n)} {noun} with {roof} and {second} roofs"
            else:
                phrase = f"{_count(n)} {noun}, mostly with {roof} roofs"
            if n == 1:
                phrase = phrase.replace("one ", "a ", 1)
            side = _side_of_road(houses, road_clip) if road_clip is not None else None
            if side:
                phrase += f" {side} of the road" if side != "both" else " on both sides of the road"
            else:
                w = _where(
                    shapely.centroid(shapely.union_all([b.footprint for b in houses])),
                    centre,
                    scale,
                )
                if w:
                    phrase += f" in the {w}"
            items.append((10.0 + n, phrase))
        if big:
            roof_b = Counter(b.roof for b in big).most_common(1)[0][0]
            what = "a large hall" if len(big) == 1 else f"{_count(len(big))} large halls"
            w = _where(big[0].footprint.centroid, centre, scale)
            items.append(
                (
                    9.0,
                    f"{what} with {_ROOF_WORDS[roof_b]} flat roofs" + (f" to the {w}" if w else ""),
                )
            )
        if civic:
            items.append((9.5, "a church with a tall tower"))
    if road is not None:
        straight = _sinuosity(road_clip) < 1.03
        adj = "straight" if straight else _pick(rng, ["curved", "winding", "bending"])
        noun = "main road" if road.kind == "main" else _pick(rng, ["street", "road"])
        phrase = f"a {adj} {noun}"
        d = _direction(road_clip)
        if d:
            phrase += f" running {d}"
        n_other = len(paved) - 1
        if n_other >= 2:
            phrase += f" with {_count(n_other)} side streets"
        elif n_other == 1:
            phrase += " and a side street"
        items.append((8.0, phrase))
        if road.kind == "main" and rng.random() < 0.5:
            items.append((2.0, "white lane markings"))
    tracks = [c for r, c in facts["roads"] if r.kind == "track"]
    if tracks:
        items.append(
            (3.0, "a dirt track" if len(tracks) == 1 else f"{_count(len(tracks))} farm tracks")
        )
    if facts["roundabouts"]:
        items.append((9.0, "a roundabout"))
    if facts["river"]:
        bridge = any(r.line.intersects(facts["river"][0].line) for r, _ in facts["roads"])
        items.append((8.5, "a river" + (" with a bridge" if bridge else "")))
    if facts["lakes"]:
        lk = facts["lakes"][0]
        size = "a small pond" if lk.polygon.area < 5000 else "a lake"
        w = _where(lk.polygon.centroid, centre, scale)
        items.append((8.0, size + (f" to the {w}" if w else "")))
    for s in facts["sports"]:
        if s.kind == "football":
            items.append((9.0, _pick(rng, ["a football pitch", "a soccer field with white lines"])))
        else:
            colour = {"clay": "red", "hard-green": "green", "hard-blue": "blue"}[s.surface]
            what = "a tennis court" if s.courts == 1 else f"{_count(s.courts)} tennis courts"
            items.append((7.0, f"{what} ({colour})" if rng.random() < 0.5 else what))
    for p in facts["parkings"]:
        n = len(p.cars)
        items.append((6.0, f"a car park with {_count(n)} cars" if n else "an empty car park"))
    if facts["fields"]:
        fields = sorted(facts["fields"], key=lambda fa: -fa[1].area)[:3]
        for f, a in fields:
            w = _where(a.centroid, centre, scale)
            phrase = _pick(rng, _CROP_WORDS[f.crop])
            if a.area > 0.3 * fp.area and rng.random() < 0.5:
                phrase = phrase.replace("a ", "a large ", 1) if phrase.startswith("a ") else phrase
            if rng.random() < 0.3 and f.crop not in ("grassland",):
                phrase += " with stripes"
            items.append((5.0 + a.area / fp.area, phrase + (f" to the {w}" if w else "")))
        if len(facts["fields"]) > 3:
            items.append((4.0, f"{_count(len(facts['fields']))} fields in a patchwork"))
    if facts["forest"]:
        a = shapely.union_all([g for _, g in facts["forest"]])
        share = a.area / fp.area
        w = _where(a.centroid, centre, scale)
        kinds = {f.kind for f, _ in facts["forest"]}
        word = (
            "pine forest" if kinds == {"conifer"} else _pick(rng, ["woodland", "forest", "woods"])
        )
        what = f"dense {word}" if share > 0.5 else f"a patch of {word}"
        items.append((7.0 + share, what + (f" in the {w}" if w else "")))
    n_trees = len(facts["trees"])
    if n_trees:
        t = "a single tree" if n_trees == 1 else f"{_count(n_trees)} scattered trees"
        if n_trees > 12:
            t = "many trees"
        items.append((3.0, t))
    if facts["hedges"]:
        items.append((2.5, "hedgerows" if len(facts["hedges"]) > 1 else "a hedge"))
    if not items:
        return "Open grassland with nothing else in view."
    return _compose(items, rng)


def _compose(items: list[tuple[float, str]], rng: np.random.Generator) -> str:
    items = sorted(items, key=lambda it: -it[0])
    head = items[0][1]
    # Landmarks (water, roundabouts, pitches, churches, main roads...) are always named; the
    # rest fills up to a few phrases, in a random order.
    must = [p for w, p in items[1:] if w >= _LANDMARK]
    other = [p for w, p in items[1:] if w < _LANDMARK][:4]
    n_other = max(0, int(rng.integers(2, 5)) - len(must))
    pick = sorted(rng.permutation(len(other))[:n_other].tolist())
    rest = must + [other[i] for i in pick]
    rest = [rest[int(i)] for i in rng.permutation(len(rest))]
    if not rest:
        text = _pick(rng, [f"{head}.", f"Aerial view of {head}.", f"Only {head} in view."])
    elif len(rest) == 1:
        text = _pick(
            rng,
            [f"{head} and {rest[0]}.", f"{head}, next to {rest[0]}.", f"{rest[0]} beside {head}."],
        )
    else:
        listed = ", ".join(rest[:-1]) + f" and {rest[-1]}"
        text = _pick(
            rng,
            [
                f"{head}, with {listed}.",
                f"{head}; nearby {listed}.",
                f"Aerial view: {head}, {listed}.",
                f"{listed}, near {head}.",
                f"Look for {head}. Also visible: {listed}.",
            ],
        )
    return text[0].upper() + text[1:]


def _sinuosity(line) -> float:
    parts = getattr(line, "geoms", [line])
    part = max(parts, key=lambda g: g.length)
    c = np.asarray(part.coords)
    d = float(np.hypot(*(c[-1] - c[0])))
    return part.length / max(d, 1e-6)


def _direction(line) -> str | None:
    parts = getattr(line, "geoms", [line])
    part = max(parts, key=lambda g: g.length)
    c = np.asarray(part.coords)
    dx, dy = c[-1] - c[0]
    if math.hypot(dx, dy) < 1.0:
        return None
    ang = math.degrees(math.atan2(dx, dy)) % 180.0
    if ang < 22.5 or ang >= 157.5:
        return "north-south"
    if ang < 67.5:
        return "north-east to south-west"
    if ang < 112.5:
        return "east-west"
    return "north-west to south-east"


def _side_of_road(buildings, road_clip) -> str | None:
    """'north' (etc.) when most buildings lie on one side of the road, 'both' when on both."""
    sides = []
    for b in buildings:
        c = b.footprint.centroid
        p = road_clip.interpolate(road_clip.project(c))
        dx, dy = c.x - p.x, c.y - p.y
        if math.hypot(dx, dy) > 60.0:
            continue
        ang = math.degrees(math.atan2(dx, dy)) % 360.0
        sides.append(["north", "east", "south", "west"][round(ang / 90.0) % 4])
    if len(sides) < 2:
        return None
    side, n = Counter(sides).most_common(1)[0]
    if n >= 0.8 * len(sides):
        return side
    return "both" if n <= 0.65 * len(sides) else None
