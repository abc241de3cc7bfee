"""The shipped pretrained weights (``impax/train/pretrained/``): they load into the model their
``run.json`` describes, their provenance names how they were made, and they reconstruct built-in
shapes they never saw (a seed of the default stream; the weights were trained on the ``pretrain``
stream) far better than the same network untrained.

The IoU floors are set well under what was measured when the weights were exported (provenance's
``eval`` and the issue note), so they catch broken weights, a broken loader or a changed model,
not the noise of eight shapes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from impax.train.pretrained import available, load_into, read
from impax.train.registry import recipe

SHIPPED = ("imnet-ae-cpu", "ldif-cpu")


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory):
    """Eight built-in shapes of the default stream (seed 7), prepared as the demo prepares them."""
    from impax.data.pipeline import PrepareConfig
    from impax.data.prepare import prepare
    from impax.geometry.shapes import generate

    root = tmp_path_factory.mktemp("fresh")
    generate(root / "shapes", 8, seed=7)
    cfg = PrepareConfig.quick(views=False, voxels_256=True)
    res = prepare(root / "shapes", root / "data", cfg, workers=2, split_fractions=(1.0, 0.0, 0.0), progress=False)
    assert res.ok == 8
    from impax.data.store import ShapeStore

    return ShapeStore(root / "data")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_present_with_their_provenance(name):
    assert name in available()
    arrays, run, prov = read(name)
    assert prov["recipe"] == run["recipe"] and prov["seed"] == run["seed"]
    assert {"shapes", "prepare", "train"} <= set(prov["commands"]), prov["commands"]
    assert "--stream pretrain" in prov["commands"]["shapes"]
    assert prov["global_step"] > 1000 and prov["machine"]["cpus"] and prov["exported"]
    assert all(np.all(np.isfinite(a)) for a in arrays.values() if np.issubdtype(a.dtype, np.floating))


def _model(name: str, seed: int = 0):
    _, run, _ = read(name)
    r = recipe(run["recipe"])
    cfg = r.from_run_json(run)
    return r.build_model(cfg, seed), cfg


def test_imnet_ae_weights_reconstruct_unseen_shapes(fresh_store):
    from impax.train.recipes.imnet import evaluate_iou

    ids = fresh_store.ids()
    with_voxels = []
    for sid in ids:
        with fresh_store.open(sid) as f:
            with_voxels.append(np.asarray(f["voxels"][()], np.float32))
    voxels = np.stack(with_voxels)
    untrained, _ = _model("imnet-ae-cpu")
    base = evaluate_iou(untrained, voxels, ids)["mean_iou"]
    model, _ = _model("imnet-ae-cpu")
    rec = load_into(model, "pretrained:imnet-ae-cpu")
    assert rec["source"] == "pretrained:imnet-ae-cpu" and len(rec["weights_sha256"]) == 64
    got = evaluate_iou(model, voxels, ids)
    print(json.dumps({"imnet-ae-cpu": got["per_shape"], "untrained": base}, indent=1))
    assert got["mean_iou"] > 0.7 and got["mean_iou"] > base + 0.3, (got["mean_iou"], base)


def test_ldif_weights_reconstruct_unseen_shapes_from_depth(fresh_store):
    import dataclasses

    from impax.train.recipes.ldif import evaluate_iou

    ids = fresh_store.ids()
    untrained, cfg = _model("ldif-cpu")
    cfg = dataclasses.replace(cfg, eval_points=20_000)
    base = evaluate_iou(untrained, fresh_store, ids, cfg)["mean_iou"]
    model, _ = _model("ldif-cpu")
    load_into(model, "pretrained:ldif-cpu")
    got = evaluate_iou(model, fresh_store, ids, cfg)
    print(json.dumps({"ldif-cpu": got["per_shape"], "untrained": base}, indent=1))
    assert got["mean_iou"] > 0.75 and got["mean_iou"] > base + 0.3, (got["mean_iou"], base)
