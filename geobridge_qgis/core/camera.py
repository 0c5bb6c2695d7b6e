"""The project's one camera model: a pinhole camera over flat ground (z = 0).

The refiner warps a photo onto the ground with it (the camera its metadata describes, see
`priors.py`), and the synthetic world's renderer takes its drone photos with it.

- position x, y in a projected CRS (metres), `altitude_m` above the ground; a camera built from
  a photo's metadata alone sits at (0, 0): its ground points are offsets from the point below it;
- `heading_deg`: where the top of the image points, clockwise from north (0 = north up,
  90 = east up), as a gimbal yaw; None when unknown, which the geometry takes as 0 (the view is
  left unrotated);
- `tilt_deg`: the optical axis' angle off nadir (0 = straight down), tilted forward along the
  heading, so the top of an oblique photo shows the ground farther away (a DJI gimbal pitch is
  `tilt_deg - 90`);
- `hfov_deg`: horizontal field of view; square pixels; principal point at the image centre.

Camera frame: x right, y down, z along the optical axis. Pixel (u, v) = (column, row), in one
of two conventions half a pixel apart: "centres" (OpenCV's: integer values at pixel centres,
the image spans [-0.5, W-0.5] x [-0.5, H-0.5]; the renderer's and the refiner's) or "corners"
(0 at the image's top-left corner, the image spans [0, W] x [0, H]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Pixels = Literal["centres", "corners"]
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # what a "35 mm equivalent" focal refers to


def look_ahead_m(altitude_m: float, tilt_deg: float) -> float:
    """How far ahead of the point below the camera its optical axis meets the ground."""
    return altitude_m * math.tan(math.radians(tilt_deg))


def centre_width_m(altitude_m: float, tilt_deg: float, hfov_deg: float) -> float:
    """The width of ground the image's centre row covers (across the view, at the axis)."""
    slant = altitude_m / math.cos(math.radians(tilt_deg))
    return 2 * slant * math.tan(math.radians(hfov_deg / 2))


