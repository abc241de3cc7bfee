"""Pinhole cameras for CPU ray casting (:mod:`impax.geometry.render`).

Convention (the one of OpenGL and of GAPS ``R3Camera``, which LDIF's renders use):

* camera frame: ``+x`` right, ``+y`` up, the camera looks down ``-z``; a point in front of the
  camera has ``z_cam < 0`` and its **depth** is ``-z_cam`` (distance along the optical axis);
* ``world2cam`` maps homogeneous world points to that frame; its inverse ``cam2world`` has the
  columns ``[right, up, -towards, eye]``;
* images are ``[H, W]`` with row 0 at the **top** and column 0 at the left; pixel ``(r, c)`` has
  its centre at ``x = (c + 0.5 - W/2) / f``, ``y = -(r + 0.5 - H/2) / f`` on the ``z = -1``
  plane (so ``cx = cy = (size - 1) / 2`` in integer pixel coordinates, as LDIF's
  ``depth_image_to_cam_image`` assumes). Square images, one focal length ``f`` in pixels.

Azimuth/elevation (:func:`orbit_cameras`, :func:`view_cameras`) are taken about the world ``+y``
axis (ShapeNet's up axis, kept by the IM-NET and GAPS frames): azimuth 0 puts the camera on the
``+z`` axis, azimuth 90 on ``+x``; elevation is the angle above the ``xz`` plane.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

#: LDIF's depth renders: 224 x 224 pixels (``scn2img -width 224 -height 224``).
DODECA_SIZE = 224
#: Half-angle of the horizontal field of view in ``dodeca_cameras.cam`` (radians).
DODECA_HALF_FOV = 0.5
#: Scale of the dodecahedron vertices in ``dodeca_cameras.cam`` (the (+-1, +-1, +-1) vertices
#: sit at +-0.6), so every camera is at radius 0.6 * sqrt(3) ~= 1.0392 from the origin.
DODECA_SCALE = 0.6


def _normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n == 0):
        raise ValueError("cannot normalise a zero vector")
    return v / n


@dataclasses.dataclass(frozen=True, eq=False)
class Cameras:
    """A batch of ``V`` square pinhole cameras (OpenGL-style frame, see the module docstring).

    ``world2cam``: float32 ``[V, 4, 4]`` rigid transforms; ``focal_px``: focal length in pixels;
    ``size``: image width = height in pixels.
    """

    world2cam: np.ndarray
    focal_px: float
    size: int

    def __post_init__(self) -> None:
        m = np.asarray(self.world2cam, dtype=np.float32)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3 or m.shape[1:] != (4, 4):
            raise ValueError(f"world2cam must be [V, 4, 4], got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("world2cam has non-finite values")
        if not (self.focal_px > 0 and int(self.size) > 0):
            raise ValueError(f"need focal_px > 0 and size > 0, got {self.focal_px}, {self.size}")
        m.setflags(write=False)
        object.__setattr__(self, "world2cam", m)
        object.__setattr__(self, "focal_px", float(self.focal_px))
        object.__setattr__(self, "size", int(self.size))

    # --- construction -------------------------------------------------------------------
    @classmethod
    def look_at(cls, eye: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None,
                focal_px: float = 1.0, size: int = 224) -> Cameras:
        """Cameras at ``eye [V,3]`` looking at ``target`` (default origin) with ``up`` (default +y).

        ``up`` is orthogonalised against the viewing direction (GAPS does the same: the up vectors
        of ``dodeca_cameras.cam`` are world +y made orthogonal to ``towards``).
        """
        eye = np.atleast_2d(np.asarray(eye, dtype=np.float64))
        target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
        up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
        towards = _normalize(np.broadcast_to(target, eye.shape) - eye)
        up = np.broadcast_to(up, eye.shape)
        up = up - np.sum(up * towards, axis=-1, keepdims=True) * towards
        if np.any(np.linalg.norm(up, axis=-1) < 1e-9):
            raise ValueError("up vector is parallel to the viewing direction")
        return cls.from_vectors(eye, towards, _normalize(up), focal_px, size)

    @classmethod
    def from_vectors(cls, eye: np.ndarray, towards: np.ndarray, up: np.ndarray,
                     focal_px: float, size: int) -> Cameras:
        """Cameras from GAPS-style (viewpoint, towards, up) vectors, each ``[V, 3]``."""
        eye = np.atleast_2d(np.asarray(eye, dtype=np.float64))
        towards = _normalize(np.atleast_2d(towards))
        up = _normalize(np.atleast_2d(up))
        right = _normalize(np.cross(towards, up))
        up = np.cross(right, towards)  # exactly orthonormal
        cam2world = np.tile(np.eye(4), (len(eye), 1, 1))
        cam2world[:, :3, 0] = right
        cam2world[:, :3, 1] = up
        cam2world[:, :3, 2] = -towards
        cam2world[:, :3, 3] = eye
        return cls(np.linalg.inv(cam2world).astype(np.float32), focal_px, size)

    # --- derived quantities ----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.world2cam.shape[0])

    def __getitem__(self, idx) -> Cameras:
        m = self.world2cam[idx]
        return Cameras(m if m.ndim == 3 else m[None], self.focal_px, self.size)

    @property
    def cam2world(self) -> np.ndarray:
        """float64 ``[V, 4, 4]`` inverse of ``world2cam``."""
        return np.linalg.inv(self.world2cam.astype(np.float64))

    @property
    def positions(self) -> np.ndarray:
        """Camera centres in world coordinates, float64 ``[V, 3]``."""
        return self.cam2world[:, :3, 3]

    @property
    def towards(self) -> np.ndarray:
        """Unit optical-axis (viewing) directions in world coordinates, float64 ``[V, 3]``."""
        return -self.cam2world[:, :3, 2]

    @property
    def ups(self) -> np.ndarray:
        """Unit up vectors in world coordinates, float64 ``[V, 3]``."""
        return self.cam2world[:, :3, 1]

    @property
    def half_fov(self) -> float:
        """Half-angle of the field of view (radians), edge of the image to the optical axis."""
        return math.atan(0.5 * self.size / self.focal_px)

    def resized(self, size: int) -> Cameras:
        """The same cameras and field of view at another image size (focal scaled)."""
        return Cameras(self.world2cam, self.focal_px * size / self.size, size)

    def pixel_directions(self) -> np.ndarray:
        """Camera-frame ray directions through the pixel centres, float64 ``[H, W, 3]``, ``z = -1``."""
        s, f = self.size, self.focal_px
        c = (np.arange(s, dtype=np.float64) + 0.5 - 0.5 * s) / f
        x = np.broadcast_to(c[None, :], (s, s))
        y = np.broadcast_to(-c[:, None], (s, s))
        return np.stack([x, y, -np.ones((s, s))], axis=-1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points ``[N, 3]`` into every camera.

        Returns ``(pixels f64[V, N, 2]`` as continuous (col, row) coordinates where pixel
        ``(r, c)`` covers ``[c, c+1) x [r, r+1)``, ``depth f64[V, N])``.
        """
        p = np.asarray(points, dtype=np.float64)
        m = self.world2cam.astype(np.float64)
        pc = np.einsum("vij,nj->vni", m[:, :3, :3], p) + m[:, None, :3, 3]
        depth = -pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            col = self.focal_px * pc[..., 0] / depth + 0.5 * self.size
            row = -self.focal_px * pc[..., 1] / depth + 0.5 * self.size
        return np.stack([col, row], axis=-1), depth


