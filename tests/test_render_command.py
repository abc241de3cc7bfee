"""``impax render --compare``: one camera and one scale for every mesh, labelled tiles; errors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from impax.cli import main
from impax.geometry.render import label_height

SIZE, PAD = 64, 6


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    root = tmp_path_factory.mktemp("spheres")
    big = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    big.apply_translation((2.0, -1.0, 0.5))  # any original frame: the ground truth's normalisation is shared
    half = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    half.apply_translation((2.0, -1.0, 0.5))
    big.export(root / "truth.ply")
    half.export(root / "half.ply")
    return root


def _tiles(path, n: int, rows: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(picture, label band) of each tile of a --compare PNG, row-major."""
    img = np.asarray(Image.open(path)).astype(int)
    band = label_height(SIZE)
    assert img.shape == (rows * (band + SIZE) + (rows + 1) * PAD, n * SIZE + (n + 1) * PAD, 3)
    pics, bands = [], []
    for r in range(rows):
        y = PAD + r * (band + SIZE + PAD)
        for c in range(n):
            x = PAD + c * (SIZE + PAD)
            bands.append(img[y:y + band, x:x + SIZE])
            pics.append(img[y + band:y + band + SIZE, x:x + SIZE])
    return pics, bands


def _area(tile: np.ndarray) -> int:
    return int((tile < 250).any(axis=-1).sum())


def test_compare_draws_every_mesh_at_the_ground_truths_scale(spheres, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert main(["render", "--compare", str(spheres / "truth.ply"), str(spheres / "half.ply"),
                 "--size", str(SIZE), "--out", str(out)]) == 0
    pics, bands = _tiles(out, 2)
    ratio = _area(pics[1]) / _area(pics[0])
    assert 0.18 < ratio < 0.32, ratio  # half the radius: a quarter of the silhouette
    for b in bands:  # the file stems are written above the pictures
        assert b.min() < 128 and np.all(b[:, 0] == 255)
    assert not np.array_equal(bands[0], bands[1])

    # plain renders normalise each mesh on its own: both spheres fill their pictures alike
    areas = []
    for name in ("truth", "half"):
        assert main(["render", str(spheres / f"{name}.ply"), "--size", str(SIZE), "--out",
                     str(tmp_path / f"{name}.png")]) == 0
        areas.append(_area(np.asarray(Image.open(tmp_path / f"{name}.png")).astype(int)))
    assert 0.95 < areas[1] / areas[0] < 1.05


def test_compare_views_labels_and_overlay(spheres, tmp_path):
    a, b = str(spheres / "truth.ply"), str(spheres / "half.ply")
    out = tmp_path / "grid.png"
    assert main(["render", "--compare", a, b, b, "--views", "2", "--size", str(SIZE), "--labels", "GT,x,y",
                 "--overlay", "--out", str(out)]) == 0
    pics, bands = _tiles(out, 3, rows=2)
    assert np.array_equal(bands[0], bands[3]) and not np.array_equal(bands[1], bands[2])  # per column
    # overlay: the ground truth's ghost around each prediction covers the ground truth's silhouette
    assert abs(_area(pics[1]) - _area(pics[0])) <= 0.02 * _area(pics[0])
    assert np.array_equal(pics[1], pics[2])
    assert main(["render", "--compare", a, b, "--labels", "one", "--out", str(out)]) == 1  # count mismatch


def test_compare_errors(spheres, tmp_path, capsys):
    a, b = str(spheres / "truth.ply"), str(spheres / "half.ply")
    out = tmp_path / "x.png"
    capsys.readouterr()
    # an unreadable prediction: an empty labelled tile, a line naming it, partial success
    missing = tmp_path / "lost.ply"
    assert main(["render", "--compare", a, str(missing), b, "--size", str(SIZE), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"impax render: {missing}: file does not exist" in err
    pics, bands = _tiles(out, 3)
    assert np.all(pics[1] == 255) and bands[1].min() < 128 and _area(pics[2]) > 0
    # an unreadable ground truth, too few meshes, MESH and --compare together, --dodeca: exit 1
    for argv in (["--compare", str(missing), b], ["--compare", a], [a, "--compare", b],
                 ["--compare", a, b, "--dodeca"], [a, "--overlay"], []):
        assert main(["render", *argv, "--out", str(out)]) == 1, argv
        assert capsys.readouterr().err.startswith("impax render: ")
