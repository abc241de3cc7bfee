"""Depth, normal and shaded renders by CPU ray casting (trimesh + embreex), no OpenGL.

* :func:`render_depth` / :func:`render_depth_normals` / :func:`depth_to_points` reproduce LDIF's
  data preparation (Genova et al. 2020, ``process_mesh_local.sh``): GAPS ``scn2img`` depth
  images from the 20 cameras of ``dodeca_cameras.cam`` (:func:`dodecahedron_cameras`), camera
  normal images (``conf2img -create_normal_images``) and the 100k oriented points of
  ``surface_samples_from_dodeca.pts`` back-projected from them
  (:func:`dodeca_surface_samples`).
* :func:`render_views` makes grayscale single-view-reconstruction inputs like 3D-R2N2's renders
  (Choy et al. 2016) that IM-NET's SVR model consumes: 137 x 137, shape on white.
* :func:`render_shaded` / :func:`render_grid` make report pictures; several meshes can be drawn
  in one picture with colours and transparency (e.g. SIF ellipsoids over a reconstruction).
  :func:`render_compare` draws a ground truth and its reconstructions side by side with one camera
  and one scale, each tile labelled (:func:`add_label`).

Camera conventions: :mod:`impax.geometry.camera` (OpenGL-style frame, row 0 at the top, depth
= distance along the optical axis). Rays go through pixel centres. Each ray's first hit face is
found by Embree (float32); the hit point and depth are then recomputed in float64 as the exact
intersection of the ray with that face's plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh

from impax.geometry.camera import (
    R2N2_SIZE,
    Cameras,
    dodecahedron_cameras,
    orbit_cameras,
    view_cameras,
)

__all__ = [
    "Cameras",
    "dodecahedron_cameras",
    "view_cameras",
    "orbit_cameras",
    "render_depth",
    "render_depth_normals",
    "depth_to_points",
    "dodeca_surface_samples",
    "render_views",
    "render_shaded",
    "render_grid",
    "render_compare",
    "framing",
    "tile_images",
    "add_label",
    "save_png",
]

#: Largest angle (degrees) between a vertex normal and a face normal for which smooth shading
#: uses the interpolated vertex normal; across sharper creases the face normal is kept.
CREASE_DEG = 35.0


def _check_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("cannot render a mesh without faces")
    return mesh


def _intersector(mesh: trimesh.Trimesh):
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    return RayMeshIntersector(mesh)


def _cast(mesh: trimesh.Trimesh, cameras: Cameras, smooth: bool = False) -> dict[str, np.ndarray]:
    """First hits of the pixel-centre rays of every camera.

    Returns ``depth f64[V,H,W]`` (0 where missed), ``hit bool[V,H,W]``, ``normal f64[V,H,W,3]``
    (world, unit, turned to face the camera; 0 where missed), ``face int64[V,H,W]`` (-1 missed)
    and ``dirs f64[V,H,W,3]`` (world ray directions with camera-frame ``z = -1``).
    """
    mesh = _check_mesh(mesh)
    V, S = len(cameras), cameras.size
    c2w = cameras.cam2world
    dirs = np.einsum("vij,hwj->vhwi", c2w[:, :3, :3], cameras.pixel_directions())
    origins = np.broadcast_to(c2w[:, None, None, :3, 3], dirs.shape)
    flat_d, flat_o = dirs.reshape(-1, 3), origins.reshape(-1, 3)

    tri = np.asarray(_intersector(mesh).intersects_first(flat_o, flat_d), dtype=np.int64)
    idx = np.nonzero(tri >= 0)[0]
    f = tri[idx]
    fn = np.asarray(mesh.face_normals, dtype=np.float64)[f]
    v0 = np.asarray(mesh.vertices, dtype=np.float64)[mesh.faces[f, 0]]
    d, o = flat_d[idx], flat_o[idx]
    denom = np.einsum("ij,ij->i", d, fn)
    ok = np.abs(denom) > 1e-12
    # Exact plane intersection; d has unit camera-z so t is the depth along the optical axis.
    t = np.where(ok, np.einsum("ij,ij->i", v0 - o, fn) / np.where(ok, denom, 1.0), 0.0)
    ok &= t > 0
    idx, f, fn, d, o, t, denom = idx[ok], f[ok], fn[ok], d[ok], o[ok], t[ok], denom[ok]

    n = fn
    if smooth and len(idx):
        pts = o + t[:, None] * d
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[f], pts)
        vn = np.asarray(mesh.vertex_normals, dtype=np.float64)[mesh.faces[f]]  # [M,3,3]
        # Per corner: keep the vertex normal only where it is close to the face normal.
        cos_c = np.einsum("mkj,mj->mk", vn, fn)
        vn = np.where((cos_c > math.cos(math.radians(CREASE_DEG)))[..., None], vn, fn[:, None, :])
        n = np.einsum("mk,mkj->mj", np.clip(bary, 0.0, 1.0), vn)
        nn = np.linalg.norm(n, axis=-1, keepdims=True)
        n = np.where(nn > 1e-12, n / np.where(nn > 0, nn, 1.0), fn)
    # Two-sided: normals face the camera (works for inconsistently oriented meshes).
    n = np.where((np.einsum("ij,ij->i", n, d) > 0)[:, None], -n, n)

    depth = np.zeros(V * S * S)
    depth[idx] = t
    normal = np.zeros((V * S * S, 3))
    normal[idx] = n
    face = np.full(V * S * S, -1, dtype=np.int64)
    face[idx] = f
    return {
        "depth": depth.reshape(V, S, S),
        "hit": (face >= 0).reshape(V, S, S),
        "normal": normal.reshape(V, S, S, 3),
        "face": face.reshape(V, S, S),
        "dirs": dirs,
    }


def _sized(cameras: Cameras, size: int | None) -> Cameras:
    return cameras if size is None or size == cameras.size else cameras.resized(size)


def render_depth(mesh: trimesh.Trimesh, cameras: Cameras, size: int | None = None) -> np.ndarray:
    """Depth images ``f32[V, size, size]``: distance along each camera's optical axis
    (GAPS/LDIF z-depth, not ray length), 0 where the pixel-centre ray misses the mesh.

    ``size`` defaults to ``cameras.size`` (224 for :func:`dodecahedron_cameras`); another size
    keeps the field of view. LDIF renders its 20 dodecahedron views with GAPS ``scn2img``.
    """
    return _cast(mesh, _sized(cameras, size))["depth"].astype(np.float32)


def render_depth_normals(mesh: trimesh.Trimesh, cameras: Cameras,
                         size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``f32[V,H,W]`` and world-space unit normals ``f32[V,H,W,3]`` in one pass.

    The normal is the hit face's normal, turned towards the camera (LDIF's normal images come
    from GAPS ``conf2img -create_normal_images``, here in world rather than camera frame);
    0 where the ray misses.
    """
    r = _cast(mesh, _sized(cameras, size))
    return r["depth"].astype(np.float32), r["normal"].astype(np.float32)