def dodecahedron_vertices(scale: float = DODECA_SCALE) -> np.ndarray:
    """The 20 vertices of the regular dodecahedron in the order of LDIF's ``dodeca_cameras.cam``.

    Cube vertices ``(+-1, +-1, +-1)`` first, then ``(0, +-phi, +-1/phi)``, ``(+-1/phi, 0, +-phi)``,
    ``(+-phi, +-1/phi, 0)``, with signs in the order ``+ +, + -, - +, - -``; all times ``scale``.
    """
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    signs2 = list(itertools.product((1.0, -1.0), repeat=2))
    verts = [np.array(s) for s in itertools.product((1.0, -1.0), repeat=3)]
    verts += [np.array([0.0, a * phi, b / phi]) for a, b in signs2]
    verts += [np.array([a / phi, 0.0, b * phi]) for a, b in signs2]
    verts += [np.array([a * phi, b / phi, 0.0]) for a, b in signs2]
    return scale * np.stack(verts)


def dodecahedron_cameras(size: int = DODECA_SIZE) -> Cameras:
    """The 20 cameras of LDIF's ``ldif/data/dodeca_cameras.cam`` (Genova et al. 2020).

    That file is a GAPS camera list, one camera per line::

        vx vy vz   tx ty tz   ux uy uz   xfov yfov   value

    (viewpoint, unit ``towards`` direction, unit ``up`` vector, *half*-angles of the field of
    view in radians, an unused score). LDIF's cameras sit on the vertices of a regular
    dodecahedron scaled by 0.6 (radius 0.6 * sqrt(3) ~= 1.039), look at the origin, have ``up``
    = world +y orthogonalised against ``towards`` and ``xfov = yfov = 0.5``. GAPS ``scn2img``
    renders them at 224 x 224, so ``f = 112 / tan(0.5) ~= 205.0`` px. We rebuild the same
    cameras, in the file's order, from those rules. ``size`` rescales the focal length so the
    field of view stays the same.
    """
    eye = dodecahedron_vertices()
    focal = 0.5 * size / math.tan(DODECA_HALF_FOV)
    return Cameras.look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0]), focal, size)


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a full field of view ``fov_deg`` across ``size`` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2.0)


