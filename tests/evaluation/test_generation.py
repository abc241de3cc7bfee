"""Generation metrics (COV, MMD, 1-NNA) on sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from impax.evaluation.generation import (chamfer_between, chamfer_matrix, coverage, generation_metrics, mmd,
                                         one_nna)


def test_chamfer_between_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) + 0.2
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    assert chamfer_between(a, b, "l2") == pytest.approx((d.min(1) ** 2).mean() + (d.min(0) ** 2).mean(), rel=1e-12)
    assert chamfer_between(a, b, "l1") == pytest.approx(0.5 * (d.min(1).mean() + d.min(0).mean()), rel=1e-12)
    with pytest.raises(ValueError):
        chamfer_between(a, b, "l3")


def test_hand_made_distance_matrix():
    # 3 generated x 4 reference; nearest references of the generated: 0, 0, 2 -> coverage 2/4
    d_gr = np.array([[0.1, 0.5, 0.9, 0.7],
                     [0.2, 0.3, 0.8, 0.6],
                     [0.9, 0.8, 0.05, 0.4]])
    assert coverage(d_gr) == 0.5
    assert mmd(d_gr) == pytest.approx(np.mean([0.1, 0.3, 0.05, 0.4]))


def test_one_nna_extremes():
    rng = np.random.default_rng(1)
    ref = [rng.normal(size=(128, 3)) * 0.1 + rng.normal(size=3) for _ in range(6)]
    same = [r.copy() for r in ref]
    far = [r + 100.0 for r in ref]
    m_same = generation_metrics(same, ref)
    assert m_same["coverage"] == 1.0 and m_same["mmd"] == 0.0
    assert m_same["one_nna"] == 0.0  # every shape's nearest neighbour is its copy in the other set
    m_far = generation_metrics(far, ref)
    assert m_far["one_nna"] == 1.0  # fully separable sets
    # the far set's nearest reference is the same for all -> low coverage, large MMD
    assert m_far["mmd"] > 1000


def test_one_nna_matches_explicit_loop():
    rng = np.random.default_rng(2)
    gen = [rng.normal(size=(64, 3)) + rng.normal(size=3) * 0.5 for _ in range(5)]
    ref = [rng.normal(size=(64, 3)) + rng.normal(size=3) * 0.5 for _ in range(4)]
    allc = gen + ref
    lab = [0] * 5 + [1] * 4
    correct = 0
    for i in range(len(allc)):
        dists = [chamfer_between(allc[i], allc[j]) if j != i else np.inf for j in range(len(allc))]
        correct += lab[int(np.argmin(dists))] == lab[i]
    d_gr = chamfer_matrix(gen, ref)
    val = one_nna(chamfer_matrix(gen, gen, symmetric=True), chamfer_matrix(ref, ref, symmetric=True), d_gr)
    assert val == pytest.approx(correct / len(allc))
