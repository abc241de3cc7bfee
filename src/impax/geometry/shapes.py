"""A procedural shape library for tests, demos and smoke-training: no downloads.

Each shape is an analytic signed distance function (negative inside) built from primitives
(sphere, ellipsoid, rounded box, torus, capsule, capped cylinder, solids of revolution of a 2-D
polygon) combined with ``min`` (union) and ``max(a, -b)`` (subtraction), and meshed with
``skimage.measure.marching_cubes`` at level 0 on a node grid over ``[-0.5, 0.5]^3``. Every shape
stays inside ``[-0.45, 0.45]^3``, so the function is positive on the grid boundary and the mesh is
closed and watertight. Structures are at least 0.03 thick (> 1/40 of the unit box) so a 64^3
voxelisation sees them. Parameters are random but deterministic in ``(family, seed)``.

The primitive distances (sphere, rounded box, torus, capsule, cylinder) are exact Euclidean
distances; the ellipsoid uses a first-order bound, unions/subtractions are exact outside and a
bound inside, and the airplane's swept wing is a sheared box; all have the right sign everywhere,
which is what the label tests rely on. Axis convention as in ShapeNet: y is up; the airplane's
fuselage lies along z with the nose at +z (wings swept towards -z).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

FAMILIES: tuple[str, ...] = ("sphere", "box", "torus", "capsule", "cylinder", "ellipsoid",
                             "chair", "table", "lamp", "mug", "airplane")

#: Shapes stay inside [-EXTENT, EXTENT]^3.
EXTENT = 0.45
#: Default marching-cubes node count per axis over [-0.5, 0.5] (spacing 1/79 ≈ 0.0127).
DEFAULT_RES = 80

Sdf = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- primitives
def _length(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(a * a, axis=-1))


def sd_sphere(c, r) -> Sdf:
    c = np.asarray(c, dtype=np.float64)
    return lambda p: _length(p - c) - r


def sd_ellipsoid(c, radii) -> Sdf:
    """Sign-exact bound: ``k0 (k0 - 1) / k1`` with ``k0 = |p/r|``, ``k1 = |p/r^2|``."""
    c, r = np.asarray(c, dtype=np.float64), np.asarray(radii, dtype=np.float64)

    def f(p):
        q = p - c
        k0 = _length(q / r)
        k1 = np.maximum(_length(q / (r * r)), 1e-12)
        return k0 * (k0 - 1.0) / k1
    return f


def sd_round_box(c, half, radius=0.0) -> Sdf:
    """Box with half extents ``half`` (including the rounding) and edge radius ``radius``."""
    c, h = np.asarray(c, dtype=np.float64), np.asarray(half, dtype=np.float64) - radius

    def f(p):
        q = np.abs(p - c) - h
        return _length(np.maximum(q, 0.0)) + np.minimum(q.max(axis=-1), 0.0) - radius
    return f


def _to_local(p: np.ndarray, c, rot) -> np.ndarray:
    q = p - np.asarray(c, dtype=np.float64)
    return q if rot is None else q @ np.asarray(rot, dtype=np.float64)  # R^T q, row-wise


def sd_torus(c, major, minor, rot=None) -> Sdf:
    """Torus around the local y axis; ``rot`` maps local to world (columns = local axes)."""
    def f(p):
        q = _to_local(p, c, rot)
        ring = np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2) - major
        return np.sqrt(ring ** 2 + q[:, 1] ** 2) - minor
    return f


def sd_capsule(a, b, r) -> Sdf:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ab = b - a
    denom = float(ab @ ab)

    def f(p):
        t = np.clip(((p - a) @ ab) / denom, 0.0, 1.0)
        return _length(p - (a + t[:, None] * ab)) - r
    return f


def sd_cylinder(c, r, half_h, rot=None) -> Sdf:
    """Capped cylinder along the local y axis."""
    def f(p):
        q = _to_local(p, c, rot)
        d = np.stack([np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2) - r, np.abs(q[:, 1]) - half_h], axis=-1)
        return np.minimum(d.max(axis=-1), 0.0) + _length(np.maximum(d, 0.0))
    return f


def sd_polygon2d(poly: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Signed distance from 2-D points ``q`` [N,2] to a closed simple polygon (negative inside)."""
    v = np.asarray(poly, dtype=np.float64)
    w = np.roll(v, -1, axis=0)
    e = w - v  # [E,2]
    d = q[:, None, :] - v[None]  # [N,E,2]
    t = np.clip(np.sum(d * e, axis=-1) / np.sum(e * e, axis=-1), 0.0, 1.0)
    dist = np.sqrt(np.min(np.sum((d - t[..., None] * e) ** 2, axis=-1), axis=1))
    # even-odd crossing test
    y = q[:, 1:2]
    cond = (v[None, :, 1] > y) != (w[None, :, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = v[None, :, 0] + (y - v[None, :, 1]) * e[None, :, 0] / e[None, :, 1]
    crossings = np.sum(cond & (q[:, 0:1] < xint), axis=1)
    return np.where(crossings % 2 == 1, -dist, dist)


def sd_revolve(c, profile, rot=None) -> Sdf:
    """Solid of revolution about the local y axis of a 2-D ``profile`` polygon in (rho, y)."""
    prof = np.asarray(profile, dtype=np.float64)

    def f(p):
        q = _to_local(p, c, rot)
        rho_y = np.stack([np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2), q[:, 1]], axis=-1)
        return sd_polygon2d(prof, rho_y)
    return f


def union(*fs: Sdf) -> Sdf:
    return lambda p: np.min(np.stack([f(p) for f in fs], axis=0), axis=0)


def subtract(a: Sdf, b: Sdf) -> Sdf:
    return lambda p: np.maximum(a(p), -b(p))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# ----------------------------------------------------------------------------- families
def _sphere(rng):
    r = rng.uniform(0.25, 0.4)
    c = rng.uniform(-1, 1, 3) * (EXTENT - r) * 0.8
    return sd_sphere(c, r), {"center": c.tolist(), "radius": r}


def _box(rng):
    half = rng.uniform(0.15, 0.38, 3)
    rad = rng.uniform(0.01, 0.05)
    return sd_round_box([0, 0, 0], half, rad), {"half": half.tolist(), "rounding": rad}


def _torus(rng):
    major, minor = rng.uniform(0.2, 0.3), rng.uniform(0.05, 0.1)
    rot = _random_rotation(rng)
    return sd_torus([0, 0, 0], major, minor, rot), {"major": major, "minor": minor, "rotation": rot.tolist()}


def _capsule(rng):
    r = rng.uniform(0.07, 0.14)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    half_len = rng.uniform(0.12, EXTENT - r - 0.02)
    a, b = -half_len * d, half_len * d
    return sd_capsule(a, b, r), {"a": a.tolist(), "b": b.tolist(), "radius": r}


def _cylinder(rng):
    r, hh = rng.uniform(0.12, 0.25), rng.uniform(0.12, 0.3)
    rot = _random_rotation(rng)
    return sd_cylinder([0, 0, 0], r, hh, rot), {"radius": r, "half_height": hh, "rotation": rot.tolist()}


def _ellipsoid(rng):
    radii = rng.uniform(0.12, 0.42, 3)
    return sd_ellipsoid([0, 0, 0], radii), {"radii": radii.tolist()}


def _legs(rng, xs, zs, y0, y1, hw, round_legs):
    parts = []
    for x in xs:
        for z in zs:
            if round_legs:
                parts.append(sd_cylinder([x, (y0 + y1) / 2, z], hw, (y1 - y0) / 2))
            else:
                parts.append(sd_round_box([x, (y0 + y1) / 2, z], [hw, (y1 - y0) / 2, hw], 0.004))
    return parts


def _chair(rng):
    w, d = rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.28)
    seat_y, seat_t = rng.uniform(-0.12, 0.02), rng.uniform(0.02, 0.03)
    back_top = rng.uniform(0.3, EXTENT - 0.01)
    back_t = rng.uniform(0.018, 0.03)
    hw = rng.uniform(0.018, 0.03)  # leg half-width: legs 0.036..0.06 thick
    round_legs = bool(rng.random() < 0.5)
    floor = -EXTENT + 0.01
    seat = sd_round_box([0, seat_y, 0], [w, seat_t, d], 0.01)
    back_h = (back_top - (seat_y + seat_t)) / 2
    back = sd_round_box([0, seat_y + seat_t + back_h, -d + back_t], [w, back_h, back_t], 0.01)
    legs = _legs(rng, (-w + hw, w - hw), (-d + hw, d - hw), floor, seat_y, hw, round_legs)
    params = {"width": w, "depth": d, "seat_y": seat_y, "back_top": back_top, "leg_half_width": hw,
              "round_legs": round_legs}
    return union(seat, back, *legs), params


