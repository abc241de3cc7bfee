"""shapes: every family is closed, deterministic, inside the unit box and matches its analytic sdf."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from impax.cli import main
from impax.geometry.inside import occupancy
from impax.geometry.mesh_io import load_mesh
from impax.geometry.shapes import EXTENT, FAMILIES, generate, make_shape
from impax.geometry.voxels import occupancy_grid


@functools.lru_cache(maxsize=None)
def _shape(family, seed=0):
    return make_shape(family, seed)


def test_at_least_eight_families_including_composed_objects():
    assert len(FAMILIES) >= 8 and len(set(FAMILIES)) == len(FAMILIES)
    assert {"sphere", "box", "torus", "chair", "table", "lamp", "mug", "airplane"} <= set(FAMILIES)
    with pytest.raises(ValueError):
        make_shape("spaceship", 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_mesh_is_closed_and_matches_its_sdf(family):
    s = _shape(family)
    m = s.mesh
    assert s.family == family
    assert m.is_watertight and m.is_winding_consistent and m.volume > 0
    assert 2000 <= len(m.faces) <= 40000
    assert np.all(np.abs(m.bounds) <= EXTENT + 1e-9)
    # the analytic sdf and the mesh's winding-number inside test agree
    p = np.random.default_rng(11).uniform(-0.5, 0.5, (8000, 3))
    d = s.sdf(p)
    assert d.dtype == np.float32 and d.shape == (8000,)
    inside = occupancy(m, p)
    assert np.mean(inside == (d < 0)) >= 0.995
    far = np.abs(d) > 0.01  # beyond the marching-cubes error (grid spacing 0.0127)
    assert np.all(inside[far] == (d[far] < 0))
    # the mesh vertices lie on the zero level set of the sdf
    assert np.max(np.abs(s.sdf(m.vertices))) < 0.01


def _blobs(mask2d):
    return ndimage.label(mask2d)[1]


def test_chair_has_seat_back_and_four_legs_visible_at_64():
    for seed in range(3):
        s = make_shape("chair", seed)
        g = occupancy_grid(s.mesh, 64)  # (x, y, z), y up
        y = (np.arange(64) + 0.5) / 64 - 0.5
        seat_y = s.params["seat_y"]
        below = np.flatnonzero((y < seat_y - 0.05) & (y > -0.4))
        for j in below[:: max(1, len(below) // 3)]:
            assert _blobs(g[:, j, :]) == 4  # four separate legs in every slice under the seat
        above = np.flatnonzero((y > seat_y + 0.06) & (y < s.params["back_top"] - 0.03))
        assert len(above) and all(_blobs(g[:, j, :]) == 1 for j in above)  # one backrest
        assert g[:, np.searchsorted(y, seat_y), :].sum() > 0.1 * 64 * 64  # a wide seat


def test_table_legs_or_pedestal_and_mug_handle():
    t = make_shape("table", 0)
    g = occupancy_grid(t.mesh, 64)
    y = (np.arange(64) + 0.5) / 64 - 0.5
    j = np.searchsorted(y, t.params["top_y"] - 0.15)
    assert _blobs(g[:, j, :]) == (1 if t.params["pedestal"] else 4)
    mug = make_shape("mug", 0)
    # the handle makes a hole: the mug is genus 1 (Euler characteristic 0)
    assert mug.mesh.euler_number == 0


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = generate(tmp_path / "a", 4, seed=5)
    b = generate(tmp_path / "b", 4, seed=5)
    c = generate(tmp_path / "c", 4, seed=6)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb, pc in zip(a, b, c):
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.read_bytes() != pc.read_bytes()
    assert [p.parent.name for p in a] == list(FAMILIES[:4])
    assert a[0].name == f"{FAMILIES[0]}_000.ply"


def test_generate_round_robin_names_and_loadable(tmp_path):
    n = len(FAMILIES) + 2
    paths = generate(tmp_path, n, seed=1, res=40)
    assert paths[-1] == tmp_path / FAMILIES[1] / f"{FAMILIES[1]}_001.ply"
    assert paths[len(FAMILIES)] == tmp_path / FAMILIES[0] / f"{FAMILIES[0]}_001.ply"
    m = load_mesh(paths[0])
    assert m.is_watertight


def test_cli_shapes_command(tmp_path, capsys):
    rc = main(["shapes", "--out", str(tmp_path / "out"), "--count", "3", "--seed", "2"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3
    for line, family in zip(printed, FAMILIES):
        assert line.endswith(f"{family}_000.ply")
        assert load_mesh(line).is_watertight