def orbit_positions(azimuth_deg, elevation_deg, distance, target=None) -> np.ndarray:
    """Camera centres on a sphere around ``target`` (y up; azimuth 0 on +z, 90 on +x)."""
    az = np.radians(np.atleast_1d(np.asarray(azimuth_deg, dtype=np.float64)))
    el = np.radians(np.atleast_1d(np.asarray(elevation_deg, dtype=np.float64)))
    d = np.atleast_1d(np.asarray(distance, dtype=np.float64))
    az, el, d = np.broadcast_arrays(az, el, d)
    t = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    return t + d[:, None] * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)


def orbit_cameras(azimuth_deg, elevation_deg, size: int = 256, bounds: np.ndarray | None = None,
                  fov_deg: float = 30.0, margin: float = 1.08, distance: float | None = None,
                  radius: float | None = None) -> Cameras:
    """Cameras orbiting a box, looking at its centre, framed so a sphere around it fits.

    ``bounds`` is ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` (default: IM-NET's unit box of
    diagonal 1 at the origin); the sphere has ``radius`` (default: half the box diagonal, which
    always encloses the box). The distance puts that sphere inside the field of view with
    ``margin`` (> 1 leaves a border); pass ``distance`` to fix it instead. Use the same
    ``bounds``/``radius`` for a ground truth and its reconstruction so they share a camera.
    """
    if bounds is None:
        centre, half_diag = np.zeros(3), 0.5
    else:
        b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
        centre, half_diag = b.mean(axis=0), 0.5 * float(np.linalg.norm(b[1] - b[0]))
    radius = max(half_diag if radius is None else float(radius), 1e-9)
    if distance is None:
        distance = margin * radius / math.sin(math.radians(fov_deg) / 2.0)
    eye = orbit_positions(azimuth_deg, elevation_deg, distance, centre)
    return Cameras.look_at(eye, centre, None, focal_from_fov(fov_deg, size), size)


#: 3D-R2N2's renders (Choy et al. 2016): 137 x 137, field of view 25 degrees, elevation drawn
#: in [25, 30] degrees and azimuth in [0, 360).
R2N2_SIZE = 137
R2N2_FOV_DEG = 25.0
R2N2_ELEVATION_DEG = (25.0, 30.0)
#: Camera distance for a shape of unit bounding-box diagonal: the view half-width at the
#: origin is 2.5 * tan(12.5 deg) ~= 0.55, so the shape fills most of the frame.
R2N2_DISTANCE = 2.5


def view_angles(n_views: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (azimuth, elevation) in degrees for :func:`view_cameras`, float64 ``[V]``."""
    rng = np.random.default_rng(seed)
    az = rng.uniform(0.0, 360.0, size=n_views)
    el = rng.uniform(*R2N2_ELEVATION_DEG, size=n_views)
    return az, el


def view_cameras(n_views: int = 24, seed: int = 0, size: int = R2N2_SIZE,
                 distance: float = R2N2_DISTANCE, fov_deg: float = R2N2_FOV_DEG) -> Cameras:
    """The cameras of :func:`impax.geometry.render.render_views`: 3D-R2N2-like random views.

    Azimuth uniform in [0, 360), elevation uniform in [25, 30] degrees (3D-R2N2's ranges),
    looking at the origin from ``distance``, field of view ``fov_deg``; deterministic in ``seed``.
    """
    az, el = view_angles(n_views, seed)
    eye = orbit_positions(az, el, distance)
    return Cameras.look_at(eye, np.zeros(3), None, focal_from_fov(fov_deg, size), size)
