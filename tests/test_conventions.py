import dataclasses

import numpy as np
import pytest

from impax import configs
from impax.conventions import (
    Transform,
    convert,
    grid256_from_imnet_points,
    imnet_grid_centres,
    imnet_points_from_grid256,
)


def test_transform_roundtrip_and_inverse(rng):
    r, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    t = Transform.similarity(2.5, np.array([0.1, -0.3, 0.7]), r)
    p = rng.normal(size=(50, 3))
    q = t.apply(p)
    # independent formula: x' = s R (x + t)
    np.testing.assert_allclose(q, 2.5 * (p + [0.1, -0.3, 0.7]) @ r.T, atol=1e-12)
    np.testing.assert_allclose(t.inverse().apply(q), p, atol=1e-12)
    assert t.scale == pytest.approx(2.5)
    assert Transform.from_json(t.to_json()) == t


def test_convert_between_frames(rng):
    a = Transform.similarity(2.0, np.array([1.0, 0, 0]), target="imnet")
    b = Transform.similarity(0.5, np.array([0, 1.0, 0]), target="gaps")
    x = rng.normal(size=(10, 3))
    np.testing.assert_allclose(convert(a.apply(x), a, b), b.apply(x), atol=1e-12)
    with pytest.raises(ValueError):
        a.then(b)  # imnet -> original mismatch


def test_transform_rejects_bad_input():
    with pytest.raises(ValueError):
        Transform((1.0,) * 15)
    with pytest.raises(ValueError):
        Transform.from_matrix(np.full((4, 4), np.nan))


def test_imnet_grid_conventions():
    c = imnet_grid_centres(4)
    assert c.shape == (4, 4, 4, 3)
    np.testing.assert_allclose(c[0, 0, 0], [-0.375] * 3)
    np.testing.assert_allclose(c[3, 2, 1], [0.375, 0.125, -0.125])
    idx = np.array([[0, 128, 255]])
    p = imnet_points_from_grid256(idx)
    np.testing.assert_allclose(p, [[0.5 / 256 - 0.5, 128.5 / 256 - 0.5, 255.5 / 256 - 0.5]])
    np.testing.assert_array_equal(grid256_from_imnet_points(p), idx)


@dataclasses.dataclass(frozen=True)
class _Inner:
    a: int = 1
    b: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    inner: _Inner = _Inner()
    opt: float | None = None


def test_config_json_roundtrip(tmp_path):
    cfg = _Outer(name="y", inner=_Inner(a=3, b=(4, 5, 6)), opt=0.5)
    configs.save_json(cfg, tmp_path / "c.json")
    assert configs.load_json(_Outer, tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown config keys"):
        configs.from_dict(_Outer, {"nope": 1})
