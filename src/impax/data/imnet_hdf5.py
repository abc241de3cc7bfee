"""IM-NET's HDF5 data layout (the improved TF1 code [I] and IM-NET-pytorch [P]), read and written exactly.

Layout of ``all_vox256_img_{train,test}.hdf5`` (``point_sampling/2_gather_256vox_16_32_64.py`` and
``3_gather_img.py`` of czq142857/IM-NET), every dataset ``uint8``:

============  ======================  ===================================================
dataset       shape                   meaning
============  ======================  ===================================================
voxels        [N, 64, 64, 64, 1]      64^3 occupancy, max-pooled from the 256^3 grid
points_16     [N, 4096, 3]            sample positions on the **256** grid (all 16^3 cells)
values_16     [N, 4096, 1]            occupancy of each sample (0/1)
points_32     [N, 4096, 3]            ... level 32 (near-surface cells first)
values_32     [N, 4096, 1]
points_64     [N, 16384, 3]           ... level 64
values_64     [N, 16384, 1]
pixels        [N, 24, 137, 137]       grayscale 3D-R2N2 views on white (optional here)
============  ======================  ===================================================

plus the name list ``<same stem>.txt``: one ``<synset>/<model id>`` per line, in dataset order.

**Axis order** (checked against ``2_gather_256vox_16_32_64.py`` and IM-NET-pytorch ``modelAE.py``):
the gather script indexes its 256^3 array as ``vox[i, j, k]``, max-pools it to the 64^3 ``voxels``
with the same ``[i, j, k]`` axes, and writes a sample's point as ``(i, j, k)`` on the 256 grid
(``points[:, 0]`` is along voxel axis 0). Before that it converts the HSP grids to the ShapeNet v2
frame (``flip(transpose(v, (2, 1, 0)), 2)``; its comment: "top direction = Y(j)"), so voxel axes
(0, 1, 2) are the shape's (x, y, z) with y up. ``modelAE.py`` reads points as
``(p + 0.5) / 256 - 0.5`` and builds its test grids with ``coords[..., 0] = i`` for
``model_float[i, j, k]``, so the same (x, y, z) ↔ (axis 0, 1, 2) correspondence holds there.
impax uses exactly this order (:func:`impax.conventions.imnet_grid_centres`, index order (x, y, z)),
so no transpose is ever needed between an impax grid and an official file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

#: IM-NET's progressive levels and the number of point samples per level ([I]/[P]).
IMNET_LEVELS: tuple[int, ...] = (16, 32, 64)
IMNET_POINT_COUNTS: dict[int, int] = {16: 4096, 32: 4096, 64: 16384}
#: Resolution of the encoder's input voxels.
IMNET_VOXEL_RES = 64
#: Number and size of the grayscale SVR views (3D-R2N2 renders).
IMNET_PIXEL_SHAPE = (24, 137, 137)


def layout(n: int, levels: Sequence[int] = IMNET_LEVELS, counts: dict[int, int] | None = None,
           pixels: bool = True) -> dict[str, tuple[int, ...]]:
    """The official dataset shapes for ``n`` shapes (all uint8), in the original's creation order."""
    counts = IMNET_POINT_COUNTS if counts is None else counts
    r = IMNET_VOXEL_RES
    out: dict[str, tuple[int, ...]] = {"voxels": (n, r, r, r, 1)}
    for lv in levels:
        out[f"points_{lv}"] = (n, counts[lv], 3)
        out[f"values_{lv}"] = (n, counts[lv], 1)
    if pixels:
        out["pixels"] = (n, *IMNET_PIXEL_SHAPE)
    return out


def names_path(hdf5_path: str | Path) -> Path:
    """The name list beside an IM-NET HDF5 file (``x.hdf5`` → ``x.txt``)."""
    return Path(hdf5_path).with_suffix(".txt")


def points_to_coords(points: np.ndarray) -> np.ndarray:
    """uint8 256-grid samples → float32 coordinates in IM-NET's box, ``(p + 0.5) / 256 - 0.5`` ([I]/[P])."""
    return (np.asarray(points, dtype=np.float32) + 0.5) / 256.0 - 0.5


