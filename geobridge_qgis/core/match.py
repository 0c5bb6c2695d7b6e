"""The geometric evidence for one candidate (core.refine's result), and what it says about the
photo."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Match:
    """The geometric evidence for one candidate, and what it says about the photo."""

    ok: bool
    reason: str = ""  # why the match failed ("" when accepted)
    matches: int = 0  # tentative (ratio-test or mutual) matches
    inliers: int = 0
    spread: float = 0.0  # inliers' convex hull / area of the photo's ground part
    reprojection_px: float = float("nan")  # RMS of the inliers, window pixels
    confidence: float = 0.0
    x: float = float("nan")  # refined centre, grid CRS
    y: float = float("nan")
    centre_sigma_m: float = float("nan")
    heading_deg: float = float("nan")  # clockwise from north
    heading_sigma_deg: float = float("nan")
    footprint: list[tuple[float, float]] = field(default_factory=list)  # closed ring, grid CRS
    seconds: float = 0.0
    method: str = ""  # the description that won: "upright+15", "rotation-invariant", ...
    correlation: float = float("nan")  # a dense alignment's peak (core.dense_align)

    def summary(self) -> str:
        """What the match rests on, in a few words."""
        if self.method.startswith("dense"):
            return f"dense alignment, correlation {self.correlation:.2f}"
        return f"{self.inliers} inliers, {self.spread:.0%} of the photo"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "matches": self.matches,
                "inliers": self.inliers, "spread": round(self.spread, 4),
                "reprojection_px": _round(self.reprojection_px, 3),
                "confidence": round(self.confidence, 4),
                "seconds": round(self.seconds, 3), "method": self.method,
                "correlation": _round(self.correlation, 4)}  # fmt: skip


def _round(v: float, n: int) -> float | None:
    return None if not math.isfinite(v) else round(v, n)
