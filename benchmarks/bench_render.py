"""CPU ray-casting renders (``impax.geometry.render``) on a ~20k-face mesh.

Seconds per 224^2 depth view (LDIF's 20 dodecahedron views, one call), per 137^2 grayscale
SVR view (``render_views``, 2x2 supersampled) and per 256^2 shaded report view (2x2 supersampled).
Run alone: ``python -m benchmarks.bench_render [--short]``; the suite runner picks up
``WORKLOADS`` when this module is listed in ``benchmarks/__main__.py``.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def knot_mesh(n_along: int = 420, n_around: int = 24):
    """A closed (2, 3) torus-knot tube with ``2 * n_along * n_around`` faces (20,160 by default),
    centred with a unit bounding-box diagonal (IM-NET frame) — a test shape with self-occlusion."""
    import trimesh

    t = np.linspace(0.0, 2.0 * np.pi, n_along, endpoint=False)
    r = np.cos(3 * t) + 2.0
    c = np.stack([r * np.cos(2 * t), r * np.sin(2 * t), -np.sin(3 * t)], axis=1)
    tan = np.roll(c, -1, 0) - np.roll(c, 1, 0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    nrm = np.cross(tan, [0.0, 0.0, 1.0])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    bin_ = np.cross(tan, nrm)
    a = np.linspace(0.0, 2.0 * np.pi, n_around, endpoint=False)
    ring = np.cos(a)[None, :, None] * nrm[:, None] + np.sin(a)[None, :, None] * bin_[:, None]
    verts = (c[:, None] + 0.4 * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_along), np.arange(n_around), indexing="ij")
    a0 = i * n_around + j
    a1 = i * n_around + (j + 1) % n_around
    b0 = ((i + 1) % n_along) * n_around + j
    b1 = ((i + 1) % n_along) * n_around + (j + 1) % n_around
    faces = np.concatenate([np.stack([a0, b0, a1], -1).reshape(-1, 3), np.stack([a1, b0, b1], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh.apply_scale(1.0 / np.linalg.norm(mesh.extents))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (BVH build paths, numpy caches)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_render(short: bool) -> list:
    from benchmarks.common import Result, peak_rss_mib
    from impax.geometry import render
    from impax.geometry.camera import dodecahedron_cameras

    mesh = knot_mesh(140, 12) if short else knot_mesh()
    faces = len(mesh.faces)
    reps = 1 if short else 3
    gaps_mesh = mesh.copy().apply_scale(0.8)  # roughly GAPS-frame sized for the dodecahedron cameras
    cams = dodecahedron_cameras()
    n_views = 4 if short else 24

    t_depth = _time(lambda: render.render_depth(gaps_mesh, cams), reps) / len(cams)
    t_gray = _time(lambda: render.render_views(mesh, n_views=n_views, seed=0), reps) / n_views
    t_shaded = _time(lambda: render.render_shaded(mesh, 30.0, 20.0, 256), reps)
    rss = peak_rss_mib()
    extra = {"faces": faces}
    return [
        Result("render depth 224^2 (20 dodeca views)", 1.0 / t_depth, "views/s", t_depth, peak_rss_mib=rss, extra=extra),
        Result("render gray 137^2 (render_views, ss 2)", 1.0 / t_gray, "views/s", t_gray, peak_rss_mib=rss),
        Result("render shaded 256^2 (ss 2)", 1.0 / t_shaded, "views/s", t_shaded, peak_rss_mib=rss),
    ]


WORKLOADS = {"render": bench_render}


if __name__ == "__main__":
    for r in bench_render("--short" in sys.argv):
        print(f"{r.name:42s} {r.seconds:8.4f} s/view  {r.throughput:8.1f} views/s  {r.extra or ''}")