def _table(rng):
    w, d = rng.uniform(0.3, 0.42), rng.uniform(0.2, 0.38)
    top_y, top_t = rng.uniform(0.0, 0.2), rng.uniform(0.02, 0.035)
    floor = -EXTENT + 0.01
    top = sd_round_box([0, top_y, 0], [w, top_t, d], 0.01)
    pedestal = bool(rng.random() < 0.3)
    if pedestal:
        pr = rng.uniform(0.035, 0.06)
        post = sd_cylinder([0, (floor + top_y) / 2, 0], pr, (top_y - floor) / 2)
        base = sd_cylinder([0, floor + 0.02, 0], rng.uniform(0.15, 0.22), 0.02)
        parts = [post, base]
        hw = pr
    else:
        hw = rng.uniform(0.02, 0.035)
        inset = rng.uniform(0.0, 0.05)
        parts = _legs(rng, (-w + hw + inset, w - hw - inset), (-d + hw + inset, d - hw - inset),
                      floor, top_y, hw, bool(rng.random() < 0.5))
    return union(top, *parts), {"width": w, "depth": d, "top_y": top_y, "pedestal": pedestal,
                                "leg_half_width": hw}


def _lamp(rng):
    floor = -EXTENT + 0.01
    base_r, base_h = rng.uniform(0.1, 0.17), rng.uniform(0.015, 0.025)
    base = sd_cylinder([0, floor + base_h, 0], base_r, base_h)
    y0 = rng.uniform(0.0, 0.12)  # shade bottom
    y1 = rng.uniform(y0 + 0.15, EXTENT - 0.02)  # shade top
    rb, rt = rng.uniform(0.18, 0.26), rng.uniform(0.08, 0.14)
    t = rng.uniform(0.018, 0.025)
    pole_r = rng.uniform(0.018, 0.028)
    pole = sd_cylinder([0, (floor + y1) / 2, 0], pole_r, (y1 - floor) / 2 - t / 2)
    shade_profile = [(rb, y0), (rt, y1), (0.0, y1), (0.0, y1 - t), (rt - t, y1 - t), (rb - t, y0)]
    shade = sd_revolve([0, 0, 0], shade_profile)
    return union(base, pole, shade), {"base_radius": base_r, "shade": shade_profile, "pole_radius": pole_r}


