"""The LDIF collapse, guarded: the ``ldif`` cpu preset must learn shapes with thin parts from a few
hundred steps, where the original start (every element near the origin, class hardness 100) does not.

Root cause (docs/tuning.md): the original starts every shape as the same small clump of nearly
inactive elements at the origin, and the hardness of 100 leaves almost no gradient where no
element reaches yet, so elements can shrink or switch off but cannot move out to parts they do not
already touch. The cpu preset spreads the elements over the box with active constants and uses a
hardness of 20 (the paper preset keeps the original's values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from impax.data.pipeline import PrepareConfig
from impax.data.prepare import prepare
from impax.data.store import ShapeStore
from impax.geometry.shapes import generate

TRAIN = ["chair_000", "table_000", "lamp_000", "airplane_000"]
STEPS = 240


@pytest.fixture(scope="module")
def thin_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collapse")
    generate(root / "shapes", 11, seed=5)
    (root / "train.lst").write_text("\n".join(TRAIN) + "\n")
    (root / "test.lst").write_text("box_000\n")
    cfg = PrepareConfig.quick(imnet=False, views=False, occupancy=False, n_uniform=2048, n_near=2048,
                              n_surface=1024, sdf_grid_res=8, depth_size=32)
    res = prepare(root / "shapes", root / "data", cfg, workers=1, progress=False,
                  split_lists={"train": root / "train.lst", "test": root / "test.lst"})
    assert res.status == 0
    return root / "data"


def _fit(store_dir: Path, out: Path, overrides: dict) -> tuple[float, list[int], list[float]]:
    """Train 240 steps; (training IoU, active elements per shape, per-shape extent covered by them)."""
    from impax.train import load_model
    from impax.models.ldif_model import encode, shape_inputs
    from impax.train.recipes.ldif import build_model, resolve_config, train

    over = {"model.batch_size": 2, "epochs": STEPS // 2, "budget_steps": None, "eval_points": 2048, "heldout_splits": [],
            "train.async_checkpointing": False, **overrides}
    summary = train("ldif", store_dir, out, "cpu", over, progress=False)
    cfg = resolve_config("ldif", "cpu", over)
    model = build_model(cfg)
    load_model(out, model)
    store = ShapeStore(store_dir)
    active, cover = [], []
    for sid in store.ids("train"):
        sif = encode(model, shape_inputs(store, sid, cfg.model))
        on = np.asarray(sif.constants[0]) < cfg.model.iso_level          # alone, its centre is inside
        active.append(int(on.sum()))
        with store.open(sid) as f:
            inside = f["uniform_points"][()][f["uniform_sdf"][()] < 0]
        extent = inside.max(0) - inside.min(0)
        centres = np.asarray(sif.centers[0])[on]
        cover.append(float(np.min((centres.max(0) - centres.min(0)) / extent)) if on.sum() > 1 else 0.0)
    return float(summary["iou_train"]), active, cover


def test_cpu_preset_learns_thin_shapes_where_the_original_start_collapses(thin_store, tmp_path):
    iou, active, cover = _fit(thin_store, tmp_path / "cpu", {})
    assert iou > 0.35, (iou, active)
    assert min(active) >= 8, active                     # every shape is drawn by many elements ...
    assert min(cover) > 0.4, cover                      # ... spread over much of its extent on every axis
    # the original start (the paper's values) on the same data and steps: far behind, some shapes
    # drawn by a handful of elements
    iou0, active0, cover0 = _fit(thin_store, tmp_path / "orig", {"element_init": "zero", "model.hardness": 100.0})
    assert iou0 < iou - 0.15, (iou0, iou)
    assert min(active0) <= 4, active0
    # ... and covering far less of the shapes (measured: mean 0.81 against 0.22; the lamp, the
    # cpu preset's worst shape at 0.44 on its worst axis since the cosine rate, 0.22 in the original)
    assert np.mean(cover) > np.mean(cover0) + 0.3, (cover, cover0)
