"""Metrics for shape generation: coverage, minimum matching distance and 1-NN accuracy.

Definitions follow Achlioptas et al. 2018 ("Learning representations and generative models for 3D
point clouds": COV, MMD with Chamfer distance) and Yang et al. 2019 (PointFlow: 1-NNA), which
IM-NET's generation experiments use (with LFD; IM-NET's own COV-CD/MMD-CD code is not public).

With ``D[i, j]`` the Chamfer distance between generated shape ``i`` and reference shape ``j``:

* ``coverage`` = fraction of reference shapes that are the nearest reference of at least one
  generated shape (higher is better);
* ``mmd`` = mean over reference shapes of the distance to their closest generated shape (lower);
* ``one_nna`` = leave-one-out accuracy of a 1-nearest-neighbour classifier telling generated from
  reference shapes in the union of both sets; 0.5 is ideal, 1.0 means the sets are fully separable.

The Chamfer distance between point clouds is ``mean d_ab^2 + mean d_ba^2`` (``kind="l2"``,
Achlioptas/PointFlow) or OccNet's ``0.5 (mean d_ab + mean d_ba)`` (``kind="l1"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from impax.evaluation.metrics import nearest


def chamfer_between(a: np.ndarray, b: np.ndarray, kind: str = "l2") -> float:
    """Chamfer distance between two point clouds (see the module docstring)."""
    d_ab, _ = nearest(a, b)
    d_ba, _ = nearest(b, a)
    if kind == "l2":
        return float(np.mean(d_ab ** 2) + np.mean(d_ba ** 2))
    if kind == "l1":
        return float(0.5 * (np.mean(d_ab) + np.mean(d_ba)))
    raise ValueError(f"unknown Chamfer kind {kind!r} (use 'l2' or 'l1')")


def chamfer_matrix(a: Sequence[np.ndarray], b: Sequence[np.ndarray], kind: str = "l2",
                   symmetric: bool = False) -> np.ndarray:
    """``D[i, j] = chamfer(a[i], b[j])``; ``symmetric=True`` (a is b) computes the upper triangle only."""
    d = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(i + 1 if symmetric else 0, len(b)):
            d[i, j] = chamfer_between(a[i], b[j], kind)
            if symmetric:
                d[j, i] = d[i, j]
    return d


def coverage(d_gr: np.ndarray) -> float:
    """Fraction of references matched as nearest neighbour by some generated shape."""
    if d_gr.size == 0:
        return float("nan")
    return len(np.unique(np.argmin(d_gr, axis=1))) / d_gr.shape[1]


def mmd(d_gr: np.ndarray) -> float:
    """Minimum matching distance: mean over references of the closest generated shape's distance."""
    if d_gr.size == 0:
        return float("nan")
    return float(np.mean(np.min(d_gr, axis=0)))


def one_nna(d_gg: np.ndarray, d_rr: np.ndarray, d_gr: np.ndarray) -> float:
    """Leave-one-out 1-NN classification accuracy on the union of generated and reference sets."""
    ng, nr = d_gg.shape[0], d_rr.shape[0]
    if ng + nr < 2:
        return float("nan")
    full = np.block([[d_gg, d_gr], [d_gr.T, d_rr]]).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(ng, dtype=bool), np.ones(nr, dtype=bool)]
    nn = np.argmin(full, axis=1)
    return float(np.mean(labels[nn] == labels))


def generation_metrics(generated: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                       kind: str = "l2") -> dict[str, float]:
    """COV, MMD and 1-NNA between two sets of point clouds (each ``[N_i, 3]``)."""
    d_gr = chamfer_matrix(generated, reference, kind)
    d_gg = chamfer_matrix(generated, generated, kind, symmetric=True)
    d_rr = chamfer_matrix(reference, reference, kind, symmetric=True)
    return {"coverage": coverage(d_gr), "mmd": mmd(d_gr), "one_nna": one_nna(d_gg, d_rr, d_gr),
            "n_generated": float(len(generated)), "n_reference": float(len(reference))}