def _mug(rng):
    R, H = rng.uniform(0.16, 0.24), rng.uniform(0.28, 0.42)
    t, tb = rng.uniform(0.022, 0.032), rng.uniform(0.025, 0.04)
    y0, y1 = -H / 2, H / 2
    profile = [(0.0, y0), (R, y0), (R, y1), (R - t, y1), (R - t, y0 + tb), (0.0, y0 + tb)]
    cup = sd_revolve([0, 0, 0], profile)
    hr = rng.uniform(0.07, min(0.11, H / 2 - 0.04))
    hm = rng.uniform(0.018, 0.026)
    rot = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # torus axis along z
    handle = subtract(sd_torus([R, 0, 0], hr, hm, rot), sd_cylinder([0, 0, 0], R - t / 2, H / 2))
    return union(cup, handle), {"radius": R, "height": H, "wall": t, "handle_radius": hr}


def _airplane(rng):
    fr, fl = rng.uniform(0.045, 0.07), rng.uniform(0.32, 0.37)
    fuselage = sd_capsule([0, 0, -fl], [0, 0, fl], fr)
    span, chord, wt = rng.uniform(0.33, EXTENT - 0.02), rng.uniform(0.06, 0.1), rng.uniform(0.015, 0.02)
    sweep = rng.uniform(0.0, 0.5)
    wing_z = rng.uniform(-0.05, 0.08)
    wing_box = sd_round_box([0, 0, wing_z], [span, wt, chord], 0.008)

    def wing(p):  # swept back: shift z by sweep * |x| (a shear; sign-exact)
        q = p.copy()
        q[:, 2] = q[:, 2] + sweep * np.abs(q[:, 0])
        return wing_box(q)
    tail_z = -fl + 0.04
    hstab = sd_round_box([0, 0.01, tail_z], [rng.uniform(0.1, 0.16), 0.015, 0.045], 0.006)
    fin_h = rng.uniform(0.08, 0.12)
    fin = sd_round_box([0, fr + fin_h / 2 - 0.01, tail_z], [0.015, fin_h / 2 + 0.01, 0.05], 0.006)
    return union(fuselage, wing, hstab, fin), {"fuselage_radius": fr, "span": span, "sweep": sweep}


_BUILDERS: dict[str, Callable[[np.random.Generator], tuple[Sdf, dict[str, Any]]]] = {
    "sphere": _sphere, "box": _box, "torus": _torus, "capsule": _capsule, "cylinder": _cylinder,
    "ellipsoid": _ellipsoid, "chair": _chair, "table": _table, "lamp": _lamp, "mug": _mug,
    "airplane": _airplane,
}
assert tuple(_BUILDERS) == FAMILIES