def _world_xyz(depth: np.ndarray, cameras: Cameras) -> np.ndarray:
    """Back-project depth ``[V,H,W]`` to world points ``f64[V,H,W,3]`` (misses included)."""
    c2w = cameras.cam2world
    pc = cameras.pixel_directions()[None] * depth[..., None]  # camera frame, z = -depth
    return np.einsum("vij,vhwj->vhwi", c2w[:, :3, :3], pc) + c2w[:, None, None, :3, 3]


def _normals_from_xyz(xyz: np.ndarray, valid: np.ndarray, cameras: Cameras) -> np.ndarray:
    """Normals of the depth surface from finite differences of the back-projected image."""

    def diff(axis: int) -> np.ndarray:
        fwd = np.roll(xyz, -1, axis=axis) - xyz
        bwd = xyz - np.roll(xyz, 1, axis=axis)
        vf = np.roll(valid, -1, axis=axis)
        vb = np.roll(valid, 1, axis=axis)
        edge = [slice(None)] * 3
        edge[axis] = -1
        vf[tuple(edge)] = False
        edge[axis] = 0
        vb[tuple(edge)] = False
        both = (vf & vb)[..., None]
        out = np.where(both, 0.5 * (fwd + bwd), np.where(vf[..., None], fwd, np.where(vb[..., None], bwd, 0.0)))
        return out

    n = np.cross(diff(2), diff(1))  # d/dcol x d/drow
    to_cam = cameras.positions[:, None, None, :] - xyz
    n = np.where((np.einsum("vhwi,vhwi->vhw", n, to_cam) < 0)[..., None], -n, n)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    fallback = to_cam / np.maximum(np.linalg.norm(to_cam, axis=-1, keepdims=True), 1e-12)
    return np.where(nn > 1e-12, n / np.where(nn > 0, nn, 1.0), fallback)