def hfov_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Horizontal field of view (degrees) from a 35 mm equivalent focal length (by the
    diagonal, as EXIF's FocalLengthIn35mmFilm is defined)."""
    diag = FULL_FRAME_DIAGONAL_MM * width / math.hypot(width, height)
    return math.degrees(2 * math.atan(diag / (2 * focal_35mm)))


def focal_35mm_from_hfov(hfov_deg: float, width: int, height: int) -> float:
    """The 35 mm equivalent focal length (by the diagonal) of a horizontal field of view."""
    t_diag = math.tan(math.radians(hfov_deg) / 2) * math.hypot(width, height) / width
    return FULL_FRAME_DIAGONAL_MM / 2 / t_diag


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over flat ground (see the module docstring for conventions)."""

    x: float
    y: float
    altitude_m: float
    heading_deg: float | None = 0.0
    tilt_deg: float = 0.0
    hfov_deg: float = 73.7

    @property
    def _heading(self) -> float:
        return 0.0 if self.heading_deg is None else self.heading_deg

    def rotation(self) -> np.ndarray:
        """World (east, north, up) -> camera (right, down, forward), rows are the camera axes."""
        h, p = math.radians(self._heading), math.radians(self.tilt_deg)
        x_cam = [math.cos(h), -math.sin(h), 0.0]
        y_cam = [-math.cos(p) * math.sin(h), -math.cos(p) * math.cos(h), -math.sin(p)]
        z_cam = [math.sin(p) * math.sin(h), math.sin(p) * math.cos(h), -math.cos(p)]
        return np.array([x_cam, y_cam, z_cam])

    def focal_px(self, size: tuple[int, int]) -> float:
        return (size[0] / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    def intrinsics(self, size: tuple[int, int], pixels: Pixels = "centres") -> np.ndarray:
        f = self.focal_px(size)
        off = 0.5 if pixels == "centres" else 0.0
        return np.array([[f, 0, size[0] / 2 - off], [0, f, size[1] / 2 - off], [0, 0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.altitude_m])

    def project(self, xyz: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """World points (n, 3) -> pixel (u, v) (n, 2) and depth along the optical axis (n,)."""
        pc = (np.asarray(xyz, dtype=np.float64) - self.position) @ self.rotation().T
        z = pc[:, 2]
        k = self.intrinsics(size)
        safe = np.where(np.abs(z) < 1e-6, 1e-6, z)
        uv = np.c_[k[0, 0] * pc[:, 0] / safe + k[0, 2], k[1, 1] * pc[:, 1] / safe + k[1, 2]]
        return uv, z

    def ground_homography(self, size: tuple[int, int]) -> np.ndarray:
        """3x3: ground (x, y, 1) at z = 0 -> image (u, v, 1)."""
        r = self.rotation()
        t = -r @ self.position
        return self.intrinsics(size) @ np.c_[r[:, 0], r[:, 1], t]

    def image_to_nadir_offsets(self, size: tuple[int, int], pixels: Pixels) -> np.ndarray:
        """3x3: image (u, v, 1) -> ground metres (east, north) from the point below the camera
        (its x, y left out): a ray through each pixel, scaled to meet z = 0."""
        k_inv = np.linalg.inv(self.intrinsics(size, pixels))
        return np.diag([self.altitude_m, self.altitude_m, -1.0]) @ self.rotation().T @ k_inv

    def ground_points(self, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Pixels (n, 2) -> ground points (n, 2) at z = 0."""
        hinv = np.linalg.inv(self.ground_homography(size))
        p = np.c_[np.asarray(uv, dtype=np.float64), np.ones(len(uv))] @ hinv.T
        return p[:, :2] / p[:, 2:3]

    def footprint(self, size: tuple[int, int]) -> np.ndarray:
        """(4, 2): the image corners on the ground: top-left, top-right, bottom-right,
        bottom-left."""
        w, h = size
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        return self.ground_points(corners, size)

    def ground_rows(self, size: tuple[int, int], max_off_nadir_deg: float) -> float:
        """The topmost pixel-centre row (may be fractional, -0.5 = the top edge) whose ground
        lies at most `max_off_nadir_deg` off nadir: the rows above it look at the horizon or
        at ground too foreshortened to use. Without roll an image row is a ground line across
        the heading, altitude * tan(angle) ahead; the angle grows towards the top of the frame."""
        f, cy = self.focal_px(size), size[1] / 2 - 0.5
        room = math.radians(max_off_nadir_deg - self.tilt_deg)
        if room <= -math.pi / 2 + 1e-6:
            return float(size[1] - 0.5)  # nothing of the frame is usable ground
        return float(min(max(cy - f * math.tan(room), -0.5), size[1] - 0.5))

    def ground_part(self, size: tuple[int, int], max_off_nadir_deg: float) -> np.ndarray:
        """(4, 2) pixel-centre corners of the part of the frame below `ground_rows`: top-left,
        top-right, bottom-right, bottom-left."""
        w, h = size
        top = self.ground_rows(size, max_off_nadir_deg)
        return np.array([[-0.5, top], [w - 0.5, top], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])

    def centre_ground(self) -> tuple[float, float]:
        """The true centre: the ground point on the optical axis (seen at the image centre)."""
        h = math.radians(self._heading)
        d = look_ahead_m(self.altitude_m, self.tilt_deg)
        return self.x + d * math.sin(h), self.y + d * math.cos(h)

    def ground_resolution(self, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Metres of ground per pixel at these pixels (geometric mean of the two directions)."""
        uv = np.asarray(uv, dtype=np.float64)
        g0 = self.ground_points(uv, size)
        gu = self.ground_points(uv + [1.0, 0.0], size) - g0
        gv = self.ground_points(uv + [0.0, 1.0], size) - g0
        return np.sqrt(np.abs(gu[:, 0] * gv[:, 1] - gu[:, 1] * gv[:, 0]))
