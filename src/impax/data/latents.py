"""IM-AE latent codes on disk: ``RUN/zs_train.hdf5`` (dataset ``zs``, ``[N, z_dim]`` float32) and the
shape names beside it, ``RUN/zs_train.txt`` (one per line, same order) — IM-NET-pytorch's ``--ae``
export (``modelAE.py::get_z``), read by the IM-GAN and IM-SVR recipes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

ZS_FILE = "zs_train.hdf5"
ZS_NAMES = "zs_train.txt"


def write_codes(folder: str | Path, zs: np.ndarray, names: Sequence[str]) -> Path:
    """Write ``folder/zs_train.hdf5`` (atomically) and ``folder/zs_train.txt``; returns the HDF5 path."""
    folder = Path(folder)
    path = folder / ZS_FILE
    tmp = path.with_suffix(".hdf5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("zs", data=np.asarray(zs, np.float32))
    tmp.replace(path)
    (folder / ZS_NAMES).write_text("".join(f"{n}\n" for n in names))
    return path


def read_codes(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """``zs`` float32 ``[N, z_dim]`` of an HDF5 file and the names beside it (``.txt``), if any."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if "zs" not in f:
            raise KeyError(f"{path} has no 'zs' dataset (IM-AE latent export)")
        zs = np.asarray(f["zs"], np.float32)
    if zs.ndim != 2 or len(zs) == 0:
        raise ValueError(f"{path}: 'zs' must be a non-empty [N, z_dim] array, got {zs.shape}")
    txt = path.with_suffix(".txt")
    names = txt.read_text().splitlines() if txt.is_file() else []
    return zs, (names if len(names) == len(zs) else [f"{i}" for i in range(len(zs))])