class IMNetHdf5Writer:
    """Incremental writer of the official layout (resizable along the shape axis).

    Use as a context manager; :meth:`append` one shape at a time. Writes are deterministic
    (no timestamps, fixed chunking: one shape per chunk, uncompressed like the originals) and
    the ``.txt`` name list is written on :meth:`close`.
    """

    def __init__(self, path: str | Path, levels: Sequence[int] = IMNET_LEVELS,
                 counts: dict[int, int] | None = None, pixels: bool = True) -> None:
        self.path = Path(path)
        self.levels = tuple(levels)
        self.counts = dict(IMNET_POINT_COUNTS if counts is None else counts)
        self.pixels = pixels
        self.names: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = h5py.File(self.path, "w")
        for name, shape in layout(0, self.levels, self.counts, pixels).items():
            self._f.create_dataset(name, shape=shape, maxshape=(None, *shape[1:]), dtype=np.uint8,
                                   chunks=(1, *shape[1:]), track_times=False)

    def append(self, name: str, voxels: np.ndarray, points: dict[int, np.ndarray],
               values: dict[int, np.ndarray], pixels: np.ndarray | None = None) -> None:
        """Add one shape. ``voxels`` [64,64,64] or [64,64,64,1]; ``points[R]`` [n,3]; ``values[R]`` [n] or [n,1]."""
        if "\n" in name:
            raise ValueError("shape names cannot contain newlines")
        i = len(self.names)
        r = IMNET_VOXEL_RES
        rows = {"voxels": _as_uint8(voxels, (r, r, r, 1), "voxels")}
        for lv in self.levels:
            n = self.counts[lv]
            rows[f"points_{lv}"] = _as_uint8(points[lv], (n, 3), f"points_{lv}")
            rows[f"values_{lv}"] = _as_uint8(values[lv], (n, 1), f"values_{lv}")
        if self.pixels:
            if pixels is None:
                raise ValueError("this writer stores pixels; pass pixels [24,137,137]")
            rows["pixels"] = _as_uint8(pixels, IMNET_PIXEL_SHAPE, "pixels")
        for key, arr in rows.items():
            ds = self._f[key]
            ds.resize(i + 1, axis=0)
            ds[i] = arr
        self.names.append(name)

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None
            names_path(self.path).write_text("".join(n + "\n" for n in self.names))

    def __enter__(self) -> IMNetHdf5Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_imnet_hdf5(path: str | Path, names: Sequence[str], voxels: np.ndarray,
                     points: dict[int, np.ndarray], values: dict[int, np.ndarray],
                     pixels: np.ndarray | None = None) -> Path:
    """Write a whole official-layout file from stacked arrays (``points[R]`` [N,n,3], ...)."""
    levels = tuple(sorted(points))
    counts = {lv: int(np.shape(points[lv])[1]) for lv in levels}
    with IMNetHdf5Writer(path, levels, counts, pixels=pixels is not None) as w:
        for i, name in enumerate(names):
            w.append(name, voxels[i], {lv: points[lv][i] for lv in levels},
                     {lv: values[lv][i] for lv in levels}, None if pixels is None else pixels[i])
    return Path(path)


def _as_uint8(a: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.size != int(np.prod(shape)):
        raise ValueError(f"{what}: expected {shape}, got {a.shape}")
    if a.dtype != np.uint8:
        if a.dtype != bool and (np.any(a < 0) or np.any(a > 255)):
            raise ValueError(f"{what}: values outside uint8")
        a = a.astype(np.uint8)
    return a.reshape(shape)


class IMNetHdf5:
    """Lazy reader of an IM-NET HDF5 file (official ``all_vox256_img_*.hdf5`` or written by impax).

    Extra datasets are ignored; ``pixels`` may be missing (``has_pixels``); the name list is read
    from the ``.txt`` beside the file when it exists (else names are ``"0", "1", ...``).
    Nothing is loaded until asked for: ``voxels(i)``, ``points(level, i)`` etc. read one shape.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = h5py.File(self.path, "r")
        if "voxels" not in self._f:
            raise ValueError(f"{self.path}: not an IM-NET HDF5 file (no 'voxels' dataset)")
        self.levels = tuple(sorted(int(k.split("_")[1]) for k in self._f
                                   if k.startswith("points_") and k.split("_")[1].isdigit()
                                   and f"values_{k.split('_')[1]}" in self._f))
        n = self._f["voxels"].shape[0]
        txt = names_path(self.path)
        if txt.is_file():
            self.names = [ln for ln in txt.read_text().splitlines() if ln.strip()]
            if len(self.names) != n:
                raise ValueError(f"{txt}: {len(self.names)} names for {n} shapes")
        else:
            self.names = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return self._f["voxels"].shape[0]

    @property
    def has_pixels(self) -> bool:
        return "pixels" in self._f

    def dataset(self, name: str) -> h5py.Dataset:
        return self._f[name]

    def n_points(self, level: int) -> int:
        return int(self._f[f"points_{level}"].shape[1])

    def voxels(self, idx) -> np.ndarray:
        """uint8 [..., 64, 64, 64, 1] for an index or slice."""
        return self._f["voxels"][idx]

    def points(self, level: int, idx) -> np.ndarray:
        """Raw uint8 256-grid samples [..., n, 3] (see :func:`points_to_coords`)."""
        return self._f[f"points_{level}"][idx]

    def values(self, level: int, idx) -> np.ndarray:
        return self._f[f"values_{level}"][idx]

    def pixels(self, idx) -> np.ndarray:
        if not self.has_pixels:
            raise KeyError(f"{self.path} has no 'pixels' dataset")
        return self._f["pixels"][idx]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> IMNetHdf5:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_layout(path: str | Path, require_pixels: bool = False) -> list[str]:
    """Problems with a file against the official layout (empty list = conforms)."""
    problems = []
    with h5py.File(path, "r") as f:
        if "voxels" not in f:
            return ["missing dataset 'voxels'"]
        n = f["voxels"].shape[0]
        want = layout(n, pixels=require_pixels or "pixels" in f)
        for name, shape in want.items():
            if name not in f:
                problems.append(f"missing dataset {name!r}")
                continue
            ds = f[name]
            if ds.shape != shape:
                problems.append(f"{name}: shape {ds.shape}, expected {shape}")
            if ds.dtype != np.uint8:
                problems.append(f"{name}: dtype {ds.dtype}, expected uint8")
    return problems