# ----------------------------------------------------------------------------- meshing
def mesh_sdf(sdf: Sdf, res: int = DEFAULT_RES, half: float = 0.5) -> trimesh.Trimesh:
    """Marching cubes of ``sdf`` at level 0 on a ``res``^3 node grid over ``[-half, half]^3``.

    Faces are oriented outward (towards increasing sdf); the result is closed when the sdf is
    positive on the grid boundary.
    """
    from skimage.measure import marching_cubes

    x = np.linspace(-half, half, res)
    h = x[1] - x[0]
    # Coarse-to-fine: evaluate every 4th node first; a fine node whose nearest coarse node is far
    # from the surface (|d| > 2 x the largest fine-to-coarse distance, safe for sdfs with
    # Lipschitz constant < 2) keeps the coarse value (same sign, never on the level set).
    stride = 4
    ci = np.minimum(np.rint(np.arange(res) / stride).astype(np.int64) * stride, res - 1)
    cu = np.unique(ci)
    gc = np.stack(np.meshgrid(x[cu], x[cu], x[cu], indexing="ij"), axis=-1).reshape(-1, 3)
    coarse = np.full((res, res, res), np.nan)
    coarse[np.ix_(cu, cu, cu)] = sdf(gc).reshape(len(cu), len(cu), len(cu))
    vol = coarse[np.ix_(ci, ci, ci)]
    near = np.abs(vol) <= 2.0 * np.sqrt(3.0) * (stride / 2) * h * 2.0
    idx = np.nonzero(near)
    vol[idx] = sdf(np.stack([x[idx[0]], x[idx[1]], x[idx[2]]], axis=-1))
    vol[vol == 0.0] = 1e-9  # no grid value exactly on the level: avoids degenerate triangles
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(h, h, h), gradient_direction="ascent",
                                        allow_degenerate=False)
    mesh = trimesh.Trimesh(vertices=verts - half, faces=faces.astype(np.int64), process=False)
    mesh.merge_vertices()
    if mesh.volume < 0:
        mesh.invert()
    return mesh


@dataclasses.dataclass
class ProceduralShape:
    """A procedural shape: its family, seed, parameters, analytic ``sdf`` and closed ``mesh``."""

    family: str
    seed: int
    params: dict[str, Any]
    _sdf: Sdf
    mesh: trimesh.Trimesh

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Analytic signed distance (negative inside) at ``points`` [N,3] → f32[N] (mesh frame)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return self._sdf(p).astype(np.float32)


#: Named random streams of :func:`generate`. ``"default"`` is what ``impax shapes`` and ``impax demo``
#: draw from; ``"pretrain"`` is a separate stream for the data of impax's shipped pretrained weights
#: (:mod:`impax.pretrained`), so no shape of the default stream, for any seed, is among them.
STREAMS: dict[str, int] = {"default": 0, "pretrain": 1}


def make_shape(family: str, seed: int, res: int = DEFAULT_RES, stream: str = "default") -> ProceduralShape:
    """Build one shape of ``family`` with random parameters drawn from ``seed`` (deterministic).

    ``stream`` (:data:`STREAMS`): the parameters of a non-default stream come from a generator
    keyed by ``(seed, family, stream)``, a different key from every default-stream ``(seed,
    family)``."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown shape family {family!r}; choose from {', '.join(FAMILIES)}")
    if stream not in STREAMS:
        raise ValueError(f"unknown shape stream {stream!r}; choose from {', '.join(STREAMS)}")
    key = [int(seed), FAMILIES.index(family)] + ([STREAMS[stream]] if STREAMS[stream] else [])
    sdf, params = _BUILDERS[family](np.random.default_rng(key))
    return ProceduralShape(family, int(seed), params, sdf, mesh_sdf(sdf, res))


def generate(out_dir: str | Path, count: int, seed: int = 0, res: int = DEFAULT_RES,
             stream: str = "default") -> list[Path]:
    """Write ``count`` shapes round-robin over :data:`FAMILIES` as
    ``out_dir/<family>/<family>_<k:03d>.ply`` (``k`` counts within the family). Returns the paths.
    ``stream``: see :func:`make_shape` (the default stream gives the files it always gave)."""
    from impax.geometry.mesh_io import save_mesh

    out = Path(out_dir)
    paths = []
    tag = [STREAMS[stream]] if stream in STREAMS and STREAMS[stream] else []
    for i in range(int(count)):
        family = FAMILIES[i % len(FAMILIES)]
        k = i // len(FAMILIES)
        shape_seed = int(np.random.SeedSequence([int(seed), i] + tag).generate_state(1)[0])
        shape = make_shape(family, shape_seed, res, stream)
        paths.append(save_mesh(shape.mesh, out / family / f"{family}_{k:03d}.ply"))
    return paths