def depth_to_points(depth: np.ndarray, cameras: Cameras,
                    normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Back-project depth images to world points with normals (LDIF's step to
    ``surface_samples_from_dodeca``).

    ``depth``: ``[V,H,W]`` z-depth as from :func:`render_depth` (0 = no hit); the image size may
    differ from ``cameras.size`` (the field of view is kept). ``normals``: optional world normal
    images ``[V,H,W,3]`` from :func:`render_depth_normals` (exact face normals); without them
    normals are estimated by finite differences of the back-projected image (less accurate at
    depth discontinuities). Returns ``(points f32[M,3], normals f32[M,3])`` for the ``M`` hit
    pixels in (view, row, column) order; normals face the camera that saw the point.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3 or depth.shape[1] != depth.shape[2] or depth.shape[0] != len(cameras):
        raise ValueError(f"depth must be [V={len(cameras)}, S, S], got {depth.shape}")
    cams = _sized(cameras, depth.shape[1])
    valid = depth > 0
    xyz = _world_xyz(depth, cams)
    if normals is None:
        nrm = _normals_from_xyz(xyz, valid, cams)
    else:
        nrm = np.asarray(normals, dtype=np.float64).reshape(depth.shape + (3,))
    return xyz[valid].astype(np.float32), nrm[valid].astype(np.float32)


def dodeca_surface_samples(mesh: trimesh.Trimesh, n: int = 100_000, rng: np.random.Generator | None = None,
                           size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """LDIF's ``surface_samples_from_dodeca``: ``n`` oriented points ``(f32[n,3], f32[n,3])``
    drawn from the visible surface seen by the 20 dodecahedron cameras (without replacement
    when there are enough hit pixels)."""
    rng = np.random.default_rng(0) if rng is None else rng
    cams = dodecahedron_cameras(size)
    depth, nrm = render_depth_normals(mesh, cams)
    pts, nrm = depth_to_points(depth, cams, nrm)
    if len(pts) == 0:
        raise ValueError("no camera sees the mesh: is it normalised to the GAPS frame?")
    pick = rng.choice(len(pts), size=n, replace=len(pts) < n)
    return pts[pick], nrm[pick]


# ---------------------------------------------------------------------------------------
# Grayscale single-view renders (3D-R2N2-like)


def _downsample(img: np.ndarray, s: int, channels: bool) -> np.ndarray:
    """Box-filter images down by ``s``: ``[..., H*s, W*s, C]`` if ``channels`` else ``[..., H*s, W*s]``."""
    if s == 1:
        return img
    if channels:
        *lead, h, w, c = img.shape
        return img.reshape(*lead, h // s, s, w // s, s, c).mean(axis=(-4, -2))
    *lead, h, w = img.shape
    return img.reshape(*lead, h // s, s, w // s, s).mean(axis=(-3, -1))


def render_views(mesh: trimesh.Trimesh, n_views: int = 24, size: int = R2N2_SIZE, seed: int = 0,
                 albedo: float = 0.75, ambient: float = 0.3, supersample: int = 2) -> np.ndarray:
    """Grayscale renders ``uint8[V, size, size]`` for single-view reconstruction, like the
    3D-R2N2 images IM-NET's SVR model reads (shape alpha-composited on a white background).

    Cameras: :func:`impax.geometry.camera.view_cameras` ``(n_views, seed)`` (random azimuth,
    elevation in [25, 30] degrees, deterministic by ``seed``); the mesh should be in IM-NET's
    frame (unit bounding-box diagonal, centred). Shading: Lambertian with a headlight plus
    ambient, ``albedo * (ambient + (1 - ambient) * |n . v|)``, so every shape pixel is darker
    than the background. ``supersample`` x ``supersample`` rays per pixel anti-alias the edges.
    """
    cams = view_cameras(n_views, seed, size * supersample)
    r = _cast(mesh, cams, smooth=True)
    d = r["dirs"] / np.linalg.norm(r["dirs"], axis=-1, keepdims=True)
    lam = np.abs(np.einsum("vhwi,vhwi->vhw", r["normal"], d))
    shade = albedo * (ambient + (1.0 - ambient) * lam)
    img = np.where(r["hit"], shade, 1.0)
    img = _downsample(img, supersample, channels=False)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Shaded colour renders for reports

#: Default surface colour of :func:`render_shaded` (a light steel blue), RGB in [0, 1].
DEFAULT_COLOR = (0.55, 0.68, 0.85)

def _as_rgb(color) -> np.ndarray:
    c = np.asarray(color, dtype=np.float64).reshape(-1)[:3]
    if c.size != 3:
        raise ValueError(f"colour needs 3 components, got {color!r}")
    return c / 255.0 if c.max() > 1.0 else c


def _layers(meshes, color) -> list[tuple[trimesh.Trimesh, np.ndarray, float]]:
    if isinstance(meshes, trimesh.Trimesh):
        meshes = [(meshes, DEFAULT_COLOR if color is None else color, 1.0)]
    out = []
    for item in meshes:
        if isinstance(item, trimesh.Trimesh):
            item = (item, DEFAULT_COLOR if color is None else color, 1.0)
        m, rgb = item[0], item[1]
        alpha = float(item[2]) if len(item) > 2 else 1.0
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        out.append((_check_mesh(m), _as_rgb(rgb), alpha))
    if not out:
        raise ValueError("nothing to render")
    return out


def framing(meshes) -> tuple[np.ndarray, float]:
    """``(bounds f64[2,3], radius)`` framing every mesh of ``meshes`` (one mesh, or a list of
    meshes / ``(mesh, rgb, alpha)`` tuples / such lists): the union of the bounding boxes and the
    largest vertex distance from its centre. Pass both to :func:`render_shaded` (or
    :func:`impax.geometry.camera.orbit_cameras`) to draw several pictures with one camera."""
    items = [meshes] if isinstance(meshes, trimesh.Trimesh) else list(meshes)
    ms: list[trimesh.Trimesh] = []
    for item in items:
        if isinstance(item, trimesh.Trimesh):
            ms.append(item)
        elif isinstance(item, tuple):
            ms.append(item[0])
        else:
            ms.extend(m for m, _, _ in _layers(item, None))
    if not ms:
        raise ValueError("nothing to frame")
    lo = np.min([m.bounds[0] for m in ms], axis=0)
    hi = np.max([m.bounds[1] for m in ms], axis=0)
    centre = 0.5 * (lo + hi)
    radius = max(float(np.linalg.norm(np.asarray(m.vertices) - centre, axis=1).max()) for m in ms)
    return np.stack([lo, hi]), radius


def _shade(normal: np.ndarray, view: np.ndarray, rgb: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """Soft Lambert (key + fill, wrapped) + ambient + Blinn-Phong specular + rim, lights fixed
    to the camera (key from the upper left). ``normal``, ``view`` (towards the eye): ``[...,3]``."""
    rot = cam2world[:3, :3]
    lights = [  # (direction in camera frame, towards the light; intensity)
        (np.array([-0.45, 0.6, 0.65]), 0.75),
        (np.array([0.6, 0.1, 0.8]), 0.25),
    ]
    wrap = 0.25
    ambient = 0.22
    diffuse = np.full(normal.shape[:-1], ambient)
    spec = np.zeros(normal.shape[:-1])
    for ldir, power in lights:
        lw = rot @ (ldir / np.linalg.norm(ldir))
        ndl = normal @ lw
        diffuse += power * np.clip((ndl + wrap) / (1.0 + wrap), 0.0, None)
        h = lw[None] + view.reshape(-1, 3)
        h = (h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12)).reshape(view.shape)
        spec += power * np.clip(np.einsum("...i,...i->...", normal, h), 0.0, 1.0) ** 48 * (ndl > 0)
    rim = (1.0 - np.clip(np.einsum("...i,...i->...", normal, view), 0.0, 1.0)) ** 3
    col = rgb * np.minimum(diffuse, 1.05)[..., None] + (0.12 * spec + 0.10 * rim)[..., None]
    return np.clip(col, 0.0, 1.0)


def render_shaded(meshes, azimuth_deg: float = 30.0, elevation_deg: float = 20.0, size: int = 256,
                  color=None, *, bounds: np.ndarray | None = None, radius: float | None = None,
                  camera: Cameras | None = None,
                  background=(1.0, 1.0, 1.0), supersample: int = 2, fov_deg: float = 30.0,
                  smooth: bool = True) -> np.ndarray:
    """A shaded colour picture ``uint8[size, size, 3]`` for reports.

    ``meshes``: one ``trimesh.Trimesh`` (drawn in ``color``, default :data:`DEFAULT_COLOR`) or
    a list of meshes / ``(mesh, rgb, alpha)`` tuples; the first hit of each mesh is shaded and
    the layers are alpha-composited front to back per pixel (e.g. translucent SIF ellipsoids
    over a reconstruction). Colours are RGB in [0, 1] or [0, 255].

    Camera: ``camera`` (one camera; ``size`` is then ``camera.size``) or an orbit at
    (``azimuth_deg``, ``elevation_deg``) around the centre of ``bounds`` at a distance that fits a
    sphere of ``radius`` (defaults: :func:`framing` of the meshes, i.e. their union box and largest
    vertex distance; with ``bounds`` alone, half its diagonal). Pass the same ``bounds`` and
    ``radius`` for a ground truth and its reconstruction so both share a camera;
    :func:`impax.geometry.camera.orbit_cameras` with the same arguments gives that camera. Smooth shading
    interpolates vertex normals except across creases sharper than :data:`CREASE_DEG`.
    ``supersample`` x ``supersample`` rays per pixel anti-alias the edges.
    """
    layers = _layers(meshes, color)
    if camera is None:
        if bounds is None:
            bounds, auto_radius = framing(layers)
            radius = auto_radius if radius is None else radius
        camera = orbit_cameras(azimuth_deg, elevation_deg, size, bounds, fov_deg, radius=radius)
    if len(camera) != 1:
        raise ValueError(f"render_shaded takes one camera, got {len(camera)}")
    size = camera.size
    ss = max(1, int(supersample))
    cam = camera.resized(size * ss)
    c2w = cam.cam2world[0]
    bg = _as_rgb(background)

    depths, cols, alphas = [], [], []
    for mesh, rgb, alpha in layers:
        r = _cast(mesh, cam, smooth=smooth)
        view = -r["dirs"][0] / np.linalg.norm(r["dirs"][0], axis=-1, keepdims=True)
        depths.append(np.where(r["hit"][0], r["depth"][0], np.inf))
        cols.append(_shade(r["normal"][0], view, rgb, c2w))
        alphas.append(np.where(r["hit"][0], alpha, 0.0))
    depth, col, alpha = np.stack(depths), np.stack(cols), np.stack(alphas)
    order = np.argsort(depth, axis=0, kind="stable")  # front to back per pixel
    col = np.take_along_axis(col, order[..., None], axis=0)
    alpha = np.take_along_axis(alpha, order, axis=0)
    out = np.zeros(col.shape[1:])
    trans = np.ones(alpha.shape[1:])
    for k in range(len(layers)):
        out += (trans * alpha[k])[..., None] * col[k]
        trans *= 1.0 - alpha[k]
    out += trans[..., None] * bg
    out = _downsample(out, ss, channels=True)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _font(px: int):
    """Pillow's built-in font (no font file needed) at about ``px`` pixels; Pillow without FreeType
    has only its fixed-size bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except Exception:  # no FreeType: the bitmap font, one size
        return ImageFont.load_default()


def label_height(width: int) -> int:
    """Height in pixels of the band :func:`add_label` puts above an image ``width`` pixels wide."""
    return int(max(12, min(24, round(width / 11))))


#: Grey level of label text and of tile outlines.
LABEL_INK = 40


def add_label(image: np.ndarray, text: str, height: int | None = None, background=255,
              ink=LABEL_INK) -> np.ndarray:
    """``image`` (``uint8 [H,W]`` or ``[H,W,3]``) with a band of ``height`` pixels above it (default
    :func:`label_height` of its width) holding ``text``, centred; text too wide for the image is
    shortened and ends with ``..``. Drawn with Pillow's built-in font, so no font file is needed."""
    from PIL import Image, ImageDraw

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected a uint8 [H,W] or [H,W,3] image, got {img.dtype} {img.shape}")
    w = img.shape[1]
    h = label_height(w) if height is None else int(height)
    mode = "L" if img.ndim == 2 else "RGB"

    def level(v):
        v = np.broadcast_to(np.asarray(v, dtype=np.int64), (3,) if mode == "RGB" else ()).tolist()
        return tuple(v) if mode == "RGB" else int(v)

    band = Image.new(mode, (w, h), level(background))
    draw = ImageDraw.Draw(band)
    font = _font(max(8, round(0.72 * h)))
    text = " ".join(str(text).split())
    shown = text

    def extent(t: str) -> tuple[int, int, int, int]:
        return draw.textbbox((0, 0), t, font=font)

    while shown and extent(shown)[2] - extent(shown)[0] > w - 4:
        text = text[:-1]
        shown = text + ".." if text else ""
    if shown:
        x0, y0, x1, y1 = extent(shown)
        draw.text(((w - (x1 - x0)) / 2 - x0, (h - (y1 - y0)) / 2 - y0), shown, fill=level(ink), font=font)
    return np.concatenate([np.asarray(band, dtype=np.uint8), img], axis=0)


def _outline(img: np.ndarray, value) -> np.ndarray:
    """``img`` inside a one-pixel frame of grey level (or RGB) ``value``."""
    out = np.empty((img.shape[0] + 2, img.shape[1] + 2) + img.shape[2:], dtype=img.dtype)
    out[...] = np.asarray(value, dtype=img.dtype)
    out[1:-1, 1:-1] = img
    return out


def tile_images(images: Sequence[np.ndarray], ncols: int | None = None, pad: int = 4,
                background=255, labels: Sequence[str] | None = None, frame=None) -> np.ndarray:
    """Tile equally sized ``uint8`` images (``[H,W]`` or ``[H,W,3]``) row-major into one image,
    ``pad`` pixels of ``background`` between and around them. ``frame``: grey level (or RGB) of a
    one-pixel outline drawn around each image (None: none). ``labels``: one text per image, drawn
    in a band above it (:func:`add_label`, outside the outline)."""
    imgs = [np.asarray(i) for i in images]
    if not imgs:
        raise ValueError("no images to tile")
    if any(i.shape != imgs[0].shape for i in imgs):
        raise ValueError("all images must have the same shape")
    if labels is not None and len(labels) != len(imgs):
        raise ValueError(f"{len(labels)} labels for {len(imgs)} images")
    if frame is not None:
        imgs = [_outline(i, frame) for i in imgs]
    if labels is not None:
        imgs = [add_label(i, t, background=background) for i, t in zip(imgs, labels)]
    ncols = len(imgs) if ncols is None else max(1, int(ncols))
    nrows = -(-len(imgs) // ncols)
    h, w = imgs[0].shape[:2]
    shape = (nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad) + imgs[0].shape[2:]
    out = np.empty(shape, dtype=imgs[0].dtype)
    out[...] = np.asarray(background, dtype=imgs[0].dtype)
    for k, im in enumerate(imgs):
        r, c = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = im
    return out


def render_grid(meshes: Sequence, azimuths_deg: Sequence[float] = (30.0, 120.0, 210.0, 300.0),
                elevation_deg: float = 20.0, size: int = 256, colors: Sequence | None = None,
                shared_bounds: bool = True, pad: int = 4, **kwargs) -> np.ndarray:
    """One row per mesh (or per layer list accepted by :func:`render_shaded`), one column per
    azimuth; ``shared_bounds`` frames every row with the same camera (:func:`framing` of all) so a
    ground truth and its reconstructions line up. Returns ``uint8[H, W, 3]``."""
    rows = list(meshes)
    bounds, radius = framing(rows) if shared_bounds else (None, None)
    tiles = []
    for i, item in enumerate(rows):
        col = None if colors is None else colors[i]
        for az in azimuths_deg:
            tiles.append(render_shaded(item, az, elevation_deg, size, col, bounds=bounds, radius=radius, **kwargs))
    return tile_images(tiles, ncols=len(azimuths_deg), pad=pad)


#: Colour of the ground truth in :func:`render_compare` (a warm sand), RGB in [0, 1].
GT_COLOR = (0.86, 0.72, 0.52)


def render_compare(meshes: Sequence, labels: Sequence[str] | None = None,
                   azimuths_deg: Sequence[float] = (30.0,), elevation_deg: float = 20.0, size: int = 256,
                   colors: Sequence | None = None, overlay: bool = False, ghost_alpha: float = 0.3,
                   pad: int = 6, **kwargs) -> np.ndarray:
    """A ground truth (``meshes[0]``) and its reconstructions side by side, one column per mesh and
    one row per azimuth, every tile drawn with the same camera: :func:`framing` of all the meshes
    together, so relative size and position are kept (a prediction half the size of the ground
    truth looks half the size). Each tile gets a label band (``labels``, default ``"mesh 0"``, ...).

    A ``None`` entry (a prediction that could not be read) is an empty tile. ``colors``: one per
    mesh (default :data:`GT_COLOR` for the ground truth, :data:`DEFAULT_COLOR` for the rest).
    ``overlay``: each prediction is drawn over a translucent ghost of the ground truth (alpha
    ``ghost_alpha``, in the ground truth's colour). Other keywords go to :func:`render_shaded`.
    Returns ``uint8[H, W, 3]``."""
    items = list(meshes)
    if not items or items[0] is None:
        raise ValueError("render_compare needs a ground-truth mesh first")
    labels = [f"mesh {k}" for k in range(len(items))] if labels is None else list(labels)
    if len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} meshes")
    if colors is None:
        colors = [GT_COLOR] + [DEFAULT_COLOR] * (len(items) - 1)
    bounds, radius = framing([_check_mesh(m) for m in items if m is not None])
    gt = (items[0], colors[0], float(ghost_alpha))
    blank = np.full((size, size, 3), 255, dtype=np.uint8)
    tiles, names = [], []
    for az in azimuths_deg:
        for k, (m, col) in enumerate(zip(items, colors)):
            if m is None:
                tiles.append(blank)
            else:
                layers = [(m, col, 1.0)] + ([gt] if overlay and k > 0 else [])
                tiles.append(render_shaded(layers, az, elevation_deg, size, bounds=bounds, radius=radius,
                                           **kwargs))
            names.append(labels[k])
    return tile_images(tiles, ncols=len(items), pad=pad, labels=names)


def save_png(image: np.ndarray, path) -> Path:
    """Write a ``uint8`` image ``[H,W]``, ``[H,W,3]`` or ``[H,W,4]`` (floats in [0,1] are scaled)
    as PNG with pillow; creates the parent folder. Returns the path."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected [H,W], [H,W,3] or [H,W,4], got {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="PNG")
    return path
