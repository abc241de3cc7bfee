"""IM-AE training data as splits of (name, voxels): a prepared store or an official IM-NET HDF5 file.

:class:`VoxelSource` gives the names of a split, their 64³ voxels and the point–value loaders of
a level, whichever of the two layouts ``path`` is (:func:`impax.data.store.data_kind`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.data.imnet_hdf5 import IMNetHdf5
from impax.data.loader import IMNetHdf5Loader, imnet_loader
from impax.data.store import ShapeStore, data_kind


class VoxelSource:
    """A prepared store folder or an IM-NET HDF5 file, seen as splits of (name, voxels)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.kind = data_kind(self.path, strict=True)
        self.store = ShapeStore(self.path) if self.kind == "store" else None

    def loader(self, split: str, level: int, batch_size: int, points: int, seed: int, point_mode: str,
               near_points: int = 0, **store_options: Any) -> Any:
        """Point–value batches of one level (:func:`impax.data.loader.imnet_loader` with
        ``near_points`` and ``store_options`` — ``workers``, ``cache_mb``, ``shard`` of
        :class:`~impax.data.loader.StoreLoader` — or :class:`~impax.data.loader.IMNetHdf5Loader`,
        which holds the file in memory and takes none of them)."""
        if self.store is not None:
            need = ["voxels", f"points_{level}", f"values_{level}"] + (["near_points", "near_occupancy"] if near_points else [])
            self.store.require(need, split, "IM-NET training")
            return imnet_loader(self.store, split, level=level, batch_size=batch_size, points=points, seed=seed,
                                point_mode=point_mode, near_points=near_points, **store_options)
        if near_points:
            raise ValueError(f"{self.path}: an IM-NET HDF5 file has no near-surface samples; near_fraction > 0 "
                             "needs a store made by `impax prepare`")
        return IMNetHdf5Loader(self.path, level=level, batch_size=batch_size, points=points, seed=seed,
                               point_mode=point_mode)

    def splits(self) -> list[str]:
        if self.store is not None:
            return sorted({e["split"] for e in self.store.entries()})
        return ["train"]

    def names(self, split: str) -> list[str]:
        if self.store is not None:
            return self.store.ids(split)
        with IMNetHdf5(self.path) as f:
            return list(f.names)

    def voxels(self, split: str, names: Sequence[str]) -> np.ndarray:
        """uint8 [n, 64, 64, 64] in the order of ``names``."""
        if self.store is not None:
            self.store.require(["voxels"], split, "IM-NET")
            return np.stack([self.store.read(n, "voxels") for n in names]).reshape(-1, 64, 64, 64)
        with IMNetHdf5(self.path) as f:
            index = {n: i for i, n in enumerate(f.names)}
            return np.stack([f.voxels(index[n]) for n in names]).reshape(-1, 64, 64, 64)
