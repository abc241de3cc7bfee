"""Inside/outside labels from depth images alone (space carving with depth).

A depth image says, along every pixel's ray, "empty up to the observed depth, then surface". So a
point ``x`` is certainly *outside* when some camera sees it with an unobstructed ray: ``x``
projects into the image at depth ``d(x)`` and the pixel is background or observes a surface
farther than ``d(x) + margin``. A point that no camera sees past is labelled *inside* (the
visual hull with depth): right for closed shapes except in cavities no camera looks into.

:func:`depth_observations` turns one shape's depth views into labelled points for test-time
optimisation (:mod:`impax.inference.refine`): uniform points in a box labelled by carving, and
pairs of points straddling each observed surface point along its camera ray (``offset`` in front:
outside; ``offset`` behind: inside unless carved by another view).

Pure numpy; cameras are :class:`impax.geometry.camera.Cameras` in the frame of the points.
"""

from __future__ import annotations

import numpy as np

from impax.geometry.camera import Cameras


def carve_outside(points: np.ndarray, depth: np.ndarray, cameras: Cameras, margin: float = 0.0) -> np.ndarray:
    """``bool [N]``: points that some view sees as empty space (see the module doc).

    ``depth``: ``[V, S, S]`` z-depth (0 = background), any size ``S`` (the cameras' field of view is
    kept); ``margin``: a point counts as seen in front of the surface only when it is more than
    ``margin`` nearer than the observed depth (guards the pixel quantisation of the surface).
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 3 or depth.shape[0] != len(cameras) or depth.shape[1] != depth.shape[2]:
        raise ValueError(f"depth must be [V={len(cameras)}, S, S], got {depth.shape}")
    cams = cameras.resized(depth.shape[1])
    pix, d = cams.project(np.asarray(points, np.float64).reshape(-1, 3))          # [V, N, 2], [V, N]
    s = depth.shape[1]
    col = np.floor(pix[..., 0])
    row = np.floor(pix[..., 1])
    seen = (d > 0) & (col >= 0) & (col < s) & (row >= 0) & (row < s)
    ci = np.clip(col, 0, s - 1).astype(np.int64)
    ri = np.clip(row, 0, s - 1).astype(np.int64)
    observed = depth[np.arange(len(cams))[:, None], ri, ci]                        # [V, N]
    empty = seen & ((observed <= 0) | (d < observed - margin))
    return np.any(empty, axis=0)


def depth_observations(depth: np.ndarray, cameras: Cameras, rng: np.random.Generator, n_uniform: int = 8192,
                       n_near: int = 8192, half: float = 0.7, offset: float = 0.02,
                       margin: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labelled points of one shape from its depth views: ``(points f32[M, 3], inside bool[M])``.

    * ``n_uniform`` points uniform in ``[-half, half]^3``, inside unless carved;
    * ``n_near`` points at back-projected depth pixels moved ``offset`` along the camera's ray:
      half towards the camera (outside), half away from it (inside unless another view carves them).

    ``margin`` (default: one pixel's footprint at unit depth, ``1 / focal``, times 2) keeps
    carving from eating the surface itself.
    """
    from impax.geometry.render import depth_to_points

    depth = np.asarray(depth, np.float32)
    cams = cameras.resized(depth.shape[1])
    margin = 2.0 / cams.focal_px if margin is None else float(margin)
    uni = rng.uniform(-half, half, (int(n_uniform), 3))
    surf, _ = depth_to_points(depth, cams)
    if len(surf) == 0:
        raise ValueError("the depth images see no surface")
    # the ray direction of every surface pixel: from its camera towards the point
    view = np.repeat(np.arange(len(cams)), (depth > 0).reshape(len(cams), -1).sum(axis=1))
    ray = surf - cams.positions[view]
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    pick = rng.integers(0, len(surf), int(n_near))
    sign = np.where(np.arange(int(n_near)) % 2 == 0, -1.0, 1.0)                     # -: in front, +: behind
    near = surf[pick] + (sign * offset)[:, None] * ray[pick]
    pts = np.concatenate([uni, near]).astype(np.float32)
    inside = ~carve_outside(pts, depth, cams, margin)
    inside[len(uni):][sign < 0] = False
    return pts, inside
