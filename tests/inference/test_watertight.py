"""``impax.inference.watertight`` against closed forms: an open sheet becomes a closed slab whose
volume is the Minkowski sum's (Steiner's formula), a closed sphere grows by exactly the offset; and the
``impax watertight`` command (folders, resume, a broken file skipped and named)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from impax.cli import main
from impax.inference.watertight import watertight


def _square(a: float) -> trimesh.Trimesh:
    """One open sheet: a square of side ``a`` in the plane z = 0 (two triangles)."""
    h = a / 2
    v = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]], float)
    return trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], process=False)


def test_open_sheet_becomes_a_closed_slab_of_the_minkowski_volume():
    a = 1.0
    res = watertight(_square(a), resolution=64, offset_cells=2.0)
    m, d = res.mesh, res.delta
    assert res.watertight
    # Steiner: square (area a^2, perimeter 4a) grown by a ball of radius d
    exact = 2 * d * a * a + np.pi * d * d * a * 2 + 4.0 / 3.0 * np.pi * d ** 3
    assert abs(m.volume - exact) / exact < 0.06
    lo, hi = m.bounds
    np.testing.assert_allclose(hi - lo, [a + 2 * d, a + 2 * d, 2 * d], rtol=0.06)


def test_closed_sphere_grows_by_the_offset():
    r = 0.3
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    res = watertight(sphere, resolution=64, offset_cells=1.0)
    radii = np.linalg.norm(res.mesh.vertices, axis=1)
    cell = res.delta  # offset_cells = 1
    assert res.watertight
    assert np.all(np.abs(radii - (r + res.delta)) < 0.25 * cell)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="offset_cells"):
        watertight(_square(1.0), resolution=64, offset_cells=0.0)


def test_command_mirrors_folders_resumes_and_names_a_broken_file(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sheet").mkdir(parents=True)
    cup = trimesh.creation.box(extents=(1, 1, 1))  # a cube with its top missing: an open cup
    cup.update_faces(cup.face_normals[:, 2] < 0.5)
    cup.export(src / "sheet" / "a.obj")
    (src / "sheet" / "broken.ply").write_bytes(b"ply\nthis is not a mesh\n")
    out = tmp_path / "out"
    assert main(["watertight", str(src), str(out), "--resolution", "32"]) == 3
    text = capsys.readouterr().out
    assert "broken.ply" in text and "1 written" in text
    done = trimesh.load(out / "sheet" / "a.ply", process=False)
    assert done.is_watertight
    # inside is the winding number's: a cup missing one of six faces holds w = 5/6 > 0.5, so it is
    # filled, and the result is the unit cube grown by at most the offset
    delta = 1.0 / (32 - 2 - 4)
    assert 1.0 < done.volume < (1 + 2 * delta) ** 3
    stamp = (out / "sheet" / "a.ply").stat().st_mtime_ns
    assert main(["watertight", str(src), str(out), "--resolution", "32"]) == 3
    assert "1 already there" in capsys.readouterr().out
    assert (out / "sheet" / "a.ply").stat().st_mtime_ns == stamp
    assert main(["watertight", str(src), str(out), "--resolution", "48"]) == 1
    assert "32 * 2^k" in capsys.readouterr().err
